//! The deployment shape end to end: the five services as separate `llmopt run` processes on the
//! real broker and Redis, driven by `llmopt loadgen` (another process) in lock-step through their
//! admin endpoints. The default scenario must give the same alerts, decisions and final routing
//! as the embedded demo, and a real `/metrics` scrape must pass `promtool check metrics`.

mod common;

use std::process::Stdio;

use common::lockstep::{self, SERVICES};
use common::process::{loadgen_fleet_config, read, Installation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_against_service_processes_matches_the_embedded_demo() {
    let embedded = lockstep::embedded_fingerprint().await;

    let install = Installation::new("loadgen", &loadgen_fleet_config());
    let services: Vec<_> = SERVICES
        .iter()
        .map(|s| install.spawn_service(s, &[]))
        .collect();
    let report = install.dir.join("report.json");
    let loadgen_log = install.dir.join("loadgen.out");
    let status = lockstep::loadgen(&install, &services, &report)
        .stdout(std::fs::File::create(&loadgen_log).expect("log"))
        .stderr(Stdio::inherit())
        .status()
        .expect("run llmopt loadgen");
    let output = read(&loadgen_log);
    assert!(status.success(), "loadgen failed: {status}\n{output}");
    assert!(
        output.contains("INCIDENTS") && output.contains("FINAL ROUTING"),
        "{output}"
    );

    lockstep::assert_report_matches(&report, &embedded);

    // `llmopt probe` is the containers' healthcheck: 0 on a 200, non-zero otherwise.
    let probe = |url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_llmopt"))
            .args(["probe", &url])
            .env_remove("LLMOPT_CONFIG")
            .output()
            .expect("llmopt probe")
            .status
            .success()
    };
    assert!(probe(format!("{}/ready", services[0].url())));
    assert!(probe(format!("{}/health", services[0].url())));
    assert!(
        !probe(format!("{}/nope", services[0].url())),
        "a 404 is unhealthy"
    );
    assert!(
        !probe(format!(
            "http://127.0.0.1:{}/health",
            common::process::free_port()
        )),
        "nothing listening is unhealthy"
    );

    // The aggregator's scrape carries the fleet gauges, and every scrape is lint-clean.
    let aggregator = &services[1];
    let scrape = aggregator.metrics();
    for gauge in [
        "llmopt_route_window_calls{",
        "llmopt_route_window_cost_usd{",
        "llmopt_route_window_latency_p95_seconds{",
        "llmopt_route_window_quality_mean{",
        "llmopt_ready{service=\"aggregator\"} 1",
    ] {
        assert!(scrape.contains(gauge), "{gauge} missing from\n{scrape}");
    }
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    for service in &services {
        let mut lint = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{promtool} (Debian package prometheus, installed by scripts/test.sh): {e}")
            });
        use std::io::Write;
        lint.stdin
            .take()
            .expect("stdin")
            .write_all(service.metrics().as_bytes())
            .expect("feed promtool");
        let out = lint.wait_with_output().expect("promtool");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics on {}: {}{}",
            service.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for service in services {
        service.stop();
    }
}
