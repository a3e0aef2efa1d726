//! The `detector` service: Streaming anomaly detection and SLO rules on window metrics; publishes anomalies and operator alerts.
//!
//! The service's deterministic core and its runner arrive with the closed-loop issues; this crate
//! fixes its place in the workspace and the name it is known by on the bus (client ids, consumer
//! groups, CloudEvent sources).

/// Name used for this service's Kafka client id, consumer group and CloudEvents `source`, so
/// that operators can tell which service wrote or read a record.
pub const SERVICE_NAME: &str = "detector";

#[cfg(test)]
mod tests {
    #[test]
    fn service_name_is_a_valid_consumer_group_suffix() {
        assert!(super::SERVICE_NAME
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}
