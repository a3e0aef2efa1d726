//! The simulator: turns a fleet, a scenario and the live routing config into telemetry.
//!
//! It is a discrete-event generator driven by the caller's clock: [`Simulator::advance`]
//! produces every event with an event time in `[now, until)` and moves `now` to `until`. No
//! wall clock is read anywhere; randomness comes from ChaCha8 streams seeded from the seed,
//! one pair per route (arrivals and call content), so the same seed, the same `advance`
//! boundaries and the same routing answers give the same events, and one route's traffic does
//! not shift when another route's routing changes.
//!
//! The loop is closed through the `routing` callback: at the start of every `advance` each
//! route asks what its live routing config says (as an app polling its config would), and
//! calls follow those targets and carry that version.

use std::collections::BTreeMap;

use llmopt_events::{CallStatus, ChangeKind, ConfigChange, LlmCall, RouteTarget};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::catalogue::{
    ModelProfile, ERROR_MODEL_NOT_FOUND, ERROR_RATE_LIMITED, ERROR_SERVER, ERROR_TIMEOUT,
};
use crate::error::SimError;
use crate::fleet::{FleetSpec, RouteSpec};
use crate::pricing::{ModelPrice, PriceTable};
use crate::sample;
use crate::scenario::{offset_ms, GroundTruth, IncidentKind, Scenario};

/// What the live routing config of a route says right now: the closed loop's input. The
/// caller reads it from the state store the actuator writes (`routing/{app}/{route}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSnapshot {
    /// Config version; calls carry it as `config_version`.
    pub version: i64,
    /// Providers/models and their traffic shares.
    pub targets: Vec<RouteTarget>,
    /// Route params (request settings). A `max_tokens` below the route's natural answer
    /// length cap (`tokens.max_output`) cuts answers short: finish reason `length`, and the
    /// answer scores [`TRUNCATION_PENALTY`] less.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// How much a truncated answer loses in quality score.
pub const TRUNCATION_PENALTY: f64 = 0.25;

/// One event produced by the simulator, ready to publish.
// Nearly every event is a call: boxing it would cost an allocation per call to save memory on
// the rare config change.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A finished LLM call, for `telemetry.raw`.
    Call {
        /// The call.
        call: LlmCall,
        /// Deterministic CloudEvent id, `{app}-{n}` with n counting the app's calls from 1.
        id: String,
        /// CloudEvent source, `/apps/{app}`.
        source: String,
    },
    /// A config change the simulated world made by itself (a human editing a route), for
    /// `config.changes`.
    ConfigChange(ConfigChange),
}

impl SimEvent {
    /// Event time in ms since epoch.
    pub fn event_time(&self) -> i64 {
        match self {
            Self::Call { call, .. } => call.event_time,
            Self::ConfigChange(c) => c.event_time,
        }
    }

    /// Partition key `app/route`, as the topics expect.
    pub fn key(&self) -> String {
        match self {
            Self::Call { call, .. } => format!("{}/{}", call.app, call.route),
            Self::ConfigChange(c) => format!("{}/{}", c.app, c.route),
        }
    }
}

/// An incident compiled against the catalogue, evaluated per call.
#[derive(Debug, Clone)]
enum Effect {
    ErrorBurst {
        model: usize,
        start_ms: i64,
        end_ms: i64,
        error_rate: f64,
    },
    Cost {
        model: usize,
        start_ms: i64,
        end_ms: Option<i64>,
        factor: f64,
    },
    QualityDrift {
        model: usize,
        start_ms: i64,
        drop_per_ms: f64,
    },
}

/// How incidents change one call to one model at one time.
#[derive(Debug, Clone, Copy)]
struct Conditions {
    error_rate: f64,
    cost_factor: f64,
    quality_drop: f64,
}

