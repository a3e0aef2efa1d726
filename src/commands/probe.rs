//! `llmopt probe URL`: a container healthcheck without a shell or curl in the image.

use std::time::Duration;

use clap::Args;

/// `llmopt probe` options.
#[derive(Args)]
pub struct ProbeArgs {
    /// The endpoint, e.g. `http://127.0.0.1:9464/ready`.
    #[arg(default_value = "http://127.0.0.1:9464/health")]
    url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let (status, _) =
        llmopt::loadgen::http_get(&args.url, Duration::from_secs(args.timeout)).await?;
    anyhow::ensure!(status == 200, "{} answered {status}", args.url);
    Ok(())
}
