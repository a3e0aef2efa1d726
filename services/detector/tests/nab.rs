//! Offline regression check of the baseline detector on the Numenta Anomaly Benchmark (NAB)
//! development split: it must score better than the trivial "never fire" detector (NAB score 0)
//! and not regress below the score recorded when the test was written.
//!
//! With the default parameters the robust EWMA scores 7.11 (standard profile) on the
//! development split, against 45.67 for the one-line "new extreme" rule and 17.16 for NAB's
//! random detector. The gap is expected and deliberate: the defaults keep a sustained level shift
//! anomalous for many windows (a production incident should stay visible), which NAB charges as
//! false positives, and a level-only EWMA lags behind NAB's smooth daily cycles. Experiments
//! (not adopted, to avoid tuning on a benchmark) gave 24 with `alpha = 0.01` and
//! `anomalous_weight = 1.0`.
//!
//! Needs the NAB data and scorer (`score.py`, Python 3) in `$NAB_DIR` (default: the `shared/nab`
//! folder beside the repository): `cargo test -p llmopt-detector --test nab -- --nocapture`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use llmopt_detector::{BaselineDetector, Metric, Observation, RobustEwma, RobustEwmaConfig};

/// The detector's name in result file names: letters, digits and `-` only.
const OURS: &str = "robust-ewma-mad";
/// The "new extreme" rule of NAB's README, the trivial baseline to beat.
const EXTREME: &str = "new-extreme";

fn nab_dir() -> PathBuf {
    std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The repository's sibling `shared/` folder, where CI has it too.
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/nab"))
        })
}

/// Rows of one NAB file: (timestamp as written, value as written, value).
fn read_rows(path: &Path) -> Vec<(String, String, f64)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (ts, value) = line
                .split_once(',')
                .unwrap_or_else(|| panic!("bad row `{line}` in {}", path.display()));
            let v: f64 = value
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("bad value `{value}`: {e}"));
            (ts.to_string(), value.to_string(), v)
        })
        .collect()
}

/// Anomaly scores in [0, 1] from the robust EWMA detector, streaming (row i sees rows 0..=i).
fn score_ours(values: &[f64]) -> Vec<f64> {
    let mut config = RobustEwmaConfig::default();
    // NAB values have arbitrary units: rely on the relative floor and the MAD only.
    config.absolute_floor.insert(Metric::LatencyP95Ms, 1e-9);
    let threshold = config.threshold;
    let detector = RobustEwma::new(config);
    let mut state = Default::default();
    values
        .iter()
        .map(
            |v| match detector.observe(Metric::LatencyP95Ms, &mut state, *v) {
                Observation::Scored(s) => {
                    let z = s.score.abs();
                    z / (z + threshold)
                }
                _ => 0.0,
            },
        )
        .collect()
}

/// 1 when the value leaves the running [min, max] by more than 5 % of the running range.
fn score_new_extreme(values: &[f64]) -> Vec<f64> {
    let mut range: Option<(f64, f64)> = None;
    values
        .iter()
        .map(|&v| {
            let score = match range {
                Some((lo, hi)) => {
                    let margin = 0.05 * (hi - lo);
                    if v > hi + margin || v < lo - margin {
                        1.0
                    } else {
                        0.0
                    }
                }
                None => 0.0,
            };
            range = Some(match range {
                Some((lo, hi)) => (lo.min(v), hi.max(v)),
                None => (v, v),
            });
            score
        })
        .collect()
}

fn write_results(
    results: &Path,
    detector: &str,
    file: &str,
    rows: &[(String, String, f64)],
    scores: &[f64],
) {
    let (category, name) = file
        .split_once('/')
        .unwrap_or_else(|| panic!("unexpected NAB file name {file}"));
    let dir = results.join(detector).join(category);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(format!("{detector}_{name}"));
    let mut out = fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::from("timestamp,value,anomaly_score\n");
    for ((ts, raw, _), score) in rows.iter().zip(scores) {
        // Full precision: only the ranking matters, and `{:.6}` would merge the top scores.
        text.push_str(&format!("{ts},{raw},{score}\n"));
    }
    out.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The standard-profile score of `detector`, from `score.py`'s last (JSON) line.
fn nab_score(nab: &Path, results: &Path, detector: &str) -> f64 {
    let output = Command::new("python3")
        .arg(nab.join("score.py"))
        .arg("--results")
        .arg(results)
        .arg("--detector")
        .arg(detector)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "score.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("bad score.py output: {e}"));
    json["scores"]["standard"]
        .as_f64()
        .unwrap_or_else(|| panic!("no standard score in {last}"))
}

#[test]
fn robust_ewma_beats_never_firing_on_nab() {
    let nab = nab_dir();
    let windows_json = fs::read_to_string(nab.join("labels/windows.json"))
        .unwrap_or_else(|e| panic!("NAB not found in {} ({e}); set NAB_DIR", nab.display()));
    let windows: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&windows_json).unwrap_or_else(|e| panic!("windows.json: {e}"));
    let results = std::env::temp_dir().join(format!("llmopt-detector-nab-{}", std::process::id()));
    for file in windows.keys() {
        let rows = read_rows(&nab.join("data").join(file));
        let values: Vec<f64> = rows.iter().map(|r| r.2).collect();
        write_results(&results, OURS, file, &rows, &score_ours(&values));
        write_results(&results, EXTREME, file, &rows, &score_new_extreme(&values));
    }
    let ours = nab_score(&nab, &results, OURS);
    let extreme = nab_score(&nab, &results, EXTREME);
    let _ = fs::remove_dir_all(&results);
    println!("NAB standard score: {OURS} {ours:.2}, {EXTREME} {extreme:.2}, null 0");
    // Beats the trivial "never fire" detector (0) and stays above a regression floor (the
    // default configuration scored 7.11 when this test was written). It does not beat the
    // new-extreme rule (45.67): the defaults are tuned for minute windows of LLM metrics, where
    // a sustained incident must stay anomalous, not for NAB's seasonal series; see the module
    // documentation.
    assert!(ours > 0.0, "no better than never firing: {ours}");
    assert!(ours >= 5.0, "regressed below the recorded floor: {ours}");
}
