//! Liveness and readiness, as Kubernetes probes read them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Shared health flags: live from start until shutdown; ready once the runner is connected and
/// caught up with its input (so a rolling restart does not route work to a cold replica).
#[derive(Debug, Default)]
pub struct Health {
    live: AtomicBool,
    ready: AtomicBool,
    idle: AtomicBool,
    standby: AtomicBool,
    handled: AtomicU64,
}

impl Health {
    /// A process that is alive but not yet ready.
    pub fn new() -> Self {
        Self {
            live: AtomicBool::new(true),
            ready: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            standby: AtomicBool::new(false),
            handled: AtomicU64::new(0),
        }
    }

    /// Whether the last poll found nothing to do. With [`Health::handled`], lets a driver that
    /// runs several services see when the whole pipeline has settled.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// Inputs handled so far.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    pub(crate) fn count_handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `/health` answers 200.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether `/ready` answers 200: caught up, or a standby waiting for its group's lease.
    ///
    /// A standby counts as ready the way Kubernetes' own leader-elected controllers do: it
    /// has nothing to catch up on, it is ready to take over, and a Deployment running a leader
    /// and a standby could not roll or keep a disruption budget if a standby were never ready.
    /// [`Health::is_standby`] and `llmopt_leader` tell the two apart.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) || self.is_standby()
    }

    /// Whether this instance waits as a standby while another instance leads its group.
    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::Relaxed)
    }

    pub(crate) fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    /// Marks the runner ready or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the process as shutting down: neither live nor ready.
    pub fn set_stopping(&self) {
        self.ready.store(false, Ordering::Relaxed);
        self.standby.store(false, Ordering::Relaxed);
        self.live.store(false, Ordering::Relaxed);
    }
}
