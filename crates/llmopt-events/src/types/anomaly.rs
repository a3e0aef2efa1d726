use serde::{Deserialize, Serialize};

use super::bind_contract;

/// A metric value a detector found abnormal, with its evidence (`schemas/anomaly.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub id: String,
    pub event_time: i64,
    pub window_id: String,
    pub app: String,
    pub route: String,
    pub provider: String,
    pub model: String,
    pub metric: String,
    pub value: f64,
    pub baseline: f64,
    pub score: f64,
    pub direction: Direction,
    pub detector: String,
}

/// Which way the value left its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    Up,
    Down,
}

bind_contract!(Anomaly => Anomaly);
