//! Simulated fleet (work in progress).
