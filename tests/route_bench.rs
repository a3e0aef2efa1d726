//! The router against its baselines, through the whole loop in one process (`llmopt bench
//! route --tune`, shortened), with each route's `max_tokens` tuned too: floors the suite holds
//! so the optimizer does not regress. The closing note's figures come from the 24-hour runs
//! (`llmopt bench route --hours 24 [--tune]`).

use llmopt::config::AppConfig;
use llmopt::route_bench::{self, RouteBenchOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_and_tuner_halve_cost_against_the_most_capable_models_at_95_percent_of_their_quality(
) {
    let options = RouteBenchOptions {
        hours: 8.0,
        seed: 3,
        share_of_best: 0.95,
        rate_scale: 1.0,
        tune: true,
        trace: None,
    };
    let report = route_bench::run(&AppConfig::default(), &options, &mut |_| {})
        .await
        .expect("bench");
    print!("{}", route_bench::render(&report));
    let saved = 1.0 - report.cost_per_call / report.capable_cost_per_call;
    assert!(
        saved >= 0.5,
        "fleet cost per call only {:.1}% less",
        saved * 100.0
    );
    let quality = report.quality / report.capable_quality;
    assert!(
        quality >= 0.95,
        "fleet quality {:.1}% of the most capable's",
        quality * 100.0
    );
    for r in &report.routes {
        // Two routes start on models under their floor; the router lifts them within the hour
        // and no route falls under its floor for more than 3 windows after that.
        let met = r.minutes_to_floor.expect("the route met its floor");
        assert!(met <= 60, "{}: floor met only after {met} minutes", r.route);
        assert!(
            r.longest_below_floor_after_met <= 3,
            "{}: {} windows under the floor",
            r.route,
            r.longest_below_floor_after_met
        );
        assert!(
            r.cost_per_call < r.capable_cost_per_call,
            "{}: not cheaper than its most capable model",
            r.route
        );
    }
    assert_eq!(report.router_rollbacks, 0, "false rollbacks on a quiet run");
    assert!(report.router_steps.get("exploit").copied().unwrap_or(0) > 0);
    assert!(report.router_steps.get("explore").copied().unwrap_or(0) > 0);
    // The tuner tried arms; only its trials were rolled back, nothing else.
    assert!(report.tuning_steps.get("trial").copied().unwrap_or(0) > 0);
    assert_eq!(report.rollbacks, report.tuning_rollbacks);
}