fn conditions(effects: &[Effect], model: usize, base_error_rate: f64, t: i64) -> Conditions {
    let mut c = Conditions {
        error_rate: base_error_rate,
        cost_factor: 1.0,
        quality_drop: 0.0,
    };
    for e in effects {
        match *e {
            Effect::ErrorBurst {
                model: m,
                start_ms,
                end_ms,
                error_rate,
            } if m == model && t >= start_ms && t < end_ms => {
                c.error_rate = c.error_rate.max(error_rate);
            }
            Effect::Cost {
                model: m,
                start_ms,
                end_ms,
                factor,
            } if m == model && t >= start_ms && end_ms.is_none_or(|end| t < end) => {
                c.cost_factor *= factor;
            }
            Effect::QualityDrift {
                model: m,
                start_ms,
                drop_per_ms,
            } if m == model && t >= start_ms => {
                c.quality_drop += drop_per_ms * (t - start_ms) as f64;
            }
            _ => {}
        }
    }
    c
}

/// A scheduled manual change of a route.
#[derive(Debug, Clone, Copy)]
struct ManualChange {
    at_ms: i64,
    latency_factor: f64,
}

/// The routing a route serves under during one `advance`, resolved against the catalogue.
struct Active {
    version: i64,
    targets: Vec<RouteTarget>,
    /// Catalogue index (None ⇒ unknown model) and sanitised weight, per target.
    resolved: Vec<(Option<usize>, f64)>,
    /// Mean quality on this route of each target (its catalogue mean unless the route says).
    quality: Vec<f64>,
    /// The live params.
    params: BTreeMap<String, String>,
    /// A `max_tokens` param below the route's natural answer length cap.
    max_tokens: Option<i64>,
    total_weight: f64,
    latency_factor: f64,
}

/// Everything a route needs from the simulator that does not change while it runs.
struct Ctx<'a> {
    fleet: &'a FleetSpec,
    prices: &'a [ModelPrice],
    effects: &'a [Effect],
    start_ms: i64,
    seed: u64,
}

struct RouteState {
    app: usize,
    route: usize,
    arrivals: ChaCha8Rng,
    content: ChaCha8Rng,
    rate_per_ms: f64,
    /// Indices into `FleetSpec::noisy_tenants` of the tenants of this route's app.
    noisy: Vec<usize>,
    /// Their extra rates summed: what the arrivals' peak rate adds for them.
    noisy_peak: f64,
    next_arrival_ms: f64,
    /// Events produced by this route (their tie-break order).
    seq: u64,
    /// Calls produced by this route (numbers request ids).
    calls: u64,
    /// A manual change this simulator made that the live config has not shown yet.
    local: Option<RouteSnapshot>,
    /// Versions made slow by a latency regression, with their factors.
    regressions: Vec<(i64, f64)>,
    manual: Vec<ManualChange>,
    next_manual: usize,
    /// The route's most capable model (catalogue index) and its quality here.
    capable: Option<(usize, f64)>,
    /// The initial routing: (catalogue index, weight, quality here).
    initial: Vec<(usize, f64, f64)>,
    ledger: RouteLedger,
}

/// What a route's successful calls cost and how good they were, next to what two baselines
/// would have given for the same calls (same tokens): always the route's most capable model,
/// and the fleet's initial (static) routing. Cost is at list price; quality is the expected
/// score (the serving model's mean on the route, less any drift), not the sampled feedback.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteLedger {
    /// App.
    pub app: String,
    /// Route.
    pub route: String,
    /// Successful calls.
    pub calls: u64,
    /// Their cost (USD).
    pub cost_usd: f64,
    /// Sum of their expected quality.
    pub quality_sum: f64,
    /// The most capable model, `provider/model`.
    pub capable: Option<String>,
    /// The same calls on the most capable model: cost.
    pub capable_cost_usd: f64,
    /// And expected quality sum.
    pub capable_quality_sum: f64,
    /// The same calls under the initial routing: cost.
    pub initial_cost_usd: f64,
    /// And expected quality sum.
    pub initial_quality_sum: f64,
    /// Per minute of simulated time since the start: successful calls and the sum of their
    /// expected quality (how good the route was, window by window).
    pub minutes: BTreeMap<i64, (u64, f64)>,
}

