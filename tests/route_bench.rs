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
        incidents: Vec::new(),
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

/// A quality regression of the model the router chose, through the whole loop: at minute 150
/// gpt-4o-mini (the router's choice on several routes by then) loses 0.1 of quality per minute.
/// Every route it carried has its traffic taken off within 3 windows of the route's expected
/// quality falling under its floor, and nothing else is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quality_regression_of_the_routers_choice_is_taken_off_within_three_windows() {
    const AT_MIN: i64 = 150;
    const MODEL: &str = "gpt-4o-mini";
    let incidents: Vec<llmopt_sim::Incident> = vec![toml::from_str(&format!(
        r#"
name = "mini-regression"
kind = "quality_drift"
provider = "openai"
model = "{MODEL}"
start_s = {}
drop_per_hour = 6.0
"#,
        AT_MIN * 60
    ))
    .expect("incident")];
    let options = RouteBenchOptions {
        hours: 3.5,
        seed: 1,
        share_of_best: 0.95,
        rate_scale: 1.0,
        tune: false,
        trace: None,
        incidents,
    };
    let (report, result) =
        route_bench::run_with_result(&AppConfig::default(), &options, &mut |_| {})
            .await
            .expect("bench");
    let minute = |t: i64| (t - llmopt::demo::SIM_START_MS) / 60_000;
    let weight_at = |app: &str, route: &str, at_min: i64| -> f64 {
        result
            .record
            .config_changes
            .iter()
            .filter(|c| c.app == app && c.route == route && minute(c.event_time) <= at_min)
            .max_by_key(|c| c.version)
            .map(|c| {
                c.targets
                    .iter()
                    .filter(|t| t.model == MODEL)
                    .map(|t| t.weight)
                    .sum()
            })
            .unwrap_or(0.0)
    };
    let mut checked = 0;
    for l in &result.ledgers {
        let share = weight_at(&l.app, &l.route, AT_MIN);
        if share < 0.5 {
            continue;
        }
        let name = format!("{}/{}", l.app, l.route);
        let floor = report
            .routes
            .iter()
            .find(|r| r.route == name)
            .and_then(|r| r.quality_floor)
            .expect("floor");
        let under = l
            .minutes
            .iter()
            .find(|(m, (calls, q))| **m >= AT_MIN && *calls > 0 && q / (*calls as f64) < floor)
            .map(|(m, _)| *m)
            .expect("the regression took the route under its floor");
        let off = result
            .record
            .config_changes
            .iter()
            .filter(|c| c.app == l.app && c.route == l.route && minute(c.event_time) >= AT_MIN)
            .filter(|c| {
                c.targets
                    .iter()
                    .filter(|t| t.model == MODEL)
                    .map(|t| t.weight)
                    .sum::<f64>()
                    < share - 0.1
            })
            .map(|c| minute(c.event_time))
            .min()
            .expect("traffic taken off the regressed model");
        eprintln!(
            "{name}: {:.0}% on {MODEL}; under its floor from minute {under}, traffic taken off at \
             minute {off}",
            share * 100.0
        );
        assert!(
            off - under <= 3,
            "{name}: taken off {} windows after falling under its floor",
            off - under
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "the router had chosen {MODEL} on {checked} routes"
    );
    assert_eq!(report.router_rollbacks, 0, "no router step rolled back");
}
