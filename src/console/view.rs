//! What the console shows, kept in memory and bounded: the operator topics folded into per-route
//! and per-series state. Pure: events in, state out, so the same topics give the same view.
//!
//! Bounds: window results are kept for `retention_ms` of event time behind the newest window
//! (24 h by default), per series; alert and decision histories and config-change histories keep
//! their newest entries up to fixed caps. The console is rebuilt from the topics on start, so
//! nothing here needs to survive a restart.

use std::collections::{BTreeMap, VecDeque};

use llmopt_events::{
    Alert, AlertStatus, AnyEvent, ArtifactPublished, ConfigChange, Decision, QuantizationJob,
    WindowAggregate, WindowKind,
};
use serde::Serialize;

/// Alert state changes kept.
const ALERT_HISTORY: usize = 2_000;
/// Decision state changes kept.
const DECISION_HISTORY: usize = 2_000;
/// Config changes kept per route.
const CHANGES_PER_ROUTE: usize = 200;
/// Artifacts kept.
const ARTIFACTS: usize = 500;

/// A quantization job and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    /// The job as requested.
    pub job: QuantizationJob,
    /// `queued`, `published` or `failed`.
    pub status: &'static str,
    /// The artifact's id once published.
    pub artifact_id: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
}

/// Everything the console knows about one app/route.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteView {
    /// App.
    pub app: String,
    /// Route.
    pub route: String,
    /// Config changes, oldest first (the last is the live routing).
    pub changes: VecDeque<ConfigChange>,
    /// Window results per series (`provider/model`), by window start; the latest revision,
    /// without its latency sketch.
    #[serde(skip)]
    pub windows: BTreeMap<String, BTreeMap<i64, WindowAggregate>>,
}

/// The console's whole view.
#[derive(Debug, Clone, Default)]
pub struct ConsoleView {
    retention_ms: i64,
    routes: BTreeMap<(String, String), RouteView>,
    alerts: VecDeque<Alert>,
    firing: BTreeMap<String, Alert>,
    decisions: BTreeMap<String, Decision>,
    decision_history: VecDeque<Decision>,
    artifacts: VecDeque<ArtifactPublished>,
    jobs: BTreeMap<String, JobView>,
    newest_window_end: i64,
    events: u64,
}

impl ConsoleView {
    /// An empty view keeping `retention_ms` of windows.
    pub fn new(retention_ms: i64) -> Self {
        Self {
            retention_ms,
            ..Self::default()
        }
    }

    /// Folds one event in; events the console does not show are ignored. Returns whether the
    /// view changed.
    pub fn apply(&mut self, event: &AnyEvent) -> bool {
        let changed = match event {
            AnyEvent::WindowAggregate(w) => self.add_window(w),
            AnyEvent::Alert(a) => {
                match a.status {
                    AlertStatus::Firing => {
                        self.firing.insert(a.dedup_key.clone(), a.clone());
                    }
                    AlertStatus::Resolved => {
                        self.firing.remove(&a.dedup_key);
                    }
                }
                push_capped(&mut self.alerts, a.clone(), ALERT_HISTORY);
                true
            }
            AnyEvent::Decision(d) => {
                self.decisions.insert(d.id.clone(), d.clone());
                push_capped(&mut self.decision_history, d.clone(), DECISION_HISTORY);
                true
            }
            AnyEvent::ConfigChange(c) => {
                let route = self.route_mut(&c.app, &c.route);
                if route
                    .changes
                    .back()
                    .is_some_and(|last| last.version >= c.version)
                {
                    false // a replayed or older version
                } else {
                    push_capped(&mut route.changes, c.clone(), CHANGES_PER_ROUTE);
                    true
                }
            }
            AnyEvent::ArtifactPublished(a) => {
                if let Some(job) = self.jobs.get_mut(&a.job_id) {
                    job.status = "published";
                    job.artifact_id = Some(a.id.clone());
                }
                push_capped(&mut self.artifacts, a.clone(), ARTIFACTS);
                true
            }
            AnyEvent::QuantizationJob(j) => {
                if self.jobs.len() >= ARTIFACTS {
                    self.jobs.pop_first();
                }
                self.jobs
                    .entry(j.job_id.clone())
                    .or_insert_with(|| JobView {
                        job: j.clone(),
                        status: "queued",
                        artifact_id: None,
                        failure: None,
                    });
                true
            }
            AnyEvent::QuantizationFailed(f) => match self.jobs.get_mut(&f.job_id) {
                Some(job) => {
                    job.status = "failed";
                    job.failure = Some(f.message.clone());
                    true
                }
                None => false,
            },
            _ => false,
        };
        if changed {
            self.events += 1;
        }
        changed
    }

