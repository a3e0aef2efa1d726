use async_trait::async_trait;

use llmopt_transport::InboundMessage;

use crate::{Input, Output, RuntimeError};

/// Side effects of a service's shell that cannot live in its deterministic core: consulting or
/// writing the state store. Ingest deduplicates through it; the actuator writes the live routing
/// config after its config changes are acknowledged.
#[async_trait]
pub trait Effects: Send {
    /// The records the runtime is about to handle, in order: it reads what is already waiting
    /// behind a polled record (up to a limit, without waiting) before handling the first. An
    /// effect that asks a remote store about every input asks about the whole batch here, in one
    /// round trip, and answers [`Effects::admit`] from what it learnt. A transient error is
    /// waited out and retried like one of `admit`; any other costs nothing but speed
    /// (admission then asks record by record).
    async fn prefetch(&mut self, _batch: &[InboundMessage]) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Whether to process `input` at all (false: drop it as a duplicate, counted).
    async fn admit(&mut self, _input: &Input) -> Result<bool, RuntimeError> {
        Ok(true)
    }

    /// Runs once the outputs of an input are acknowledged by the transport, before the input
    /// is acked: a crash before this point redelivers the input with nothing recorded (its
    /// outputs are published again, with the same ids), a crash after the next
    /// [`Effects::flush`] finds the record. `input` is the admitted input (`None` for dead
    /// letters and outputs of partition reports).
    async fn after_publish(
        &mut self,
        _input: Option<&Input>,
        _outputs: &[Output],
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Makes durable what [`Effects::after_publish`] recorded. The runtime calls it before it
    /// commits offsets or saves a checkpoint, so an effect may buffer its writes between
    /// commits (one round trip per commit instead of one per input) and stay at-least-once: a
    /// crash before the flush redelivers every input whose record was only buffered.
    async fn flush(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// No side effects.
pub struct NoEffects;

impl Effects for NoEffects {}
