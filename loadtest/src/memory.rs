//! Memory per active key-window: the aggregator core in this process, fed `calls_per_series`
//! calls for each of N series (distinct app/route/provider/model) within one minute of event
//! time, so every series holds its open tumbling window and its five open hopping windows; the
//! resident set before and after, divided by the key-windows held. Realistic calls: latencies
//! and TTFTs spread like an LLM's (a few hundred ms to seconds), tenants, errors.

use llmopt_aggregator::{Aggregator, AggregatorConfig};
use llmopt_events::{samples, AnyEvent};
use llmopt_runtime::{Input, Processor};
use llmopt_transport::LogicalTopic;

/// Resident set of this process, in bytes (Linux `/proc/self/statm`).
fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no resident field in /proc/self/statm"))?
        .parse()?;
    Ok(pages * 4096)
}

/// Feeds `series` series and prints RSS per key-window.
fn measure(series: u64, calls_per_series: u64) -> anyhow::Result<()> {
    let config = AggregatorConfig::default();
    let hopping_per_call = config
        .hopping
        .as_ref()
        .map_or(0, |h| (h.size_ms / h.hop_ms) as u64);
    let before = rss_bytes()?;
    let mut core = Aggregator::new(config)?;
    let start = 1_767_225_600_000_i64;
    let mut n = 0u64;
    for round in 0..calls_per_series {
        for s in 0..series {
            let mut call = samples::llm_call(n);
            call.app = format!("app-{}", s / 1000);
            call.route = format!("route-{}", s % 1000);
            // Spread over 50 s of one minute, all series in step: no window closes.
            call.event_time = start + (round * 50_000 / calls_per_series.max(1)) as i64;
            n += 1;
            let input = Input {
                topic: LogicalTopic::Telemetry,
                partition: 0,
                offset: n as i64,
                id: format!("call-{n}"),
                source: "/apps/memory".into(),
                time_ms: Some(call.event_time),
                event: AnyEvent::LlmCall(call),
            };
            let _ = core.process(&input);
        }
    }
    let after = rss_bytes()?;
    let key_windows = series * (1 + hopping_per_call);
    let grown = after.saturating_sub(before);
    println!(
        "{series:>7} series x {calls_per_series} calls, {key_windows:>7} key-windows open: \
         RSS +{:.1} MiB, {:.0} bytes per key-window (calls' dedup ids included)",
        grown as f64 / (1024.0 * 1024.0),
        grown as f64 / key_windows as f64
    );
    drop(core);
    Ok(())
}

/// Runs it for each series count.
pub fn run(series: &[u64], calls_per_series: u64) -> anyhow::Result<()> {
    for &n in series {
        measure(n, calls_per_series)?;
    }
    Ok(())
}
