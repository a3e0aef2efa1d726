use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bind_contract;

/// An optimisation decision or one of its state changes (`schemas/decision.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub id: String,
    pub event_time: i64,
    pub strategy: Strategy,
    pub state: DecisionState,
    pub mode: DecisionMode,
    pub app: String,
    pub route: String,
    pub action: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub reason: String,
    pub evidence: Evidence,
    #[serde(default)]
    pub caused_by: Vec<String>,
}

/// The statistics a decision rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub test: String,
    #[serde(default)]
    pub statistic: Option<f64>,
    #[serde(default)]
    pub p_value: Option<f64>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Which optimisation produced the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Strategy {
    RegressionRollback,
    Failover,
    CheaperModelCanary,
    QuantizationRequest,
    ParameterTuning,
    Experiment,
}

/// Decision lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionState {
    Proposed,
    Approved,
    Applying,
    Verifying,
    Succeeded,
    RolledBack,
    Rejected,
    Expired,
}

/// Whether a human approves before application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionMode {
    Auto,
    Propose,
}

bind_contract!(Decision => Decision);
