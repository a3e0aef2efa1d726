//! Chaos suite, the services: the default scenario through the five services as separate
//! `llmopt run` processes on the real broker and Redis, driven in lock-step by `llmopt loadgen`,
//! while every service (ingest, aggregator, detector, decision and actuator) is killed with
//! SIGKILL at random points five times and restarted at once, and Redis (keeping its data on
//! disk, as a production Redis does) is killed and restarted once mid-run. Each round kills all
//! five in a random order a moment apart, so their outages overlap. The services restore their
//! checkpoints and replay only what follows, wait out the Redis outage, and the aggregator counts
//! the calls ingest publishes again after a crash once, so the run must give exactly the alerts,
//! decisions and final routing config of the embedded demo, which never crashes.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::lockstep::{self, SERVICES};
use common::process::{
    free_port, loadgen_fleet_config, read, Installation, PrivateRedis, ServiceProcess,
};

/// Killed in every round (indices into [`SERVICES`]).
const VICTIMS: [usize; 5] = [0, 1, 2, 3, 4];

const KILLS_EACH: usize = 5;

/// A small seeded generator: the kill schedule is random but the same in every run.
struct Lcg(u64);

impl Lcg {
    /// `VICTIMS` in a random order (Fisher-Yates).
    fn shuffled(&mut self) -> [usize; VICTIMS.len()] {
        let mut order = VICTIMS;
        for i in (1..order.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_services_killed_at_random_give_the_uninterrupted_results() {
    let embedded = lockstep::embedded_fingerprint().await;

    let install = Installation::new("chaos-services", &loadgen_fleet_config());
    let redis_dir = install.dir.join("redis");
    std::fs::create_dir_all(&redis_dir).expect("redis dir");
    let mut redis = PrivateRedis::start(free_port(), Some(&redis_dir));
    let redis_url = redis.url();
    let env = [("LLMOPT_REDIS_URL", redis_url.as_str())];
    let mut services: Vec<ServiceProcess> = SERVICES
        .iter()
        .map(|s| install.spawn_service(s, &env))
        .collect();
    let report = install.dir.join("report.json");
    let loadgen_log = install.dir.join("loadgen.out");
    let mut loadgen = lockstep::loadgen(&install, &services, &report)
        .env("LLMOPT_REDIS_URL", &redis_url)
        .stdout(std::fs::File::create(&loadgen_log).expect("log"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run llmopt loadgen");

    // Wait until the loop runs (every service ready, the first steps published). Then, each
    // round: let the loop run 0.5-3 s, kill every victim in a random order 0.1-1.5 s apart
    // (each restarted at once), and wait until all are back (ready: restored, rejoined, caught
    // up).
    for s in &services {
        s.wait_ready(Duration::from_secs(120));
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut rng = Lcg(9);
    let mut kills = [0usize; SERVICES.len()];
    let deadline = Instant::now() + Duration::from_secs(600);
    'chaos: for round in 0..KILLS_EACH {
        if round == 2 {
            // Redis down for two seconds: every service waits it out (not ready meanwhile),
            // nothing acknowledged is lost (fsync always).
            eprintln!("Redis killed and restarted");
            let port = redis.port;
            redis.stop();
            std::thread::sleep(Duration::from_secs(2));
            redis = PrivateRedis::start(port, Some(&redis_dir));
        }
        std::thread::sleep(Duration::from_millis(500 + rng.below(2500)));
        for victim in rng.shuffled() {
            if loadgen.try_wait().expect("loadgen status").is_some() {
                break 'chaos;
            }
            assert!(Instant::now() < deadline, "chaos took too long");
            let service = &mut services[victim];
            eprintln!(
                "kill -9 {} (round {}), consumed so far: {}",
                service.name,
                round + 1,
                consumed(service)
            );
            let port = service.port;
            service.kill_9();
            *service = install.spawn_service_on(SERVICES[victim], port, &env);
            kills[victim] += 1;
            std::thread::sleep(Duration::from_millis(100 + rng.below(1400)));
        }
        for service in &services {
            service.wait_ready(Duration::from_secs(120));
        }
    }
    let status = loadgen.wait().expect("loadgen");
    let output = read(&loadgen_log);
    assert!(status.success(), "loadgen failed: {status}\n{output}");
    for &victim in &VICTIMS {
        assert!(
            kills[victim] >= KILLS_EACH,
            "{} killed {} times: the run ended before the chaos did",
            SERVICES[victim],
            kills[victim]
        );
    }
    let outages = services
        .iter()
        .filter(|s| read(&s.log).contains("outage: retrying"))
        .count();
    assert!(outages > 0, "the Redis outage was met and waited out");
    for s in &services {
        // One instance of each at a time: a restart claims the dead one's checkpoints, nobody
        // is ever fenced off.
        let log = read(&s.log);
        assert!(!log.contains("fenced off"), "{}: {log}", s.name);
    }
    lockstep::assert_report_matches(&report, &embedded);
    let restored = |name: &str| {
        let log = read(&services[SERVICES.iter().position(|s| *s == name).expect("service")].log);
        log.matches("checkpoint restored").count()
    };
    for name in ["aggregator", "detector", "decision", "actuator"] {
        assert!(
            restored(name) >= KILLS_EACH,
            "{name} restored its checkpoint after its restarts: {} times",
            restored(name)
        );
    }

    for service in services {
        service.stop();
    }
    redis.stop();
}

/// Inputs the service consumed since its (re)start, from its `/metrics`.
fn consumed(service: &ServiceProcess) -> u64 {
    service
        .metrics()
        .lines()
        .filter(|l| l.starts_with("llmopt_events_in_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
