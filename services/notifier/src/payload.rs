//! What Alertmanager and webhooks receive for an llmopt alert.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use llmopt_events::{Alert, AlertStatus, Severity};
use serde::Serialize;

use crate::config::NotifierConfig;

/// One alert as Alertmanager's v2 API takes it (`postableAlert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostableAlert {
    /// Identity of the alert in Alertmanager: `alertname`, `severity`, the alert's own labels
    /// (app, route, provider, model, metric, ...) and the external labels.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description` (the evidence), `dedup_key`, `value`, `threshold`.
    pub annotations: BTreeMap<String, String>,
    /// When the condition began (event time).
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// Resolved: when it ended (event time). Firing: the sending time plus the firing TTL.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// Link back to the alert, when a console is configured.
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// Alertmanager's lower-case severities (`critical`, `warning`, `info`).
pub fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// The Alertmanager form of `alert`, sent at `now_ms` (wall clock: only a firing alert's
/// `endsAt` depends on it).
pub fn postable(alert: &Alert, config: &NotifierConfig, now_ms: i64) -> PostableAlert {
    let mut labels = config.external_labels.clone();
    labels.extend(
        alert
            .labels
            .iter()
            .filter(|(k, v)| valid_label_name(k) && !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    labels.insert("alertname".into(), alert.alertname.clone());
    labels.insert("severity".into(), severity_label(alert.severity).into());

    let mut annotations = BTreeMap::new();
    annotations.insert("summary".into(), alert.summary.clone());
    annotations.insert("dedup_key".into(), alert.dedup_key.clone());
    let mut evidence = Vec::new();
    if let Some(value) = alert.value {
        annotations.insert("value".into(), format!("{value}"));
        evidence.push(format!("value {value}"));
    }
    if let Some(threshold) = alert.threshold {
        annotations.insert("threshold".into(), format!("{threshold}"));
        evidence.push(format!("threshold {threshold}"));
    }
    evidence.push(format!("since {}", rfc3339(alert.starts_at)));
    annotations.insert("description".into(), evidence.join(", "));

    let ends_at = match (alert.status, alert.ends_at) {
        (AlertStatus::Resolved, Some(end)) => end,
        (AlertStatus::Resolved, None) => alert.event_time,
        (AlertStatus::Firing, _) => {
            now_ms.saturating_add(i64::try_from(config.firing_ttl_ms).unwrap_or(i64::MAX))
        }
    };
    PostableAlert {
        labels,
        annotations,
        starts_at: rfc3339(alert.starts_at),
        ends_at: rfc3339(ends_at),
        generator_url: config
            .generator_url
            .as_ref()
            .map(|base| format!("{}/alerts/{}", base.trim_end_matches('/'), alert.dedup_key)),
    }
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`; others (and empty values, which mean
/// "no label" to Alertmanager) are left out rather than rejected by Alertmanager.
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: AlertStatus) -> Alert {
        Alert {
            id: "a-1".into(),
            dedup_key: "search/query-rewrite/google/gemini-1.5-flash/HighErrorRate".into(),
            status,
            severity: Severity::Critical,
            alertname: "HighErrorRate".into(),
            summary: "error rate 40% > 5% for 3 windows".into(),
            labels: BTreeMap::from([
                ("app".to_string(), "search".to_string()),
                ("route".to_string(), "query-rewrite".to_string()),
                ("model".to_string(), "gemini-1.5-flash".to_string()),
                ("bad-name".to_string(), "dropped".to_string()),
                ("tenant".to_string(), String::new()),
            ]),
            value: Some(0.4),
            threshold: Some(0.05),
            starts_at: 1_767_229_200_000,
            ends_at: (status == AlertStatus::Resolved).then_some(1_767_231_000_000),
            event_time: 1_767_231_000_000,
        }
    }

    #[test]
    fn a_firing_alert_carries_its_labels_evidence_and_a_ttl_end() {
        let config = NotifierConfig {
            external_labels: BTreeMap::from([("cluster".to_string(), "eu-1".to_string())]),
            generator_url: Some("http://console:8080/".into()),
            ..NotifierConfig::default()
        };
        let now = 1_800_000_000_000;
        let p = postable(&alert(AlertStatus::Firing), &config, now);
        assert_eq!(p.labels["alertname"], "HighErrorRate");
        assert_eq!(p.labels["severity"], "critical");
        assert_eq!(p.labels["app"], "search");
        assert_eq!(p.labels["cluster"], "eu-1");
        assert!(!p.labels.contains_key("bad-name") && !p.labels.contains_key("tenant"));
        assert_eq!(p.annotations["value"], "0.4");
        assert!(p.annotations["description"].contains("threshold 0.05"));
        assert_eq!(p.starts_at, "2026-01-01T01:00:00.000Z");
        assert_eq!(p.ends_at, rfc3339(now + 240_000));
        assert_eq!(
            p.generator_url.as_deref(),
            Some("http://console:8080/alerts/search/query-rewrite/google/gemini-1.5-flash/HighErrorRate")
        );
        let json = serde_json::to_value(&p).unwrap_or_default();
        assert!(json.get("startsAt").is_some() && json.get("generatorURL").is_some());
    }

    #[test]
    fn a_resolved_alert_ends_when_it_resolved() {
        let p = postable(
            &alert(AlertStatus::Resolved),
            &NotifierConfig::default(),
            1_800_000_000_000,
        );
        assert_eq!(p.ends_at, "2026-01-01T01:30:00.000Z");
        assert!(p.generator_url.is_none());
    }
}
