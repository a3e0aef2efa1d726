//! Running the detectors over Numenta Anomaly Benchmark (NAB) series.
//!
//! NAB series are single values with arbitrary units, one row at a time: no call counts, no
//! metric semantics. [`SeriesScorer`] runs the detector library on such a series with one fixed
//! configuration (the service's defaults): range exceedance ([`RangeExceedance`], how far a value
//! leaves the range of its history), the robust EWMA spike detector and the change detector (a
//! linear scale, one "call" per row). The score is the largest of the exceedance squashed by
//! `e / (e + 0.05)` and, weighted by 0.3, the spike's |z| over its threshold and the charts'
//! statistics over their limits, each squashed by `s / (1 + s)`. Range exceedance carries most
//! of the NAB score: NAB's anomalies are mostly new extremes, and its series are autocorrelated
//! single values for which a noise model per value means little.
//!
//! [`run`] reads NAB-format CSVs (`timestamp,value`) below a data folder and writes NAB result
//! files, one row per input row in input order, so that NAB's scorer (or `shared/nab/score.py`)
//! scores them. It streams honestly: row i is scored before row i+1 is read into the model.

use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::baseline::{BaselineDetector, Observation, RobustEwma, RobustEwmaState};
use crate::change::{ChangeDetector, ChangeState, Scale};
use crate::config::DetectorConfig;
use crate::extreme::{RangeExceedance, RangeState};
use crate::metrics::Metric;

/// Why a NAB run failed.
#[derive(Debug, Error)]
pub enum NabError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A data row is not `timestamp,value` with a numeric value.
    #[error("{path} line {line}: {reason}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The data folder holds no `<category>/<name>.csv` file.
    #[error("no NAB data files (<category>/<name>.csv) below {0}")]
    NoData(PathBuf),
    /// The detector name cannot appear in NAB result file names.
    #[error("detector name `{0}` must be letters, digits and `-` only")]
    BadName(String),
}

/// Streaming anomaly scores for one univariate series.
#[derive(Debug)]
pub struct SeriesScorer {
    spike: RobustEwma,
    spike_state: RobustEwmaState,
    change: ChangeDetector,
    change_state: ChangeState,
    range: RangeExceedance,
    range_state: RangeState,
}

/// Exceedance (in range widths) that scores 0.5.
const EXCEEDANCE_HALF: f64 = 0.05;
/// Weight of the spike and change detectors' scores beside range exceedance.
const MODEL_WEIGHT: f64 = 0.3;

/// The metric whose spike parameters a NAB series borrows; its absolute floor is replaced by a
/// negligible one, since NAB units are arbitrary.
const NAB_METRIC: Metric = Metric::LatencyP95Ms;

/// The change detector's noise floor on NAB series: negligible, the noise is learned.
const NAB_FLOOR: f64 = 1e-9;

impl SeriesScorer {
    /// A scorer with the detectors configured as in `config`.
    pub fn new(config: &DetectorConfig) -> Self {
        let mut spike = config.baseline.clone();
        spike.absolute_floor.insert(NAB_METRIC, NAB_FLOOR);
        Self {
            spike: RobustEwma::new(spike),
            spike_state: RobustEwmaState::default(),
            change: ChangeDetector::new(config.change.clone()),
            change_state: ChangeState::default(),
            range: RangeExceedance::default(),
            range_state: RangeState::default(),
        }
    }

    /// The anomaly score of the next value, in [0, 1]; 0 while the detectors warm up.
    pub fn score(&mut self, value: f64) -> f64 {
        let squash = |s: f64| if s.is_finite() { s / (1.0 + s) } else { 1.0 };
        let mut model: f64 = 0.0;
        if let Observation::Scored(s) = self.spike.observe(NAB_METRIC, &mut self.spike_state, value)
        {
            model = model.max(s.score.abs() / self.spike.config().threshold);
        }
        for verdict in self.change.observe_on(
            Scale::Linear,
            NAB_FLOOR,
            true,
            &mut self.change_state,
            value,
            1.0,
        ) {
            model = model.max(verdict.score.abs());
        }
        let exceedance = self.range.observe(&mut self.range_state, value);
        let extreme = if exceedance > 0.0 {
            exceedance / (exceedance + EXCEEDANCE_HALF)
        } else {
            0.0
        };
        extreme.max(MODEL_WEIGHT * squash(model))
    }
}

/// What a run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NabRun {
    /// Result files written.
    pub files: usize,
    /// Rows scored.
    pub rows: usize,
}

