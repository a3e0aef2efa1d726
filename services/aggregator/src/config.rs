//! Window geometry and watermark tolerances of the aggregator.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Aggregator settings. All durations are event-time milliseconds: the core never reads a clock,
/// so replaying a topic with the same settings reproduces the same windows.
///
/// Missing fields take their defaults, so a configuration file only names what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Size of the tumbling windows (default 60 s): the per-minute view the detector reads.
    pub tumbling_size_ms: i64,
    /// Hopping windows (default 300 s every 60 s), or `None` to disable them and halve the
    /// per-event work when only the per-minute view is wanted.
    pub hopping: Option<HoppingConfig>,
    /// How far behind its partition's newest event an event may be and still count as on time
    /// (default 5 s): the partition watermark is its max event time minus this.
    pub allowed_out_of_orderness_ms: i64,
    /// A partition whose newest event is more than this behind the newest event of any partition
    /// (default 5 min) is idle and no longer holds the watermark back. Measured in event time so
    /// replays are deterministic; it must exceed the event-time skew between partitions that
    /// consumption order alone creates (a consumer reading a backlog round-robin, or a fetch
    /// batch from one partition), or on-time events of a slower partition would turn late.
    pub idle_timeout_ms: i64,
    /// How long after its end (in watermark time) an emitted window still accepts late events and
    /// is re-emitted with a higher revision (default 60 s); after that it is dropped.
    pub allowed_lateness_ms: i64,
}

/// Hopping window geometry: windows of `size_ms` starting every `hop_ms`, aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoppingConfig {
    /// Window length (default 300 s).
    pub size_ms: i64,
    /// Distance between consecutive window starts (default 60 s); must not exceed `size_ms`,
    /// otherwise events between windows would belong to none.
    pub hop_ms: i64,
}

impl Default for HoppingConfig {
    fn default() -> Self {
        Self {
            size_ms: 300_000,
            hop_ms: 60_000,
        }
    }
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            tumbling_size_ms: 60_000,
            hopping: Some(HoppingConfig::default()),
            allowed_out_of_orderness_ms: 5_000,
            idle_timeout_ms: 300_000,
            allowed_lateness_ms: 60_000,
        }
    }
}

impl AggregatorConfig {
    /// Checks the settings, so that a bad configuration fails at start-up instead of producing
    /// empty or overlapping-by-accident windows.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("tumbling_size_ms", self.tumbling_size_ms)?;
        if let Some(h) = &self.hopping {
            positive("hopping.size_ms", h.size_ms)?;
            positive("hopping.hop_ms", h.hop_ms)?;
            if h.hop_ms > h.size_ms {
                return Err(ConfigError::HopLargerThanSize {
                    hop_ms: h.hop_ms,
                    size_ms: h.size_ms,
                });
            }
        }
        non_negative(
            "allowed_out_of_orderness_ms",
            self.allowed_out_of_orderness_ms,
        )?;
        non_negative("idle_timeout_ms", self.idle_timeout_ms)?;
        non_negative("allowed_lateness_ms", self.allowed_lateness_ms)?;
        Ok(())
    }

    /// Whether two configurations cut time into the same windows, which is what a checkpoint
    /// depends on (tolerances may change between runs, window shapes may not).
    pub fn same_geometry(&self, other: &Self) -> bool {
        self.tumbling_size_ms == other.tumbling_size_ms && self.hopping == other.hopping
    }
}

fn positive(field: &'static str, value: i64) -> Result<(), ConfigError> {
    if value > 0 {
        Ok(())
    } else {
        Err(ConfigError::NotPositive { field, value })
    }
}

fn non_negative(field: &'static str, value: i64) -> Result<(), ConfigError> {
    if value >= 0 {
        Ok(())
    } else {
        Err(ConfigError::Negative { field, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let c = AggregatorConfig::default();
        assert_eq!(c.tumbling_size_ms, 60_000);
        assert_eq!(
            c.hopping,
            Some(HoppingConfig {
                size_ms: 300_000,
                hop_ms: 60_000
            })
        );
        assert_eq!(c.allowed_out_of_orderness_ms, 5_000);
        assert_eq!(c.idle_timeout_ms, 300_000);
        assert_eq!(c.allowed_lateness_ms, 60_000);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn partial_config_takes_defaults_and_hopping_can_be_disabled() {
        let c: AggregatorConfig =
            toml::from_str("tumbling_size_ms = 10000\nallowed_lateness_ms = 0\n")
                .expect("valid toml");
        assert_eq!(c.tumbling_size_ms, 10_000);
        assert_eq!(c.allowed_lateness_ms, 0);
        assert_eq!(c.hopping, Some(HoppingConfig::default()));

        let c: AggregatorConfig = serde_json::from_str(r#"{"hopping": null}"#).expect("valid json");
        assert_eq!(c.hopping, None);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_bad_geometry() {
        let mut c = AggregatorConfig {
            tumbling_size_ms: 0,
            ..AggregatorConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::NotPositive {
                field: "tumbling_size_ms",
                ..
            })
        ));
        c.tumbling_size_ms = 1_000;
        c.hopping = Some(HoppingConfig {
            size_ms: 60_000,
            hop_ms: 120_000,
        });
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HopLargerThanSize { .. })
        ));
        c.hopping = None;
        c.allowed_lateness_ms = -1;
        assert!(matches!(c.validate(), Err(ConfigError::Negative { .. })));
    }
}
