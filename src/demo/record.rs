//! What the demo saw on the operator-facing topics, collected for the live console and the
//! final report.

use std::collections::BTreeMap;

use llmopt_events::{Alert, AlertStatus, ConfigChange, Decision, WindowAggregate, WindowKind};

/// Alerts, decisions, window results and config changes in the order they were read.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Every alert event (firing and resolved).
    pub alerts: Vec<Alert>,
    /// Every decision state change.
    pub decisions: Vec<Decision>,
    /// The latest revision of every tumbling window, by window id.
    pub windows: BTreeMap<String, WindowAggregate>,
    /// Every routing config change.
    pub config_changes: Vec<ConfigChange>,
}

impl Record {
    /// Keeps a window result if it is tumbling and newer than what is held.
    pub fn add_window(&mut self, w: WindowAggregate) {
        if w.window_kind != WindowKind::Tumbling {
            return;
        }
        match self.windows.get(&w.window_id) {
            Some(old) if old.revision >= w.revision => {}
            _ => {
                self.windows.insert(w.window_id.clone(), w);
            }
        }
    }

    /// Firing alerts, in order.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
    }

    /// The final routing decisions: the latest state of each decision id.
    pub fn latest_decisions(&self) -> BTreeMap<&str, &Decision> {
        let mut latest = BTreeMap::new();
        for d in &self.decisions {
            latest.insert(d.id.as_str(), d);
        }
        latest
    }
}
