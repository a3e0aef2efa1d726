use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bind_contract;

/// One applied change to the routing config of an app/route (`schemas/config_change.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub id: String,
    pub event_time: i64,
    pub app: String,
    pub route: String,
    pub version: i64,
    #[serde(default)]
    pub previous_version: Option<i64>,
    pub kind: ChangeKind,
    #[serde(default)]
    pub decision_id: Option<String>,
    pub targets: Vec<RouteTarget>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A provider/model and its share of a route's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteTarget {
    pub provider: String,
    pub model: String,
    pub weight: f64,
}

/// Why the config changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    Initial,
    Apply,
    CanaryStep,
    Rollback,
    Manual,
}

bind_contract!(ConfigChange => ConfigChange);
