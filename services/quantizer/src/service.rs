//! The quantizer as a service: quantization jobs in, one artifact event (or one failure event
//! with its reason) out per job id. Job ids already handled — by this process, or by any
//! replica as recorded in the state store — produce nothing.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use burn::tensor::Device;
use llmopt_events::{
    AnyEvent, ArtifactPublished, QuantFailureReason, QuantMethod, QuantizationFailed,
    QuantizationJob,
};
use llmopt_runtime::{Effects, Input, Job, Output, Processor, RuntimeError};
use llmopt_state::StateStore;
use llmopt_transport::LogicalTopic;

use crate::artifact::WrittenArtifact;
use crate::error::QuantError;
use crate::job::{artifact_name, execute, plan_from, JobSpec, QuantizerConfig};
use crate::quantize::Method;
use crate::SERVICE_NAME;

/// State-store set of job ids whose outcome has been published.
pub const HANDLED_JOBS_SET: &str = "quantizer-handled-jobs";
/// How long a handled job id is remembered.
pub const HANDLED_JOBS_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// The quantizer core.
pub struct Quantizer {
    config: QuantizerConfig,
    device: Device,
    handled: HashSet<String>,
}

impl Quantizer {
    /// A quantizer writing to the configured artifact store, computing on `device`.
    pub fn new(config: QuantizerConfig, device: Device) -> Self {
        Self {
            config,
            device,
            handled: HashSet::new(),
        }
    }

    /// Resolves a job's parameters against the configuration.
    pub fn job_spec(&self, job: &QuantizationJob) -> Result<JobSpec, QuantError> {
        let method = match job.method {
            QuantMethod::Rtn => Method::Rtn,
            QuantMethod::Gptq => Method::Gptq,
        };
        let plan = plan_from(
            method,
            job.bits,
            job.group_size,
            job.symmetric,
            job.act_order,
            self.config.embedding_bits,
            self.config.clip_search,
        )?;
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                self.config.model_root.join(p)
            }
        };
        let calibration = match (&job.calibration_set, &self.config.calibration_set) {
            (Some(path), _) => resolve(path),
            (None, Some(path)) => path.clone(),
            (None, None) => return Err(QuantError::bad(
                "the job names no calibration_set and quantizer.calibration_set is not configured",
            )),
        };
        Ok(JobSpec {
            job_id: Some(job.job_id.clone()),
            model_name: job.model_name.clone(),
            model_dir: resolve(&job.model_location),
            artifact_name: artifact_name(&job.model_name, &plan, Some(&job.job_id)),
            plan,
            evaluation: self
                .config
                .evaluation_set
                .clone()
                .unwrap_or_else(|| calibration.clone()),
            calibration,
            store: self.config.artifact_store.clone(),
        })
    }

    /// Runs `job` and returns its outcome event: the artifact, or the failure with its reason.
    fn outcome(&self, job: &QuantizationJob) -> Output {
        match self.run(job) {
            Ok(artifact) => {
                tracing::info!(job_id = %job.job_id, location = %artifact.dir.display(), "artifact published");
                artifact_event(job, &artifact)
            }
            Err(error) => {
                tracing::warn!(job_id = %job.job_id, %error, "quantization job failed");
                failure_event(job, &error)
            }
        }
    }

    fn run(&self, job: &QuantizationJob) -> Result<WrittenArtifact, QuantError> {
        let spec = self.job_spec(job)?;
        tracing::info!(job_id = %job.job_id, model = %spec.model_dir.display(), plan = %spec.plan.tag(), "quantizing");
        execute(&spec, self.device.clone(), &mut |done| {
            tracing::info!(job_id = %job.job_id, tensor = %done.name, done = done.done, total = done.total, "quantized tensor");
        })
    }
}

impl Processor for Quantizer {
    fn name(&self) -> &'static str {
        SERVICE_NAME
    }

    fn inputs(&self) -> Vec<LogicalTopic> {
        vec![LogicalTopic::QuantizationJobs]
    }

    /// A job runs for minutes: off the consumer's thread, so the worker stays in its group.
    /// Duplicates (and other events) go to [`Processor::process`], which ignores them.
    fn job(&mut self, input: &Input) -> Option<Job> {
        let AnyEvent::QuantizationJob(job) = &input.event else {
            return None;
        };
        if !self.handled.insert(job.job_id.clone()) {
            tracing::info!(job_id = %job.job_id, "duplicate quantization job ignored");
            return None;
        }
        let worker = Quantizer::new(self.config.clone(), self.device.clone());
        let job = job.clone();
        Some(Box::new(move || vec![worker.outcome(&job)]))
    }

    /// In line only for what [`Processor::job`] declined: duplicates and other events.
    fn process(&mut self, input: &Input) -> Vec<Output> {
        let AnyEvent::QuantizationJob(job) = &input.event else {
            return Vec::new();
        };
        if !self.handled.insert(job.job_id.clone()) {
            return Vec::new();
        }
        vec![self.outcome(job)]
    }
}

