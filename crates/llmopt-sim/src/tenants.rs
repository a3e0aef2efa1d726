//! Noisy tenants: customers whose batch jobs and bursts come on top of an app's usual traffic.
//!
//! A real fleet's quiet day is not a smooth cosine. One tenant runs a nightly batch job that
//! triples an app's calls for an hour, with prompts several times longer than the interactive
//! traffic's (so the app's cost per call jumps at the same hour every night); another launches
//! something, or a client retries in a storm, at no particular time. Neither is an incident, and
//! a detector that pages for them every day is switched off by its users: the nightly job is what
//! the detector's seasonal baseline has to learn, the unscheduled bursts are noise it has to bear.
//!
//! Both are deterministic functions of the simulator's seed and the time: whether a burst starts
//! in a given hour is a hash of (seed, tenant, hour), so the same seed gives the same bursts
//! however the simulation is advanced.

use serde::{Deserialize, Serialize};

use crate::error::{check_positive, check_range, SimError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A tenant whose jobs add calls on top of its apps' traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoisyTenant {
    /// The tenant, as listed in the apps' `tenants`; every app listing it gets its jobs' calls.
    pub tenant: String,
    /// Hour of the day (UTC, may be fractional) a daily batch job starts at; none if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_job_hour_utc: Option<f64>,
    /// Mean number of unscheduled bursts a day, at random hours.
    #[serde(default)]
    pub bursts_per_day: f64,
    /// How long a job or burst lasts, in minutes.
    pub job_minutes: f64,
    /// While a job runs, each of the tenant's apps' routes takes this many times its mean call
    /// rate in addition to its usual traffic (1 = doubles it).
    pub extra_rate: f64,
    /// The job's prompts are this many times longer than the route's usual ones.
    #[serde(default = "one")]
    pub input_tokens_factor: f64,
}

fn one() -> f64 {
    1.0
}

impl NoisyTenant {
    /// Rejects values that would make no sense (negative rates, jobs longer than a day).
    pub fn validate(&self, field: &str) -> Result<(), SimError> {
        if self.tenant.is_empty() {
            return Err(SimError::invalid(format!("{field}.tenant"), "is empty"));
        }
        if let Some(hour) = self.daily_job_hour_utc {
            check_range(&format!("{field}.daily_job_hour_utc"), hour, 0.0, 24.0)?;
        }
        check_range(
            &format!("{field}.bursts_per_day"),
            self.bursts_per_day,
            0.0,
            24.0,
        )?;
        check_range(
            &format!("{field}.job_minutes"),
            self.job_minutes,
            1.0,
            720.0,
        )?;
        check_range(&format!("{field}.extra_rate"), self.extra_rate, 0.0, 100.0)?;
        check_positive(
            &format!("{field}.input_tokens_factor"),
            self.input_tokens_factor,
        )
    }

    /// Whether one of its jobs or bursts runs at `t_ms`, for a simulation seeded with `seed`.
    pub fn busy_at(&self, seed: u64, t_ms: i64) -> bool {
        let length_ms = (self.job_minutes * 60_000.0) as i64;
        if let Some(hour) = self.daily_job_hour_utc {
            let start = (hour * HOUR_MS as f64) as i64;
            let into_day = t_ms.rem_euclid(DAY_MS);
            // A job starting late in the day runs past midnight: look at yesterday's too.
            if (into_day - start).rem_euclid(DAY_MS) < length_ms {
                return true;
            }
        }
        if self.bursts_per_day <= 0.0 {
            return false;
        }
        let chance = self.bursts_per_day / 24.0;
        let this_hour = t_ms.div_euclid(HOUR_MS);
        let hours_back = length_ms.div_euclid(HOUR_MS) + 1;
        (this_hour - hours_back..=this_hour).any(|hour| {
            let draw = mix(seed, &self.tenant, hour);
            let starts = unit(draw) < chance;
            let start = hour * HOUR_MS + (unit(mix(draw, "offset", hour)) * HOUR_MS as f64) as i64;
            starts && t_ms >= start && t_ms < start + length_ms
        })
    }