impl RouteLedger {
    fn record(
        &mut self,
        minute: i64,
        cost: f64,
        quality: f64,
        capable: (f64, f64),
        initial: (f64, f64),
    ) {
        self.calls += 1;
        self.cost_usd += cost;
        self.quality_sum += quality;
        self.capable_cost_usd += capable.0;
        self.capable_quality_sum += capable.1;
        self.initial_cost_usd += initial.0;
        self.initial_quality_sum += initial.1;
        let m = self.minutes.entry(minute).or_default();
        m.0 += 1;
        m.1 += quality;
    }
}

/// An event before ids are assigned, with its sort key.
struct Pending {
    time: i64,
    route: usize,
    ord: u64,
    event: PendingEvent,
}

enum PendingEvent {
    Call(Box<LlmCall>),
    Change(ConfigChange),
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Next value of a `prompt_version` param: numeric ones count up, others get a suffix.
fn bump_prompt_version(params: &mut BTreeMap<String, String>) {
    let next = match params.get("prompt_version") {
        None => "2".to_string(),
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n.saturating_add(1).to_string(),
            Err(_) => format!("{v}-next"),
        },
    };
    params.insert("prompt_version".to_string(), next);
}

impl RouteState {
    fn spec<'a>(&self, fleet: &'a FleetSpec) -> (&'a str, &'a RouteSpec) {
        let app = &fleet.apps[self.app];
        (&app.name, &app.routes[self.route])
    }

    /// The routing to serve under: the live snapshot, unless a manual change of ours is newer
    /// than what the live config shows (the caller may not have projected it yet).
    fn effective(&mut self, live: Option<RouteSnapshot>, spec: &RouteSpec) -> RouteSnapshot {
        let live = live.unwrap_or_else(|| RouteSnapshot {
            version: 1,
            targets: spec.targets.clone(),
            params: spec.params.clone(),
        });
        match &self.local {
            Some(local) if live.version < local.version => local.clone(),
            _ => {
                self.local = None;
                live
            }
        }
    }

    fn activate(&self, snapshot: RouteSnapshot, ctx: &Ctx<'_>) -> Active {
        let (_, spec) = self.spec(ctx.fleet);
        let sanitise = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
        let total: f64 = snapshot.targets.iter().map(|t| sanitise(t.weight)).sum();
        // A snapshot with no usable weight cannot route anything: serve the initial targets,
        // as a client falling back to its built-in defaults would.
        let targets = if total > 0.0 {
            snapshot.targets
        } else {
            spec.targets.clone()
        };
        let resolved: Vec<(Option<usize>, f64)> = targets
            .iter()
            .map(|t| {
                (
                    ctx.fleet.catalogue.position(&t.provider, &t.model),
                    sanitise(t.weight),
                )
            })
            .collect();
        let total_weight = resolved.iter().map(|(_, w)| w).sum();
        let quality = targets
            .iter()
            .map(|t| {
                spec.quality_of(&ctx.fleet.catalogue, &t.provider, &t.model)
                    .unwrap_or(0.0)
            })
            .collect();
        let max_tokens = snapshot
            .params
            .get("max_tokens")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|m| *m >= 1 && *m < spec.tokens.max_output);
        let mut active = Active {
            version: snapshot.version,
            targets,
            resolved,
            quality,
            params: snapshot.params,
            max_tokens,
            total_weight,
            latency_factor: 1.0,
        };
        active.latency_factor = self.latency_factor(active.version);
        active
    }

    fn latency_factor(&self, version: i64) -> f64 {
        self.regressions
            .iter()
            .filter(|(v, _)| *v == version)
            .map(|(_, f)| f)
            .product()
    }

    /// Applies the next manual change: emits it and serves under it from now on.
    fn apply_manual(&mut self, ctx: &Ctx<'_>, active: &mut Active, out: &mut Vec<Pending>) {
        let Some(m) = self.manual.get(self.next_manual).copied() else {
            return;
        };
        self.next_manual += 1;
        let (app, spec) = self.spec(ctx.fleet);
        let version = active.version.saturating_add(1);
        let mut params = spec.params.clone();
        bump_prompt_version(&mut params);
        let change = ConfigChange {
            id: format!("{app}/{}/v{version}", spec.name),
            event_time: m.at_ms,
            app: app.to_string(),
            route: spec.name.clone(),
            version,
            previous_version: Some(active.version),
            kind: ChangeKind::Manual,
            decision_id: None,
            targets: active.targets.clone(),
            params,
        };
        self.local = Some(RouteSnapshot {
            version,
            targets: active.targets.clone(),
            params: active.params.clone(),
        });
        self.regressions.push((version, m.latency_factor));
        active.version = version;
        active.latency_factor = self.latency_factor(version);
        self.seq += 1;
        out.push(Pending {
            time: m.at_ms,
            route: 0,
            ord: self.seq,
            event: PendingEvent::Change(change),
        });
    }

    fn generate(
        &mut self,
        index: usize,
        ctx: &Ctx<'_>,
        live: Option<RouteSnapshot>,
        until_ms: i64,
        out: &mut Vec<Pending>,
    ) {
        let (_, spec) = self.spec(ctx.fleet);
        let snapshot = self.effective(live, spec);
        let mut active = self.activate(snapshot, ctx);
        let first = out.len();
        loop {
            // Saturating float-to-int: an infinite next arrival (rate 0) never comes.
            let t = self.next_arrival_ms.floor() as i64;
            let horizon = t.min(until_ms.saturating_sub(1));
            while self
                .manual
                .get(self.next_manual)
                .is_some_and(|m| m.at_ms <= horizon)
            {
                self.apply_manual(ctx, &mut active, out);
            }
            if t >= until_ms {
                break;
            }
            // A shaped fleet thins (Lewis-Shedler): candidate arrivals come at the peak rate
            // and each is kept with probability rate(t) / peak, a Poisson process with the
            // shaped rate. A flat fleet keeps every arrival and draws exactly as it always did
            // (calls draw from another stream than arrivals). A noisy tenant's running job adds
            // its extra rate; which part of the rate a kept arrival belongs to is read off the
            // same uniform draw, so fleets without noisy tenants draw as they did.
            let traffic = &ctx.fleet.traffic;
            let shaped = !traffic.is_flat() || self.noisy_peak > 0.0;
            let peak = traffic.peak_load() + self.noisy_peak;
            let rate = if shaped {
                self.rate_per_ms * peak
            } else {
                self.rate_per_ms
            };
            let gap = sample::exponential(&mut self.arrivals, rate);
            let kept = if shaped {
                let load = traffic.load(t);
                let draw = self.arrivals.gen::<f64>();
                if draw < load / peak {
                    Some(None)
                } else {
                    let mut rest = draw * peak - load;
                    let mut job = None;
                    for &j in &self.noisy {
                        let tenant = &ctx.fleet.noisy_tenants[j];
                        if !tenant.busy_at(ctx.seed, t) {
                            continue;
                        }
                        if rest < tenant.extra_rate {
                            job = Some(Some(j));
                            break;
                        }
                        rest -= tenant.extra_rate;
                    }
                    job
                }
            } else {
                Some(None)
            };
            if let Some(job) = kept {
                let call = self.make_call(ctx, &active, t, job);
                self.seq += 1;
                out.push(Pending {
                    time: t,
                    route: 0,
                    ord: self.seq,
                    event: PendingEvent::Call(Box::new(call)),
                });
            }
            self.next_arrival_ms += gap;
        }
        for p in &mut out[first..] {
            p.route = index;
        }
    }

    /// One call at `t`; `job` is the noisy tenant (index into `FleetSpec::noisy_tenants`) whose
    /// job makes it, if any.
    fn make_call(&mut self, ctx: &Ctx<'_>, active: &Active, t: i64, job: Option<usize>) -> LlmCall {
        let fleet = ctx.fleet;
        let app = &fleet.apps[self.app];
        let spec = &app.routes[self.route];
        self.calls += 1;
        let rng = &mut self.content;

        let mut pick = rng.gen::<f64>() * active.total_weight;
        let mut chosen = active.resolved.len().saturating_sub(1);
        for (i, (_, w)) in active.resolved.iter().enumerate() {
            if pick < *w {
                chosen = i;
                break;
            }
            pick -= w;
        }
        let target = &active.targets[chosen];
        let profile_index = active.resolved[chosen].0;
        let route_quality = active.quality[chosen];
        let mut truncated = false;
        let job = job.and_then(|j| fleet.noisy_tenants.get(j));
        let tenant = if let Some(job) = job {
            Some(job.tenant.clone())
        } else if app.tenants.is_empty() {
            None
        } else {
            app.tenants
                .get(rng.gen_range(0..app.tenants.len()))
                .cloned()
        };

        let mut call = LlmCall {
            event_time: t,
            request_id: format!("{}-{}-{}", app.name, spec.name, self.calls),
            app: app.name.clone(),
            route: spec.name.clone(),
            tenant,
            gen_ai_operation_name: "chat".to_string(),
            gen_ai_provider_name: target.provider.clone(),
            gen_ai_request_model: target.model.clone(),
            gen_ai_response_model: None,
            gen_ai_usage_input_tokens: 0,
            gen_ai_usage_output_tokens: 0,
            latency_ms: 0.0,
            time_to_first_token_ms: None,
            status: CallStatus::Error,
            error_type: None,
            cost_usd: None,
            quality_score: None,
            config_version: Some(active.version),
            gen_ai_usage_cache_read_input_tokens: None,
            gen_ai_usage_reasoning_output_tokens: None,
            gen_ai_request_max_tokens: None,
            gen_ai_request_temperature: None,
            gen_ai_response_finish_reasons: Vec::new(),
        };
        let Some(model) = profile_index else {
            call.error_type = Some(ERROR_MODEL_NOT_FOUND.to_string());
            call.latency_ms = round1(sample::lognormal(rng, 80.0, 0.3));
            return call;
        };
        let profile: &ModelProfile = &fleet.catalogue.models[model];
        let cond = conditions(ctx.effects, model, profile.error_rate, t);
        let expected_quality = |truncated: bool| {
            route_quality - cond.quality_drop - if truncated { TRUNCATION_PENALTY } else { 0.0 }
        };

        if rng.gen::<f64>() < cond.error_rate {
            let kind = profile.errors.pick(rng.gen::<f64>());
            call.error_type = Some(kind.to_string());
            call.latency_ms = round1(match kind {
                ERROR_TIMEOUT => profile.timeout_ms,
                ERROR_RATE_LIMITED => sample::lognormal(rng, 150.0, 0.3),
                ERROR_SERVER => sample::lognormal(rng, 900.0, 0.5),
                _ => sample::lognormal(rng, 500.0, 0.5),
            });
        } else {
            let tokens = &spec.tokens;
            let prompt_factor = job.map_or(1.0, |j| j.input_tokens_factor);
            let input = (tokens.input.sample(rng) * prompt_factor)
                .round()
                .clamp(1.0, 1e7) as i64;
            let mut output = (tokens.output.sample(rng).round() as i64).clamp(1, tokens.max_output);
            if let Some(cap) = active.max_tokens.filter(|cap| output > *cap) {
                output = cap;
                truncated = true;
                call.gen_ai_response_finish_reasons = vec!["length".to_string()];
            }
            let ttft = profile.ttft_ms.sample(rng);
            let decode = output as f64 * profile.ms_per_output_token.sample(rng);
            call.status = CallStatus::Ok;
            call.gen_ai_response_model = Some(target.model.clone());
            call.gen_ai_usage_input_tokens = input;
            call.gen_ai_usage_output_tokens = output;
            let latency_factor = active.latency_factor * fleet.traffic.latency_factor(t);
            call.time_to_first_token_ms = Some(round1(ttft * latency_factor));
            call.latency_ms = round1((ttft + decode) * latency_factor);
            if rng.gen::<f64>() < fleet.quality_share {
                let q = sample::normal(rng, expected_quality(truncated), profile.quality_sd);
                call.quality_score = Some(q.clamp(0.0, 1.0));
            }
        }

        // Under a cost incident the producer reports what it was billed, which ingest's list
        // prices could not know; otherwise only a share of producers report cost at all.
        let cost = ctx.prices[model].cost(
            call.gen_ai_usage_input_tokens,
            call.gen_ai_usage_output_tokens,
        ) * cond.cost_factor;
        if rng.gen::<f64>() < fleet.cost_reported_share || cond.cost_factor != 1.0 {
            call.cost_usd = Some(cost);
        }
        if call.status == CallStatus::Ok {
            let (i, o) = (
                call.gen_ai_usage_input_tokens,
                call.gen_ai_usage_output_tokens,
            );
            let capable = self
                .capable
                .map_or((0.0, 0.0), |(m, q)| (ctx.prices[m].cost(i, o), q));
            let initial = self.initial.iter().fold((0.0, 0.0), |acc, (m, w, q)| {
                (acc.0 + w * ctx.prices[*m].cost(i, o), acc.1 + w * q)
            });
            let minute = (t - ctx.start_ms).div_euclid(60_000);
            self.ledger
                .record(minute, cost, expected_quality(truncated), capable, initial);
        }
        call
    }
}

