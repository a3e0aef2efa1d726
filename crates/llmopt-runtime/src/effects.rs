use async_trait::async_trait;

use crate::{Input, Output, RuntimeError};

/// Side effects of a service's shell that cannot live in its deterministic core: consulting or
/// writing the state store. Ingest deduplicates through it; the actuator writes the live routing
/// config after its config changes are acknowledged.
#[async_trait]
pub trait Effects: Send {
    /// Whether to process `input` at all (false: drop it as a duplicate, counted).
    async fn admit(&mut self, _input: &Input) -> Result<bool, RuntimeError> {
        Ok(true)
    }

    /// Runs once the outputs of an input are acknowledged by the transport, before the input
    /// is acked: a crash before this point redelivers the input with nothing recorded (its
    /// outputs are published again, with the same ids), a crash after it finds the record.
    /// `input` is the admitted input (`None` for dead letters and outputs of partition reports).
    async fn after_publish(
        &mut self,
        _input: Option<&Input>,
        _outputs: &[Output],
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// No side effects.
pub struct NoEffects;

impl Effects for NoEffects {}
