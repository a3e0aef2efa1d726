//! The parameter tuner, closed loop with the actuator core: one route, three `max_tokens` arms;
//! the smallest cuts answers short and falls under the floor.

use super::*;
use crate::strategies::tuning::{PARAM_PHASE, PHASE_SWITCH, PHASE_TRIAL};

fn arm(max_tokens: &str) -> BTreeMap<String, String> {
    [("max_tokens".to_string(), max_tokens.to_string())].into()
}

fn tuned(mode: Mode) -> Sim {
    let mut cfg = base(mode);
    cfg.routes[0].parameter_arms = vec![arm("1024"), arm("512"), arm("256")];
    cfg.routes[0].quality_floor = Some(0.80);
    start(cfg, &[("max_tokens", "1024"), ("temperature", "0.2")])
}

/// A core with `cfg` whose route `chat` starts on gpt with `params`.
fn start(cfg: DecisionConfig, params: &[(&str, &str)]) -> Sim {
    let mut sim = Sim::new(cfg);
    let initial = ConfigChange {
        id: "app/chat/v1".into(),
        event_time: 0,
        app: "app".into(),
        route: "chat".into(),
        version: 1,
        previous_version: None,
        kind: ChangeKind::Initial,
        decision_id: None,
        targets: vec![RouteTarget {
            provider: "openai".into(),
            model: "gpt".into(),
            weight: 1.0,
        }],
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    sim.publish(LogicalTopic::ConfigChanges, AnyEvent::ConfigChange(initial));
    sim
}

fn live_max_tokens(sim: &Sim) -> String {
    sim.actuator
        .config("app", "chat")
        .and_then(|c| c.params.get("max_tokens").cloned())
        .unwrap_or_default()
}

/// 512 is as good as 1024 and cheaper; 256 truncates answers.
fn by_params(max_tokens: &str) -> Behaviour {
    match max_tokens {
        "1024" => Behaviour {
            quality: Some(0.85),
            cost_per_call: 0.010,
            scored: 0.4,
            ..HEALTHY
        },
        "512" => Behaviour {
            quality: Some(0.848),
            cost_per_call: 0.008,
            scored: 0.4,
            ..HEALTHY
        },
        _ => Behaviour {
            quality: Some(0.70),
            cost_per_call: 0.006,
            scored: 0.4,
            ..HEALTHY
        },
    }
}

fn run(sim: &mut Sim, minutes: i64) -> Vec<(i64, String)> {
    run_with(sim, minutes, by_params)
}

/// Runs `minutes` with each minute's behaviour given by the live `max_tokens`; returns what
/// was live at each minute.
fn run_with(
    sim: &mut Sim,
    minutes: i64,
    behaviour: impl Fn(&str) -> Behaviour + Copy,
) -> Vec<(i64, String)> {
    let mut seen = Vec::new();
    for _ in 0..minutes {
        let mt = live_max_tokens(sim);
        seen.push((sim.minute, mt.clone()));
        sim.tick(&["chat"], move |_, _, _| behaviour(&mt));
    }
    seen
}

/// Route `chat` tuned over max_tokens 1024 and 512 with a quality floor, starting on 1024.
fn two_arms(floor: f64) -> Sim {
    let mut cfg = base(Mode::Auto);
    cfg.routes[0].parameter_arms = vec![arm("1024"), arm("512")];
    cfg.routes[0].quality_floor = Some(floor);
    start(cfg, &[("max_tokens", "1024")])
}

/// 1024 as in [`by_params`]; 512 scores `quality` at $0.008 a call.
fn with_512_at(quality: f64) -> impl Fn(&str) -> Behaviour + Copy {
    move |mt: &str| match mt {
        "1024" => by_params("1024"),
        _ => Behaviour {
            quality: Some(quality),
            cost_per_call: 0.008,
            scored: 0.4,
            ..HEALTHY
        },
    }
}

#[test]
fn the_tuner_keeps_the_cheapest_arm_that_holds_the_floor_and_rolls_back_one_that_does_not() {
    let mut sim = tuned(Mode::Auto);
    let seen = run(&mut sim, 90);
    assert_eq!(live_max_tokens(&sim), "512", "{seen:?}");
    let decisions = tuner_decisions(&sim);
    let trials: Vec<&DecisionEvent> = decisions
        .iter()
        .filter(|d| d.params.get(PARAM_PHASE).map(String::as_str) == Some(PHASE_TRIAL))
        .filter(|d| d.state == DecisionState::Approved)
        .collect();
    assert_eq!(trials.len(), 2, "both other arms tried once");
    let rolled_back: Vec<&DecisionEvent> = decisions
        .iter()
        .filter(|d| d.state == DecisionState::RolledBack)
        .collect();
    assert_eq!(rolled_back.len(), 1, "the truncating arm is rolled back");
    assert!(
        rolled_back[0]
            .reason
            .contains("not clearly above the floor"),
        "{}",
        rolled_back[0].reason
    );
    // Under the floor for at most the verification windows and the rollback's.
    let on_256 = seen.iter().filter(|(_, mt)| mt == "256").count();
    assert!(on_256 <= 5, "{on_256} windows on the truncating arm");
    // Every decision is in the routing contract; params other than the arm's are kept.
    for d in &decisions {
        llmopt_routing::parse_action(d).expect("routing contract");
    }
    let params = &sim.actuator.config("app", "chat").unwrap().params;
    assert_eq!(params.get("temperature").map(String::as_str), Some("0.2"));
    // Settled: nothing more to try, no switch away from the best arm.
    let before = decisions.len();
    run(&mut sim, 30);
    assert_eq!(sim.of_strategy(Strategy::ParameterTuning).len(), before);
    assert!(decisions
        .iter()
        .all(
            |d| d.params.get(PARAM_PHASE).map(String::as_str) != Some(PHASE_SWITCH)
                || d.params.get("set.max_tokens").map(String::as_str) == Some("512")
        ));
}

#[test]
fn the_tuner_switches_back_when_a_trial_holds_the_floor_but_is_worse() {
    let mut sim = two_arms(0.70);
    // 512 holds the floor (0.78 > 0.70) but is far worse than 1024: not worth its saving.
    run_with(&mut sim, 60, with_512_at(0.78));
    assert_eq!(live_max_tokens(&sim), "1024");
    let switch = sim
        .of_strategy(Strategy::ParameterTuning)
        .into_iter()
        .find(|(_, d)| d.params.get(PARAM_PHASE).map(String::as_str) == Some(PHASE_SWITCH))
        .map(|(_, d)| d.clone())
        .expect("switched back");
    assert_eq!(switch.evidence.test, "thompson_sampling");
}

/// Every tuner decision event published, in order.
fn tuner_decisions(sim: &Sim) -> Vec<DecisionEvent> {
    sim.of_strategy(Strategy::ParameterTuning)
        .into_iter()
        .map(|(_, d)| d.clone())
        .collect()
}

/// Longest run of consecutive minutes on `max_tokens`.
fn longest_on(seen: &[(i64, String)], max_tokens: &str) -> usize {
    let (mut run, mut longest) = (0, 0);
    for (_, mt) in seen {
        run = if mt == max_tokens { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

#[test]
fn a_trial_not_clearly_above_the_floor_is_given_up_within_two_windows_and_retried_ever_later() {
    let mut sim = two_arms(0.80);
    let retry = sim.decision.config.tuning.retry_after_ms;
    // 512 sits 0.005 above the floor: a few windows cannot show it holds the floor (nor that
    // it misses it), and a trial is an experiment the route does not need.
    let seen = run_with(&mut sim, 240, with_512_at(0.805));
    assert_eq!(live_max_tokens(&sim), "1024");
    let decisions = tuner_decisions(&sim);
    let given_up: Vec<&DecisionEvent> = decisions
        .iter()
        .filter(|d| d.state == DecisionState::RolledBack)
        .collect();
    assert!(!given_up.is_empty(), "the trial was given up");
    assert!(
        given_up[0].reason.contains("not clearly above the floor"),
        "{}",
        given_up[0].reason
    );
    assert_eq!(given_up[0].evidence.test, "mean_below_floor");
    // No run of more than 4 windows on the trial arm: the change's own window (left out of the
    // judgement), the 2 judged, and the one the rollback lands in.
    let longest = longest_on(&seen, "512");
    assert!(
        longest <= 4,
        "{longest} consecutive windows on the trial arm"
    );
    // Retried only after the wait, doubled each time.
    let trials: Vec<i64> = decisions
        .iter()
        .filter(|d| d.params.get(PARAM_PHASE).map(String::as_str) == Some(PHASE_TRIAL))
        .filter(|d| d.state == DecisionState::Approved)
        .map(|d| d.event_time)
        .collect();
    let ends: Vec<i64> = given_up.iter().map(|d| d.event_time).collect();
    for (i, end) in ends.iter().enumerate() {
        if let Some(next) = trials.iter().find(|t| *t > end) {
            let wait = retry * (1 << i);
            assert!(
                next - end >= wait,
                "trial {} retried {} min after being given up (wait {} min)",
                i + 2,
                (next - end) / MINUTE,
                wait / MINUTE
            );
        }
    }
    assert!(trials.len() <= 4, "{} trials in 4 hours", trials.len());
}

#[test]
fn trials_wait_until_the_routes_models_have_settled() {
    let mut sim = tuned(Mode::Auto);
    let settle = i64::from(sim.decision.config.tuning.settle_windows);
    run(&mut sim, 60);
    let first_trial = sim
        .of_strategy(Strategy::ParameterTuning)
        .into_iter()
        .map(|(_, d)| d.event_time)
        .min()
        .expect("a trial");
    assert!(
        first_trial >= settle * MINUTE,
        "first trial at minute {} before the route settled ({settle} windows)",
        first_trial / MINUTE
    );
}