/// The simulated fleet. See the module docs.
pub struct Simulator {
    fleet: FleetSpec,
    scenario: Scenario,
    seed: u64,
    start_ms: i64,
    now_ms: i64,
    prices: Vec<ModelPrice>,
    effects: Vec<Effect>,
    routes: Vec<RouteState>,
    app_calls: Vec<u64>,
}

impl Simulator {
    /// A simulator of `fleet` playing `scenario`, with all randomness drawn from `seed` and
    /// the clock starting at `start_ms` (ms since epoch). Both inputs are validated first.
    pub fn new(
        fleet: FleetSpec,
        scenario: Scenario,
        seed: u64,
        start_ms: i64,
    ) -> Result<Self, SimError> {
        fleet.validate()?;
        scenario.validate(&fleet)?;
        let prices = fleet
            .catalogue
            .models
            .iter()
            .map(ModelProfile::list_price)
            .collect();
        let effects = compile_effects(&fleet, &scenario, start_ms);

        let mut routes = Vec::new();
        for (a, app) in fleet.apps.iter().enumerate() {
            for (r, spec) in app.routes.iter().enumerate() {
                let stream = routes.len() as u64;
                let mut arrivals = ChaCha8Rng::seed_from_u64(seed);
                arrivals.set_stream(2 * stream);
                let mut content = ChaCha8Rng::seed_from_u64(seed);
                content.set_stream(2 * stream + 1);
                let rate_per_ms = spec.calls_per_s / 1000.0;
                // A shaped fleet draws candidate arrivals at its peak rate (see `generate`).
                let noisy: Vec<usize> = fleet
                    .noisy_tenants
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| app.tenants.contains(&t.tenant))
                    .map(|(j, _)| j)
                    .collect();
                let noisy_peak: f64 = noisy
                    .iter()
                    .map(|&j| fleet.noisy_tenants[j].extra_rate)
                    .sum();
                let draw_rate = if fleet.traffic.is_flat() && noisy_peak == 0.0 {
                    rate_per_ms
                } else {
                    rate_per_ms * (fleet.traffic.peak_load() + noisy_peak)
                };
                let first_gap = if rate_per_ms > 0.0 {
                    sample::exponential(&mut arrivals, draw_rate)
                } else {
                    f64::INFINITY
                };
                let mut manual: Vec<ManualChange> = scenario
                    .incidents
                    .iter()
                    .filter_map(|i| match &i.kind {
                        IncidentKind::LatencyRegressionAfterConfigChange {
                            app: ia,
                            route: ir,
                            at_s,
                            latency_factor,
                        } if *ia == app.name && *ir == spec.name => Some(ManualChange {
                            at_ms: offset_ms(start_ms, *at_s),
                            latency_factor: *latency_factor,
                        }),
                        _ => None,
                    })
                    .collect();
                manual.sort_by_key(|m| m.at_ms);
                let catalogue = &fleet.catalogue;
                let capable = spec.most_capable(catalogue).and_then(|(p, m)| {
                    Some((
                        catalogue.position(&p, &m)?,
                        spec.quality_of(catalogue, &p, &m)?,
                    ))
                });
                let initial = spec
                    .targets
                    .iter()
                    .filter_map(|t| {
                        Some((
                            catalogue.position(&t.provider, &t.model)?,
                            t.weight,
                            spec.quality_of(catalogue, &t.provider, &t.model)?,
                        ))
                    })
                    .collect();
                let ledger = RouteLedger {
                    app: app.name.clone(),
                    route: spec.name.clone(),
                    capable: spec
                        .most_capable(catalogue)
                        .map(|(p, m)| format!("{p}/{m}")),
                    ..RouteLedger::default()
                };
                routes.push(RouteState {
                    app: a,
                    route: r,
                    arrivals,
                    content,
                    rate_per_ms,
                    noisy,
                    noisy_peak,
                    next_arrival_ms: start_ms as f64 + first_gap,
                    seq: 0,
                    calls: 0,
                    local: None,
                    regressions: Vec::new(),
                    manual,
                    next_manual: 0,
                    capable,
                    initial,
                    ledger,
                });
            }
        }
        let app_calls = vec![0; fleet.apps.len()];
        Ok(Self {
            fleet,
            scenario,
            seed,
            start_ms,
            now_ms: start_ms,
            prices,
            effects,
            routes,
            app_calls,
        })
    }

    /// Produces every event with an event time in `[now, until_ms)`, sorted by event time,
    /// and moves the clock to `until_ms` (nothing happens if `until_ms` is not ahead).
    ///
    /// `routing(app, route)` is asked once per route per call, before that route's events
    /// are produced; `None` means "no live config", i.e. the fleet's initial targets at
    /// version 1. Calls served under a version carry it as `config_version`.
    pub fn advance(
        &mut self,
        until_ms: i64,
        routing: &mut dyn FnMut(&str, &str) -> Option<RouteSnapshot>,
    ) -> Vec<SimEvent> {
        if until_ms <= self.now_ms {
            return Vec::new();
        }
        let ctx = Ctx {
            fleet: &self.fleet,
            prices: &self.prices,
            effects: &self.effects,
            start_ms: self.start_ms,
            seed: self.seed,
        };
        let mut pending = Vec::new();
        for (index, route) in self.routes.iter_mut().enumerate() {
            let (app, spec) = route.spec(ctx.fleet);
            let live = routing(app, &spec.name);
            route.generate(index, &ctx, live, until_ms, &mut pending);
        }
        pending.sort_by_key(|p| (p.time, p.route, p.ord));
        self.now_ms = until_ms;

        let mut events = Vec::with_capacity(pending.len());
        for p in pending {
            match p.event {
                PendingEvent::Change(c) => events.push(SimEvent::ConfigChange(c)),
                PendingEvent::Call(call) => {
                    let app = self.routes[p.route].app;
                    self.app_calls[app] += 1;
                    events.push(SimEvent::Call {
                        id: format!("{}-{}", call.app, self.app_calls[app]),
                        source: format!("/apps/{}", call.app),
                        call: *call,
                    });
                }
            }
        }
        events
    }

    /// One INITIAL change (version 1, the fleet's initial targets and params) per route, to
    /// seed `config.changes` so the actuator's projection starts from the fleet's routing.
    pub fn initial_config_changes(&self, time_ms: i64) -> Vec<ConfigChange> {
        self.fleet
            .routes()
            .map(|(app, route)| ConfigChange {
                id: format!("{}/{}/v1", app.name, route.name),
                event_time: time_ms,
                app: app.name.clone(),
                route: route.name.clone(),
                version: 1,
                previous_version: None,
                kind: ChangeKind::Initial,
                decision_id: None,
                targets: route.targets.clone(),
                params: route.params.clone(),
            })
            .collect()
    }

    /// What really happens in this run: the scenario's incidents and the fleet's standing
    /// opportunities, sorted by start time, for the demo's summary.
    pub fn ground_truth(&self) -> Vec<GroundTruth> {
        let mut all = self.fleet.opportunities(self.start_ms);
        all.extend(self.scenario.ground_truth(&self.fleet, self.start_ms));
        all.sort_by_key(|g| g.start_ms);
        all
    }

    /// Prices matching what the simulator bills at list price, for an ingest service that
    /// prices this fleet's unpriced calls.
    pub fn price_table(&self) -> PriceTable {
        PriceTable::from_catalogue(&self.fleet.catalogue)
    }

    /// The simulated clock: events up to here have been produced.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// When the simulation started.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// When the scenario is meant to end (start + its duration).
    pub fn end_ms(&self) -> i64 {
        offset_ms(self.start_ms, self.scenario.duration_s)
    }

    /// The seed all randomness comes from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Per route: what its calls cost and how good they were, next to the baselines.
    pub fn ledgers(&self) -> Vec<RouteLedger> {
        self.routes.iter().map(|r| r.ledger.clone()).collect()
    }

    /// The simulated fleet.
    pub fn fleet(&self) -> &FleetSpec {
        &self.fleet
    }

    /// The scenario being played.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }
}