    /// A nightly batch job: an hour from 01:00 UTC every day that triples its apps' calls
    /// (extra rate 2) with prompts three times as long, so their cost per call doubles at the
    /// same hour every night.
    pub fn nightly_batch_job(tenant: &str) -> NoisyTenant {
        NoisyTenant {
            tenant: tenant.to_string(),
            daily_job_hour_utc: Some(1.0),
            bursts_per_day: 0.0,
            job_minutes: 60.0,
            extra_rate: 2.0,
            input_tokens_factor: 3.0,
        }
    }

    /// Unscheduled bursts: twice a day on average, 20 minutes at 2.5 times its apps' volume,
    /// calls like the others (a launch, a retry storm).
    pub fn bursty(tenant: &str) -> NoisyTenant {
        NoisyTenant {
            tenant: tenant.to_string(),
            daily_job_hour_utc: None,
            bursts_per_day: 2.0,
            job_minutes: 20.0,
            extra_rate: 1.5,
            input_tokens_factor: 1.0,
        }
    }
}

/// SplitMix64 of the seed, the tenant's name and an hour: an independent uniform draw per hour
/// that does not depend on how the simulation was advanced.
fn mix(seed: u64, name: &str, hour: i64) -> u64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in name.bytes() {
        h = splitmix(h ^ u64::from(b));
    }
    splitmix(h ^ hour as u64)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-05T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_767_571_200_000;

    #[test]
    fn the_nightly_job_runs_at_its_hour_every_day_including_past_midnight() {
        let nightly = &NoisyTenant::nightly_batch_job("globex");
        for day in 0..7 {
            let midnight = MONDAY + day * DAY_MS;
            assert!(!nightly.busy_at(1, midnight + 59 * 60_000));
            assert!(nightly.busy_at(1, midnight + HOUR_MS));
            assert!(nightly.busy_at(1, midnight + 2 * HOUR_MS - 1));
            assert!(!nightly.busy_at(1, midnight + 2 * HOUR_MS));
        }
        let late = NoisyTenant {
            daily_job_hour_utc: Some(23.5),
            ..nightly.clone()
        };
        assert!(late.busy_at(1, MONDAY + 10 * 60_000), "00:10 the next day");
        assert!(!late.busy_at(1, MONDAY + 40 * 60_000));
        assert!(nightly.validate("noisy_tenants[0]").is_ok());
    }

    #[test]
    fn unscheduled_bursts_come_at_about_their_rate_and_depend_on_the_seed() {
        let bursty = &NoisyTenant::bursty("hooli");
        let minutes = 60 * 24 * 100;
        let busy = |seed: u64| -> Vec<bool> {
            (0..minutes)
                .map(|m| bursty.busy_at(seed, MONDAY + m * 60_000))
                .collect()
        };
        let one = busy(1);
        let share = one.iter().filter(|b| **b).count() as f64 / minutes as f64;
        // Two bursts of 20 minutes a day: 40 of 1,440 minutes, 2.8 %.
        assert!((0.02..0.036).contains(&share), "share {share}");
        let starts = one.windows(2).filter(|w| !w[0] && w[1]).count();
        assert!((150..=250).contains(&starts), "{starts} bursts in 100 days");
        assert_eq!(one, busy(1), "deterministic");
        assert_ne!(one, busy(2), "another seed, other bursts");
    }

    #[test]
    fn bad_tenants_are_rejected() {
        let mut t = NoisyTenant::nightly_batch_job("globex");
        t.job_minutes = 0.0;
        assert!(t.validate("t").is_err());
        t.job_minutes = 30.0;
        t.extra_rate = -1.0;
        assert!(t.validate("t").is_err());
    }
}
