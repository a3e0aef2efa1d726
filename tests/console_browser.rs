//! The console in a real browser: `llmopt demo --console --propose` (the binary) driven by
//! Playwright with Debian's Chromium (tests/python/console_browser.py). Screenshots of every page
//! land in `target/tmp/console-screenshots/`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "browser-test-token";

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.write_all(b"GET /api/v1/summary HTTP/1.0\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

#[test]
fn the_console_shows_the_loop_live_and_approves_a_decision_in_chromium() {
    let python = std::env::var("LLMOPT_PYTHON")
        .unwrap_or_else(|_| panic!("LLMOPT_PYTHON not set: run the README's test command"));
    let port = free_port();
    let demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_llmopt"))
            .args(["demo", "--propose", "--speed", "60", "--console"])
            .arg(format!("127.0.0.1:{port}"))
            .env("LLMOPT_CONSOLE__TOKENS__ALICE", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start llmopt demo --console"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(port) {
        assert!(
            Instant::now() < deadline,
            "the demo's console never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let routes: Vec<String> = llmopt_sim::FleetSpec::default()
        .routes()
        .map(|(a, r)| format!("{}/{}", a.name, r.name))
        .collect();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/console_browser.py");
    let run = Command::new(python)
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(TOKEN)
        .arg(routes.join(","))
        .arg(&out)
        .output()
        .expect("run the browser test");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "browser test failed");
    for page in [
        "overview",
        "alerts",
        "decisions",
        "route",
        "cost",
        "quantization",
    ] {
        let shot = out.join(format!("{page}.png"));
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} missing or empty", shot.display());
    }
    assert!(stdout.contains("approved "), "{stdout}");
    drop(demo);
}
