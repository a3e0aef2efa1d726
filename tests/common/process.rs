//! `llmopt` processes against the test broker and Redis: each test gets its own topic prefix,
//! key prefix and config file, services run as real child processes with their admin endpoint on
//! a free port, and whatever a test leaves running is killed when its handle is dropped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{kafka_bootstrap, redis_url, unique};

/// One isolated installation: topic prefix, state-store key prefix, a config file.
pub struct Installation {
    /// Topic prefix (also the consumer groups' prefix).
    pub prefix: String,
    /// State-store key prefix.
    pub key_prefix: String,
    /// Scratch directory (config, logs, reports).
    pub dir: PathBuf,
    /// The config file every process of this installation reads.
    pub config: PathBuf,
}

impl Installation {
    /// A new installation with `config_toml` as its config file (transport and state come from
    /// the environment, as in a deployment).
    pub fn new(tag: &str, config_toml: &str) -> Self {
        let id = unique(tag);
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let config = dir.join("llmopt.toml");
        std::fs::write(&config, config_toml).expect("config file");
        Self {
            prefix: format!("{id}."),
            key_prefix: format!("{id}:"),
            dir,
            config,
        }
    }

    /// `llmopt ARGS` with this installation's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmopt"));
        cmd.args(args)
            .env("LLMOPT_CONFIG", &self.config)
            .env("LLMOPT_TRANSPORT__KIND", "kafka")
            .env("LLMOPT_TRANSPORT__TOPIC_PREFIX", &self.prefix)
            .env("LLMOPT_KAFKA_BOOTSTRAP", kafka_bootstrap())
            .env("LLMOPT_TRANSPORT__KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("LLMOPT_STATE__KIND", "redis")
            .env("LLMOPT_REDIS_URL", redis_url())
            .env("LLMOPT_STATE__KEY_PREFIX", &self.key_prefix)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        cmd
    }

    /// `llmopt run SERVICE` with its admin endpoint on a free port, stderr to a log file.
    pub fn spawn_service(&self, service: &str, env: &[(&str, &str)]) -> ServiceProcess {
        self.spawn_service_on(service, free_port(), env)
    }

    /// `llmopt run SERVICE` with its admin endpoint on `port` (a restarted service keeps its
    /// endpoint); stderr is appended to the service's log file.
    pub fn spawn_service_on(
        &self,
        service: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> ServiceProcess {
        let log = self.dir.join(format!("{service}-{port}.log"));
        let mut cmd = self.command(&[
            "run",
            service,
            "--admin-listen",
            &format!("127.0.0.1:{port}"),
        ]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("log file"),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("spawn llmopt run {service}: {e}"));
        ServiceProcess {
            name: service.to_string(),
            port,
            log,
            child: Some(child),
        }
    }
}

/// A running `llmopt run` process.
pub struct ServiceProcess {
    /// Service name.
    pub name: String,
    /// Admin port.
    pub port: u16,
    /// Its stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits for `/ready`; the log is in the panic message if it never comes.
    pub fn wait_ready(&self, timeout: Duration) {
        wait_for(&format!("{} /ready", self.name), timeout, || {
            http_get(self.port, "/ready").is_some_and(|(s, _)| s == 200)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", read(&self.log)));
    }

    /// The body of `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// SIGKILL, as a crash or an OOM kill: no final commit, no checkpoint, no leaving the
    /// group.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the log.
    pub fn stop(mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return read(&self.log);
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let log = read(&self.log);
                assert!(
                    status.success(),
                    "{} exits cleanly on SIGTERM: {status}\n{log}",
                    self.name
                );
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 30 s of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The file's text, or what went wrong reading it.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

/// A plain HTTP GET on the loopback: status and the whole response.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A port nothing listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `check` every 200 ms until it holds or `timeout` passes.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The services' config file for a lock-step `llmopt loadgen` run: what
/// `llmopt loadgen --print-config` prints, six partitions, and a short fetch wait so idle
/// consumers answer quickly.
pub fn loadgen_fleet_config() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_llmopt"))
        .args(["loadgen", "--print-config"])
        .env_remove("LLMOPT_CONFIG")
        .output()
        .expect("llmopt loadgen --print-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = String::from_utf8(out.stdout).expect("utf-8");
    format!(
        "[transport]\npartitions = 6\n\n[transport.kafka.properties]\n\"fetch.wait.max.ms\" = \"10\"\n\n{policy}"
    )
}

/// A private Redis on a free port, so a test can restart it.
pub struct PrivateRedis {
    /// Its port.
    pub port: u16,
    child: Child,
}

impl PrivateRedis {
    /// `redis-server` on `port`. With `data_dir` it keeps every write on disk there (AOF,
    /// fsync always), so a restart loses nothing, as a production Redis would be set up;
    /// without, a restart loses everything.
    pub fn start(port: u16, data_dir: Option<&Path>) -> Self {
        let mut args = vec![
            "--port".to_string(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
        ];
        match data_dir {
            Some(dir) => args.extend([
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
                "--dir".into(),
                dir.display().to_string(),
            ]),
            None => args.extend(["--appendonly".into(), "no".into()]),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by the test command)");
        wait_for("redis", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .expect("redis up");
        Self { port, child }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (SIGKILL).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
