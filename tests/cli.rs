//! The `llmopt` binary as users run it.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

fn llmopt(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmopt"));
    cmd.args(args);
    for var in [
        "LLMOPT_TRANSPORT__KIND",
        "LLMOPT_TRANSPORT__TOPIC_PREFIX",
        "LLMOPT_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run llmopt")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "llmopt failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["schemas", "--help"],
        vec!["schemas", "list", "--help"],
        vec!["schemas", "show", "--help"],
        vec!["schemas", "check", "--help"],
        vec!["topics", "--help"],
        vec!["topics", "list", "--help"],
        vec!["topics", "ensure", "--help"],
        vec!["config", "--help"],
        vec!["config", "show", "--help"],
        vec!["run", "--help"],
        vec!["decisions", "--help"],
        vec!["decisions", "approve", "--help"],
        vec!["actuator", "rebuild", "--help"],
    ] {
        let out = stdout(&llmopt(&args, &[]));
        assert!(out.contains("Usage:"), "{args:?} prints usage");
    }
}

#[test]
fn schemas_check_accepts_additions_with_defaults_and_rejects_breaking_changes() {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/llmopt-events/tests/fixtures"
    );
    let current = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/llm_call.avsc");
    let old = format!("{fixtures}/llm_call_v0.avsc");
    let ok = llmopt(&["schemas", "check", "--old", &old, "--new", current], &[]);
    assert!(stdout(&ok).contains("compatible"));

    let breaking = format!("{fixtures}/llm_call_breaking_required_field.avsc");
    let bad = llmopt(
        &["schemas", "check", "--old", current, "--new", &breaking],
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("incompatible") && stderr.contains("region"),
        "{stderr}"
    );
}

#[test]
fn schemas_list_and_show() {
    let list = stdout(&llmopt(&["schemas", "list"], &[]));
    let contracts = llmopt_events::Contract::ALL;
    assert_eq!(
        list.lines().count(),
        1 + contracts.len(),
        "header + {} contracts:\n{list}",
        contracts.len()
    );
    for contract in contracts {
        assert!(list.contains(contract.file_name()), "{contract:?} listed");
    }
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
        .expect("schemas/")
        .count();
    assert_eq!(files, contracts.len(), "every schemas/*.avsc is a contract");
    let show = stdout(&llmopt(&["schemas", "show", "llm_call"], &[]));
    assert!(show.contains("\"name\": \"LlmCall\""));
    let missing = llmopt(&["schemas", "show", "nope"], &[]);
    assert!(!missing.status.success());
}

#[test]
fn config_file_is_overridden_by_environment() {
    let dir = std::env::temp_dir().join(common::unique("llmopt-config"));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("llmopt.toml");
    std::fs::write(
        &file,
        "[transport]\ntopic_prefix = \"from-file.\"\npartitions = 12\n[transport.kafka]\nsasl_password = \"hunter2\"\n",
    )
    .expect("write config");
    let path = file.to_str().expect("utf-8 path");

    let from_file = stdout(&llmopt(&["--config", path, "config", "show"], &[]));
    assert!(from_file.contains("topic_prefix = \"from-file.\""));
    assert!(from_file.contains("partitions = 12"));
    assert!(!from_file.contains("hunter2"), "password redacted");

    let overridden = stdout(&llmopt(
        &["--config", path, "topics", "list"],
        &[("LLMOPT_TRANSPORT__TOPIC_PREFIX", "from-env.")],
    ));
    assert!(
        overridden.lines().any(|l| l == "from-env.telemetry.raw"),
        "{overridden}"
    );
    assert!(overridden.lines().any(|l| l == "from-env.alerts"));

    // Secrets from the environment are strings whatever they look like (a Kubernetes Secret
    // holding `123456` or `[x` must not become a number or a parse error), and stay redacted.
    let secrets = llmopt(
        &["--config", path, "config", "show"],
        &[
            ("LLMOPT_TRANSPORT__KAFKA__SASL_PASSWORD", "123456"),
            ("LLMOPT_TRANSPORT__KAFKA__SASL_USERNAME", "007"),
            ("LLMOPT_STATE__REDIS_PASSWORD", "[not-toml"),
        ],
    );
    let shown = stdout(&secrets);
    assert!(shown.contains("sasl_username = \"007\""), "{shown}");
    assert!(
        !shown.contains("123456") && !shown.contains("[not-toml"),
        "{shown}"
    );
    assert!(shown.contains("redis_password = \"***\""), "{shown}");
}

#[test]
fn demo_runs_without_servers_and_is_reproducible() {
    let run = |seed: &str| {
        stdout(&llmopt(
            &["demo", "--duration", "1800", "--seed", seed],
            &[],
        ))
    };
    let first = run("7");
    for section in [
        "ALERT FIRING",
        "DECISION",
        "INCIDENTS",
        "FALSE ALERTS",
        "FINAL ROUTING",
        "events/s",
    ] {
        assert!(first.contains(section), "{section} in:\n{first}");
    }
    let without_timing = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("events/s"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_timing(&first),
        without_timing(&run("7")),
        "same seed, same output"
    );
    assert_ne!(
        without_timing(&first),
        without_timing(&run("8")),
        "the seed matters"
    );
}

#[test]
fn topics_ensure_creates_missing_topics_on_the_broker() {
    let prefix = format!("{}.", common::unique("cli"));
    let bootstrap = common::kafka_bootstrap();
    let out = stdout(&llmopt(
        &["topics", "ensure"],
        &[
            ("LLMOPT_TRANSPORT__KIND", "kafka"),
            ("LLMOPT_TRANSPORT__TOPIC_PREFIX", &prefix),
            ("LLMOPT_TRANSPORT__PARTITIONS", "3"),
            ("LLMOPT_KAFKA_BOOTSTRAP", &bootstrap),
        ],
    ));
    assert_eq!(out.lines().count(), 11, "{out}");
    // Running it again is harmless: existing topics are kept.
    stdout(&llmopt(
        &["topics", "ensure"],
        &[
            ("LLMOPT_TRANSPORT__KIND", "kafka"),
            ("LLMOPT_TRANSPORT__TOPIC_PREFIX", &prefix),
            ("LLMOPT_KAFKA_BOOTSTRAP", &bootstrap),
        ],
    ));
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("metadata client");
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    for logical in ["telemetry.raw", "alerts", "deadletter", "config.changes"] {
        let name = format!("{prefix}{logical}");
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("{name} exists on the broker"));
        assert_eq!(
            topic.partitions().len(),
            3,
            "{name} has the configured partitions"
        );
    }
}

#[test]
fn committed_fleet_config_is_what_loadgen_prints() {
    // docker-compose mounts deploy/config/fleet.toml into every service: it must be exactly the
    // policy `llmopt loadgen` drives, or the stack's decisions would differ from the demo's.
    let printed = stdout(&llmopt(&["loadgen", "--print-config"], &[]));
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/fleet.toml"),
    )
    .expect("deploy/config/fleet.toml");
    assert_eq!(
        printed, committed,
        "regenerate with: llmopt loadgen --print-config > deploy/config/fleet.toml"
    );
}

#[test]
fn loadgen_refuses_the_embedded_transport_with_a_clear_message() {
    let out = llmopt(&["loadgen", "--duration", "60"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("transport.kind = \"kafka\""), "{stderr}");
}