/// The artifact event of a job.
pub fn artifact_event(job: &QuantizationJob, artifact: &WrittenArtifact) -> Output {
    let report = &artifact.manifest.report;
    let event = ArtifactPublished {
        id: format!("artifact/{}", job.job_id),
        job_id: job.job_id.clone(),
        event_time: job.event_time,
        model_name: job.model_name.clone(),
        location: artifact.dir.display().to_string(),
        manifest_sha256: artifact.manifest_sha256.clone(),
        method: job.method,
        bits: job.bits,
        group_size: job.group_size,
        bytes: artifact.total_bytes as i64,
        fp32_bytes: report.sizes.fp32_bytes as i64,
        compression_ratio: report.sizes.compression_ratio,
        mean_cosine: report.quality.mean_cosine,
        min_cosine: report.quality.min_cosine,
        spearman: report.quality.spearman,
        mean_layer_error: report.mean_layer_error,
    };
    Output {
        topic: LogicalTopic::Artifacts,
        id: event.id.clone(),
        key: job.model_name.clone(),
        time_ms: job.event_time,
        event: AnyEvent::ArtifactPublished(event),
    }
}

/// The failure event of a job.
pub fn failure_event(job: &QuantizationJob, error: &QuantError) -> Output {
    let event = QuantizationFailed {
        id: format!("quantization-failed/{}", job.job_id),
        job_id: job.job_id.clone(),
        event_time: job.event_time,
        model_name: job.model_name.clone(),
        model_location: job.model_location.clone(),
        reason: failure_reason(error),
        message: error.to_string(),
        method: Some(job.method),
        bits: Some(job.bits),
        decision_id: job.decision_id.clone(),
    };
    Output {
        topic: LogicalTopic::Artifacts,
        id: event.id.clone(),
        key: job.model_name.clone(),
        time_ms: job.event_time,
        event: AnyEvent::QuantizationFailed(event),
    }
}

/// The failure category of an error.
pub fn failure_reason(error: &QuantError) -> QuantFailureReason {
    match error {
        QuantError::ModelNotFound { .. } => QuantFailureReason::ModelNotFound,
        QuantError::UnsupportedArchitecture { .. } => QuantFailureReason::UnsupportedArchitecture,
        QuantError::BadParameters { .. } => QuantFailureReason::BadParameters,
        QuantError::OutOfDisk { .. } => QuantFailureReason::OutOfDisk,
        QuantError::Io { .. } | QuantError::InvalidArtifact { .. } => QuantFailureReason::IoError,
        QuantError::Numerical { .. } => QuantFailureReason::Internal,
    }
}

/// Shares handled job ids between replicas and restarts through the state store: a job whose
/// outcome was published is not run again.
pub struct HandledJobs {
    store: Arc<dyn StateStore>,
}

impl HandledJobs {
    /// Job bookkeeping in `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }
}

fn job_id_of(event: &AnyEvent) -> Option<&str> {
    match event {
        AnyEvent::QuantizationJob(j) => Some(&j.job_id),
        AnyEvent::ArtifactPublished(a) => Some(&a.job_id),
        AnyEvent::QuantizationFailed(f) => Some(&f.job_id),
        _ => None,
    }
}

#[async_trait]
impl Effects for HandledJobs {
    async fn admit(&mut self, input: &Input) -> Result<bool, RuntimeError> {
        match job_id_of(&input.event) {
            Some(id) => Ok(!self.store.set_contains(HANDLED_JOBS_SET, id).await?),
            None => Ok(true),
        }
    }

    async fn after_publish(
        &mut self,
        _input: Option<&Input>,
        outputs: &[Output],
    ) -> Result<(), RuntimeError> {
        for output in outputs {
            if let Some(id) = job_id_of(&output.event) {
                self.store
                    .set_add(HANDLED_JOBS_SET, id, HANDLED_JOBS_TTL)
                    .await?;
            }
        }
        Ok(())
    }
}
