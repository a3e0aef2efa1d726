//! A simulated fleet of LLM apps with scripted incidents: deterministic telemetry for
//! `llmopt demo` and the end-to-end tests.
//!
//! Why a simulator: the closed loop (ingest → aggregator → detector → decision → actuator →
//! routing) can only be shown, and tested end to end, against traffic that reacts to its
//! decisions. [`Simulator::advance`] asks the caller what the live routing config says for
//! each route and produces the calls that config would serve, so when the actuator fails a
//! route over, rolls a change back or moves a canary step, the next calls show it.
//!
//! Determinism: given the same [`FleetSpec`], [`Scenario`], seed, `advance` boundaries and
//! routing answers, the events (ids included) are identical; nothing reads the wall clock.
//!
//! Modules:
//! - [`catalogue`]: models with prices, latency, errors and quality;
//! - [`fleet`]: apps, routes, traffic and initial routing ([`FleetSpec::default`]);
//! - [`tenants`]: noisy tenants' batch jobs and bursts on top of the traffic;
//! - [`scenario`]: incidents and their ground truth, TOML format ([`Scenario::default`]);
//! - [`pricing`]: per-1K price table for ingest;
//! - [`simulator`]: the event generator.
//!
//! The default fleet ([`FleetSpec::default`], 11.5 calls/s):
//!
//! | app/route | calls/s | initial targets | role in the demo |
//! |---|---|---|---|
//! | checkout/order-summary | 2.0 | openai/gpt-4o 0.92, openai/gpt-4o-mini 0.08 | cheaper-model canary |
//! | checkout/address-normalize | 3.0 | self-hosted/llama-3.1-8b 1.0 | quantization request |
//! | support-bot/answer | 1.5 | anthropic/claude-3-5-sonnet 1.0 | manual change, rollback; cost spike |
//! | support-bot/triage | 1.0 | anthropic/claude-3-5-haiku 1.0 | quality drift |
//! | search/query-rewrite | 4.0 | google/gemini-1.5-flash 1.0 | provider error burst, failover |
//!
//! The default scenario ([`Scenario::default`], 2 h) is described in [`scenario`].
//!
//! ```
//! use llmopt_sim::{FleetSpec, Scenario, SimEvent, Simulator};
//!
//! let mut sim = Simulator::new(FleetSpec::default(), Scenario::default(), 42, 0)?;
//! let seed_changes = sim.initial_config_changes(0);
//! assert_eq!(seed_changes.len(), 5);
//! // One simulated minute with no live config: initial targets, version 1.
//! let events = sim.advance(60_000, &mut |_app, _route| None);
//! assert!(events.iter().all(|e| matches!(e, SimEvent::Call { .. })));
//! # Ok::<(), llmopt_sim::SimError>(())
//! ```

#![warn(missing_docs)]

pub mod catalogue;
mod error;
pub mod fleet;
pub mod pricing;
mod sample;
pub mod scenario;
pub mod simulator;
pub mod tenants;
pub mod traffic;

pub use catalogue::{Catalogue, ErrorMix, LogNormal, ModelProfile};
pub use error::SimError;
pub use fleet::{AppSpec, FleetSpec, RouteSpec, TokenProfile};
pub use pricing::{ModelPrice, PriceTable};
pub use scenario::{GroundTruth, GroundTruthKind, Incident, IncidentKind, Scenario};
pub use simulator::{RouteLedger, RouteSnapshot, SimEvent, Simulator, TRUNCATION_PENALTY};
pub use tenants::NoisyTenant;
pub use traffic::TrafficShape;
