//! The scenario file format: the shipped default, round trips, and what is rejected.

use llmopt_sim::{FleetSpec, GroundTruthKind, IncidentKind, Scenario, SimError};

const DEFAULT_TOML: &str = include_str!("../scenarios/default.toml");

#[test]
fn default_scenario_file_parses_and_equals_the_builtin() -> Result<(), SimError> {
    let parsed = Scenario::from_toml_str(DEFAULT_TOML)?;
    assert_eq!(parsed, Scenario::default());
    parsed.validate(&FleetSpec::default())?;
    Ok(())
}

#[test]
fn scenario_toml_round_trips() -> Result<(), SimError> {
    let s = Scenario::default();
    let text = s.to_toml_string()?;
    assert!(text.contains("kind = \"latency_regression_after_config_change\""));
    assert_eq!(Scenario::from_toml_str(&text)?, s);
    Ok(())
}

#[test]
fn float_times_and_minimal_files_are_handled() -> Result<(), SimError> {
    let minimal = Scenario::from_toml_str("name = \"quiet\"\nduration_s = 60\n")?;
    assert!(minimal.incidents.is_empty());
    let s = Scenario::from_toml_str(
        "name = \"x\"\nduration_s = 60\n[[incidents]]\nname = \"b\"\nkind = \"cost_spike\"\n\
         provider = \"openai\"\nmodel = \"gpt-4o\"\nstart_s = 10\nduration_s = 5\nfactor = 2\n",
    )?;
    assert!(matches!(
        s.incidents[0].kind,
        IncidentKind::CostSpike { factor, .. } if factor == 2.0
    ));
    Ok(())
}

fn with_incident(body: &str) -> String {
    format!("name = \"x\"\nduration_s = 600\n[[incidents]]\nname = \"i\"\n{body}")
}

#[test]
fn malformed_and_inconsistent_scenarios_are_rejected() {
    let fleet = FleetSpec::default();
    let check =
        |body: &str| Scenario::from_toml_str(&with_incident(body)).and_then(|s| s.validate(&fleet));
    assert!(matches!(
        check("kind = \"meteor_strike\"\nstart_s = 1\n"),
        Err(SimError::TomlDe(_))
    ));
    assert!(matches!(
        check("kind = \"quality_drift\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\nstart_s = -5\ndrop_per_hour = 0.1\n"),
        Err(SimError::TomlDe(_))
    ));
    assert!(matches!(
        check("kind = \"provider_error_burst\"\nprovider = \"openai\"\nmodel = \"gpt-9\"\nstart_s = 1\nduration_s = 5\nerror_rate = 0.5\n"),
        Err(SimError::UnknownModel { .. })
    ));
    assert!(matches!(
        check("kind = \"provider_error_burst\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\nstart_s = 1\nduration_s = 5\nerror_rate = 1.5\n"),
        Err(SimError::InvalidValue { .. })
    ));
    assert!(matches!(
        check("kind = \"cost_spike\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\nstart_s = 1\nduration_s = 0\nfactor = 2\n"),
        Err(SimError::InvalidValue { .. })
    ));
    assert!(matches!(
        check(
            "kind = \"self_hosted_too_expensive\"\nmodel = \"gpt-4o\"\nfactor = 2\nstart_s = 1\n"
        ),
        Err(SimError::UnknownModel { .. })
    ));
    assert!(matches!(
        check("kind = \"latency_regression_after_config_change\"\napp = \"checkout\"\nroute = \"answer\"\nat_s = 1\nlatency_factor = 2\n"),
        Err(SimError::UnknownRoute { .. })
    ));
    let twice = format!(
        "{}\n[[incidents]]\nname = \"i\"\nkind = \"quality_drift\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\nstart_s = 1\ndrop_per_hour = 0.1\n",
        with_incident("kind = \"quality_drift\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\nstart_s = 1\ndrop_per_hour = 0.1\n")
    );
    assert!(matches!(
        Scenario::from_toml_str(&twice),
        Err(SimError::Duplicate { .. })
    ));
    assert!(matches!(
        Scenario::from_toml_str("name = \"x\"\nduration_s = 0\n"),
        Err(SimError::InvalidValue { .. })
    ));
}

#[test]
fn model_incidents_name_every_affected_route() -> Result<(), SimError> {
    let s = Scenario::from_toml_str(&with_incident(
        "kind = \"provider_error_burst\"\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\nstart_s = 10\nduration_s = 20\nerror_rate = 0.5\n",
    ))?;
    let truth = s.ground_truth(&FleetSpec::default(), 1_000);
    // Only order-summary routes to gpt-4o-mini initially (its 8 % candidate share).
    assert_eq!(truth.len(), 1);
    assert_eq!(truth[0].kind, GroundTruthKind::ProviderErrorBurst);
    assert_eq!(truth[0].route.as_deref(), Some("order-summary"));
    assert_eq!((truth[0].start_ms, truth[0].end_ms), (11_000, Some(31_000)));

    let unused = Scenario::from_toml_str(&with_incident(
        "kind = \"cost_spike\"\nprovider = \"google\"\nmodel = \"gemini-1.5-pro\"\nstart_s = 10\nduration_s = 20\nfactor = 2\n",
    ))?;
    let truth = unused.ground_truth(&FleetSpec::default(), 0);
    assert_eq!(truth.len(), 1);
    assert_eq!(truth[0].route, None);
    assert_eq!(truth[0].model.as_deref(), Some("gemini-1.5-pro"));
    Ok(())
}