    fn route_mut(&mut self, app: &str, route: &str) -> &mut RouteView {
        self.routes
            .entry((app.to_string(), route.to_string()))
            .or_insert_with(|| RouteView {
                app: app.to_string(),
                route: route.to_string(),
                ..RouteView::default()
            })
    }

    fn add_window(&mut self, w: &WindowAggregate) -> bool {
        if w.window_kind != WindowKind::Tumbling {
            return false;
        }
        self.newest_window_end = self.newest_window_end.max(w.window_end);
        let horizon = self.newest_window_end - self.retention_ms;
        let series = format!("{}/{}", w.provider, w.model);
        let route = self.route_mut(&w.app, &w.route);
        // The latest revision of a window replaces the earlier one.
        let mut kept = w.clone();
        kept.latency_sketch = None;
        route
            .windows
            .entry(series)
            .or_default()
            .insert(w.window_start, kept);
        for points in route.windows.values_mut() {
            while points.first_key_value().is_some_and(|(s, _)| *s < horizon) {
                points.pop_first();
            }
        }
        true
    }

    /// Events folded in so far (a cheap version for clients polling for change).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Every route, by app and route.
    pub fn routes(&self) -> impl Iterator<Item = &RouteView> {
        self.routes.values()
    }

    /// One route.
    pub fn route(&self, app: &str, route: &str) -> Option<&RouteView> {
        self.routes.get(&(app.to_string(), route.to_string()))
    }

    /// Alert state changes, oldest first.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter()
    }

    /// Alerts firing now, by dedup key.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.firing.values()
    }

    /// Each decision's latest state, by id.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.values()
    }

    /// One decision's latest state.
    pub fn decision(&self, id: &str) -> Option<&Decision> {
        self.decisions.get(id)
    }

    /// Every state change of one decision, oldest first.
    pub fn decision_history<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Decision> {
        self.decision_history.iter().filter(move |d| d.id == id)
    }

    /// Quantization jobs by id, with their outcome.
    pub fn jobs(&self) -> impl Iterator<Item = &JobView> {
        self.jobs.values()
    }

    /// Artifacts, oldest first.
    pub fn artifacts(&self) -> impl Iterator<Item = &ArtifactPublished> {
        self.artifacts.iter()
    }

    /// Every window kept, in no particular order (for the cost report).
    pub fn all_windows(&self) -> Vec<WindowAggregate> {
        self.routes
            .values()
            .flat_map(|r| r.windows.values().flat_map(|p| p.values().cloned()))
            .collect()
    }

    /// Every config change kept.
    pub fn all_changes(&self) -> Vec<ConfigChange> {
        self.routes
            .values()
            .flat_map(|r| r.changes.iter().cloned())
            .collect()
    }

    /// End of the newest window seen: the console's "now" in event time.
    pub fn now_ms(&self) -> i64 {
        self.newest_window_end
    }
}

fn push_capped<T>(items: &mut VecDeque<T>, item: T, cap: usize) {
    if items.len() == cap {
        items.pop_front();
    }
    items.push_back(item);
}
