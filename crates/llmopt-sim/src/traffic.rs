//! The shape of a fleet's traffic over the day and the week.
//!
//! Real fleets are busy in office hours and quiet at night and at weekends, and their latency
//! rises a little with load. [`TrafficShape`] scales every route's call rate by a daily cosine
//! (peak at `peak_hour_utc`) and a weekend factor, and stretches latency with the load. The
//! default is flat, so fleets written before it behave exactly as they did; [`TrafficShape::
//! realistic`] is the shape `llmopt bench detect` uses to check that daily cycles do not alert.

use serde::{Deserialize, Serialize};

use crate::error::{check_range, SimError};

const DAY_MS: f64 = 86_400_000.0;
/// 1970-01-01 was a Thursday: day index 0 is Thursday, so Saturday is 2 and Sunday 3.
const SATURDAY: i64 = 2;
const SUNDAY: i64 = 3;

/// How call volume (and latency with it) varies with the time of day and the day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficShape {
    /// Relative swing of the call rate over the day, in [0, 1): the rate is
    /// `mean * (1 + a * cos(2 pi (hour - peak) / 24))`. 0 is flat.
    pub daily_amplitude: f64,
    /// Hour of the day (UTC, may be fractional) at which traffic peaks.
    pub peak_hour_utc: f64,
    /// Call rate on Saturdays and Sundays as a share of weekdays, in (0, 1].
    pub weekend_factor: f64,
    /// How much latency grows with load: times `1 + s * (load - 1)`, where load is the current
    /// rate over the mean weekday rate. 0: latency does not depend on load.
    pub latency_load_sensitivity: f64,
}

impl Default for TrafficShape {
    fn default() -> Self {
        Self {
            daily_amplitude: 0.0,
            peak_hour_utc: 14.0,
            weekend_factor: 1.0,
            latency_load_sensitivity: 0.0,
        }
    }
}

impl TrafficShape {
    /// Office-hours traffic: 4x more calls at the 14:00 UTC peak than at 02:00, weekends at
    /// half a weekday's volume, latency 15 % higher per doubling of load.
    pub fn realistic() -> Self {
        Self {
            daily_amplitude: 0.6,
            peak_hour_utc: 14.0,
            weekend_factor: 0.5,
            latency_load_sensitivity: 0.15,
        }
    }

    /// Whether the rate never changes (then arrivals are drawn exactly as without a shape).
    pub fn is_flat(&self) -> bool {
        self.daily_amplitude == 0.0 && self.weekend_factor == 1.0
    }

    /// The call rate at `t_ms` (ms since epoch) as a multiple of the mean weekday rate.
    pub fn load(&self, t_ms: i64) -> f64 {
        let day = t_ms.div_euclid(DAY_MS as i64);
        let hour = t_ms.rem_euclid(DAY_MS as i64) as f64 / 3_600_000.0;
        let daily = 1.0
            + self.daily_amplitude
                * ((hour - self.peak_hour_utc) / 24.0 * std::f64::consts::TAU).cos();
        let weekday = day.rem_euclid(7);
        let weekly = if weekday == SATURDAY || weekday == SUNDAY {
            self.weekend_factor
        } else {
            1.0
        };
        daily * weekly
    }

    /// The highest load at any time: the rate arrivals are drawn at before thinning.
    pub fn peak_load(&self) -> f64 {
        1.0 + self.daily_amplitude
    }

    /// The latency multiplier at `t_ms`.
    pub fn latency_factor(&self, t_ms: i64) -> f64 {
        (1.0 + self.latency_load_sensitivity * (self.load(t_ms) - 1.0)).max(0.1)
    }

    /// Rejects shapes that would make rates negative or latency shrink to nothing.
    pub fn validate(&self) -> Result<(), SimError> {
        check_range("traffic.daily_amplitude", self.daily_amplitude, 0.0, 0.99)?;
        check_range("traffic.peak_hour_utc", self.peak_hour_utc, 0.0, 24.0)?;
        check_range("traffic.weekend_factor", self.weekend_factor, 0.01, 1.0)?;
        check_range(
            "traffic.latency_load_sensitivity",
            self.latency_load_sensitivity,
            0.0,
            1.0,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-05T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_767_571_200_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn realistic_traffic_peaks_in_the_afternoon_and_halves_at_weekends() {
        let shape = TrafficShape::realistic();
        assert!((shape.load(MONDAY + 14 * HOUR) - 1.6).abs() < 1e-9);
        assert!((shape.load(MONDAY + 2 * HOUR) - 0.4).abs() < 1e-9);
        let saturday = MONDAY + 5 * 24 * HOUR;
        assert!((shape.load(saturday + 14 * HOUR) - 0.8).abs() < 1e-9);
        let sunday = saturday + 24 * HOUR;
        assert!((shape.load(sunday + 14 * HOUR) - 0.8).abs() < 1e-9);
        assert!(
            (shape.load(sunday + 38 * HOUR) - 1.6).abs() < 1e-9,
            "Monday again"
        );
        assert!(shape.latency_factor(MONDAY + 14 * HOUR) > shape.latency_factor(MONDAY));
        assert!(shape.validate().is_ok());
    }

    #[test]
    fn the_default_is_flat_and_bad_shapes_are_rejected() {
        let flat = TrafficShape::default();
        assert!(flat.is_flat());
        assert_eq!(flat.load(MONDAY + 7 * HOUR), 1.0);
        assert_eq!(flat.latency_factor(MONDAY), 1.0);
        let bad = TrafficShape {
            daily_amplitude: 1.5,
            ..TrafficShape::default()
        };
        assert!(bad.validate().is_err());
    }
}