/// Scores every `<category>/<name>.csv` below `data` and writes
/// `<results>/<detector>/<category>/<detector>_<name>.csv`.
pub fn run(
    data: &Path,
    results: &Path,
    detector: &str,
    config: &DetectorConfig,
) -> Result<NabRun, NabError> {
    if detector.is_empty()
        || !detector
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(NabError::BadName(detector.to_string()));
    }
    let files = data_files(data)?;
    if files.is_empty() {
        return Err(NabError::NoData(data.to_path_buf()));
    }
    let mut run = NabRun { files: 0, rows: 0 };
    for (category, name, path) in files {
        let text = fs::read_to_string(&path).map_err(|source| NabError::Io {
            path: path.clone(),
            source,
        })?;
        let mut scorer = SeriesScorer::new(config);
        let mut out = String::from("timestamp,value,anomaly_score\n");
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| NabError::BadRow {
                path: path.clone(),
                line: i + 1,
                reason,
            };
            let (timestamp, raw) = line
                .split_once(',')
                .ok_or_else(|| bad("expected `timestamp,value`".into()))?;
            let value: f64 = raw
                .trim()
                .parse()
                .map_err(|e| bad(format!("value `{raw}`: {e}")))?;
            let score = scorer.score(value);
            // Full precision: only the ranking matters, and rounding would merge top scores.
            out.push_str(&format!("{timestamp},{raw},{score}\n"));
            run.rows += 1;
        }
        let dir = results.join(detector).join(&category);
        fs::create_dir_all(&dir).map_err(|source| NabError::Io {
            path: dir.clone(),
            source,
        })?;
        let target = dir.join(format!("{detector}_{name}"));
        fs::write(&target, out).map_err(|source| NabError::Io {
            path: target,
            source,
        })?;
        run.files += 1;
    }
    Ok(run)
}

/// (category, file name, path) of every CSV one folder below `data`, sorted.
fn data_files(data: &Path) -> Result<Vec<(String, String, PathBuf)>, NabError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NabError::Io { path, source }
    };
    let mut files = Vec::new();
    for category in fs::read_dir(data).map_err(io(data))? {
        let category = category.map_err(io(data))?.path();
        if !category.is_dir() {
            continue;
        }
        for file in fs::read_dir(&category).map_err(io(&category))? {
            let path = file.map_err(io(&category))?.path();
            let (Some(c), Some(n)) = (
                category.file_name().and_then(|c| c.to_str()),
                path.file_name().and_then(|n| n.to_str()),
            ) else {
                continue;
            };
            if n.ends_with(".csv") {
                files.push((c.to_string(), n.to_string(), path.clone()));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_shift_scores_above_the_noise_before_it() {
        let mut scorer = SeriesScorer::new(&DetectorConfig::default());
        let noise = |i: u32| f64::from((i * 7919) % 13) - 6.0;
        let quiet: Vec<f64> = (0..300).map(|i| scorer.score(100.0 + noise(i))).collect();
        let shifted: Vec<f64> = (300..320).map(|i| scorer.score(130.0 + noise(i))).collect();
        let quiet_max = quiet[50..].iter().copied().fold(0.0, f64::max);
        let shifted_max = shifted.iter().copied().fold(0.0, f64::max);
        assert!(
            shifted_max > 0.5 && quiet_max < shifted_max,
            "{quiet_max} {shifted_max}"
        );
        assert!(quiet
            .iter()
            .chain(&shifted)
            .all(|s| (0.0..=1.0).contains(s)));
    }

    #[test]
    fn writes_one_row_per_input_row_and_rejects_bad_input() {
        let dir = std::env::temp_dir().join(format!("llmopt-nab-unit-{}", std::process::id()));
        let data = dir.join("data");
        let results = dir.join("results");
        let category = data.join("synthetic");
        let _ = fs::create_dir_all(&category);
        let rows: String = (0..100)
            .map(|i| format!("2024-01-01 00:{:02}:00,{}\n", i % 60, i % 7))
            .collect();
        let _ = fs::write(category.join("a.csv"), format!("timestamp,value\n{rows}"));
        let config = DetectorConfig::default();
        let run = run(&data, &results, "ours", &config);
        assert!(
            matches!(
                run,
                Ok(NabRun {
                    files: 1,
                    rows: 100
                })
            ),
            "{run:?}"
        );
        let written =
            fs::read_to_string(results.join("ours/synthetic/ours_a.csv")).unwrap_or_default();
        assert_eq!(written.lines().count(), 101);
        assert!(matches!(
            super::run(&data, &results, "no_underscore", &config),
            Err(NabError::BadName(_))
        ));
        let _ = fs::write(category.join("b.csv"), "timestamp,value\n2024-01-01,abc\n");
        let err = super::run(&data, &results, "ours", &config);
        assert!(
            matches!(err, Err(NabError::BadRow { line: 2, .. })),
            "{err:?}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