fn compile_effects(fleet: &FleetSpec, scenario: &Scenario, start_ms: i64) -> Vec<Effect> {
    let mut effects = Vec::new();
    let models = &fleet.catalogue.models;
    let index = |provider: &str, model: &str| fleet.catalogue.position(provider, model);
    for incident in &scenario.incidents {
        match &incident.kind {
            IncidentKind::ProviderErrorBurst {
                provider,
                model,
                start_s,
                duration_s,
                error_rate,
            } => effects.extend(index(provider, model).map(|m| Effect::ErrorBurst {
                model: m,
                start_ms: offset_ms(start_ms, *start_s),
                end_ms: offset_ms(start_ms, start_s.saturating_add(*duration_s)),
                error_rate: *error_rate,
            })),
            IncidentKind::CostSpike {
                provider,
                model,
                start_s,
                duration_s,
                factor,
            } => effects.extend(index(provider, model).map(|m| Effect::Cost {
                model: m,
                start_ms: offset_ms(start_ms, *start_s),
                end_ms: Some(offset_ms(start_ms, start_s.saturating_add(*duration_s))),
                factor: *factor,
            })),
            IncidentKind::SelfHostedTooExpensive {
                model,
                factor,
                start_s,
            } => effects.extend(
                models
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.self_hosted && &p.model == model)
                    .map(|(m, _)| Effect::Cost {
                        model: m,
                        start_ms: offset_ms(start_ms, *start_s),
                        end_ms: None,
                        factor: *factor,
                    }),
            ),
            IncidentKind::QualityDrift {
                provider,
                model,
                start_s,
                drop_per_hour,
            } => effects.extend(index(provider, model).map(|m| Effect::QualityDrift {
                model: m,
                start_ms: offset_ms(start_ms, *start_s),
                drop_per_ms: drop_per_hour / 3_600_000.0,
            })),
            IncidentKind::LatencyRegressionAfterConfigChange { .. } => {}
        }
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_version_bumps() {
        let mut p = BTreeMap::new();
        bump_prompt_version(&mut p);
        assert_eq!(p.get("prompt_version").map(String::as_str), Some("2"));
        bump_prompt_version(&mut p);
        assert_eq!(p.get("prompt_version").map(String::as_str), Some("3"));
        p.insert("prompt_version".to_string(), "alpha".to_string());
        bump_prompt_version(&mut p);
        assert_eq!(
            p.get("prompt_version").map(String::as_str),
            Some("alpha-next")
        );
    }
}
