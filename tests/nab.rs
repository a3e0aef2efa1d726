//! Regression check of the detector on the Numenta Anomaly Benchmark (NAB) development split:
//! `llmopt bench nab` writes NAB result files with the default detector configuration, NAB's
//! scoring rules (`shared/nab/score.py`, Python 3, standard library only) score them, and the
//! standard-profile score must stay above the floor recorded below.
//!
//! Needs the NAB data and scorer in `$NAB_DIR` (default: the `shared/nab` folder beside the
//! repository, where CI has it): `cargo test --test nab -- --nocapture`.

use std::path::PathBuf;
use std::process::Command;

/// Standard-profile score of the default configuration when this floor was last raised, minus
/// a margin for harmless changes; see docs/detection.md for the figures.
const STANDARD_FLOOR: f64 = 50.0;

fn nab_dir() -> PathBuf {
    std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/nab")))
}

#[test]
fn bench_nab_scores_above_the_recorded_floor() {
    let nab = nab_dir();
    assert!(
        nab.join("score.py").is_file(),
        "NAB kit not found in {}; set NAB_DIR",
        nab.display()
    );
    let results = std::env::temp_dir().join(format!("llmopt-nab-{}", std::process::id()));
    let bench = Command::new(env!("CARGO_BIN_EXE_llmopt"))
        .args(["bench", "nab", "--detector", "llmopt", "--data"])
        .arg(nab.join("data"))
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap_or_else(|e| panic!("cannot run llmopt: {e}"));
    assert!(
        bench.status.success(),
        "llmopt bench nab failed: {}",
        String::from_utf8_lossy(&bench.stderr)
    );
    println!("{}", String::from_utf8_lossy(&bench.stdout));
    let scored = Command::new("python3")
        .arg(nab.join("score.py"))
        .arg("--results")
        .arg(&results)
        .args(["--detector", "llmopt"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    let _ = std::fs::remove_dir_all(&results);
    let stdout = String::from_utf8_lossy(&scored.stdout);
    assert!(
        scored.status.success(),
        "score.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&scored.stderr)
    );
    println!("{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("bad score.py output: {e}"));
    let standard = json["scores"]["standard"]
        .as_f64()
        .unwrap_or_else(|| panic!("no standard score in {last}"));
    assert!(
        standard >= STANDARD_FLOOR,
        "NAB standard score {standard:.2} fell below the floor {STANDARD_FLOOR}"
    );
}
