use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bind_contract;

/// An operator-facing alert state change (`schemas/alert.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub dedup_key: String,
    pub status: AlertStatus,
    pub severity: Severity,
    pub alertname: String,
    pub summary: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub threshold: Option<f64>,
    pub starts_at: i64,
    #[serde(default)]
    pub ends_at: Option<i64>,
    pub event_time: i64,
}

/// Alert lifecycle, as in Alertmanager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// How urgently an operator should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

bind_contract!(Alert => Alert);
