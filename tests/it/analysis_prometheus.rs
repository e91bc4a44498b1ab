//! A `canary <= baseline * 1.2` gate on a real Prometheus (Debian's
//! package), which scrapes a small metrics endpoint per test host: the
//! endpoint reports the error ratio of the release the host runs right now
//! (high for the new release when the host has a `BAD` marker). Skipped,
//! saying why, when prometheus is not installed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fleet::Fleet;
use crate::support::lb::{free_port, get};
use crate::support::project::said;

/// Serves `/metrics` on 127.0.0.1:PORT for the host deployed at DEPLOY_TO:
/// `app_error_ratio` 0.5 while it runs v2 with a BAD marker, else 0.01.
const METRICS: &str = r#"
import http.server, os, sys
port, deploy_to = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            release = open(os.path.join(deploy_to, "current", "README")).read().strip()
        except OSError:
            release = ""
        bad = release == "v2" and os.path.exists(os.path.join(deploy_to, "BAD"))
        body = ("app_error_ratio %s\n" % ("0.5" if bad else "0.01")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// Processes killed when the test ends.
struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unavailable() -> Option<String> {
    for tool in ["prometheus", "python3"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (tests/run.sh installs it)"
            ));
        }
    }
    None
}

/// Starts one metrics endpoint per host (web1.. on `ports`) and the
/// Prometheus on `port` scraping them every 200 ms.
fn monitoring(f: &Fleet, ports: &[u16], port: u16) -> Killed {
    let dir = f.path().join("monitoring");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metrics.py"), METRICS).unwrap();
    let mut children = Vec::new();
    let mut targets = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let host = format!("web{}", i + 1);
        children.push(
            Command::new("python3")
                .arg(dir.join("metrics.py"))
                .arg(port.to_string())
                .arg(f.deploy_path(&host))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        targets.push(format!("127.0.0.1:{port}"));
    }
    let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{}]\n",
        quoted.join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    children.push(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let killed = Killed(children);
    wait_for_targets(port, targets.len());
    killed
}

/// Until Prometheus has a sample of every target.
fn wait_for_targets(port: u16, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get(port, "/api/v1/query?query=count(app_error_ratio)");
        if let Ok((200, body)) = &answer
            && body.contains(&format!("\"{n}\"]"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped {n} targets: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three hosts, each with `vars.instance` its endpoint; a canary with a
/// 6 s bake; the gate samples every 1 s and fails on its third failure.
fn fleet(url: &str, targets: &[String], dry_run: bool) -> Fleet {
    let mut toml = format!(
        r#"[strategy]
canary = 1
canary_pause = "6s"
batch = 2

[[analysis]]
name = "error-ratio"
prometheus = {{ url = "{url}", query = 'max(app_error_ratio{{instance=~"{{{{canary}}}}"}})', pass = "canary <= baseline * 1.2" }}
interval = "1s"
failure_limit = 2
dry_run = {dry_run}
"#
    );
    for (i, target) in targets.iter().enumerate() {
        toml.push_str(&format!(
            "\n[hosts.web{}.vars]\ninstance = \"{target}\"\n",
            i + 1
        ));
    }
    Fleet::ssh(3).toml(&toml).write()
}

fn samples(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events.iter().filter(|e| e["event"] == "analysis").collect()
}

fn skip() -> bool {
    match unavailable() {
        Some(why) => {
            eprintln!("skipped: {why}");
            true
        }
        None => false,
    }
}

/// The fleet on v1 (the gate passes while every host runs v1), then v2
/// with web1, the canary, serving errors on it.
fn bad_canary(dry_run: bool) -> Option<(Fleet, Killed, String)> {
    if skip() {
        return None;
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let targets: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let port = free_port();
    let f = fleet(&format!("http://127.0.0.1:{port}"), &targets, dry_run);
    let killed = monitoring(&f, &ports, port);
    let v1 = f.on_v1_then_v2();
    f.mark("web1", "BAD");
    Some((f, killed, v1))
}

#[test]
fn a_canary_serving_errors_is_caught_on_the_third_sample_and_rolled_back() {
    let Some((f, _monitoring, v1)) = bad_canary(false) else {
        return;
    };
    let started = Instant::now();
    let events = f.events(&["deploy", "--json"], 5);
    let samples = samples(&events);
    let verdicts: Vec<&str> = samples
        .iter()
        .map(|e| e["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["fail", "fail", "fail"], "{samples:?}");
    assert_eq!(samples[2]["value"]["canary"], 0.5);
    assert_eq!(samples[2]["value"]["baseline"], 0.01);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(said(
        &events,
        "gate error-ratio 3 of 3 sample(s) failed (failure_limit 2) during the canary bake"
    ));
    let v2 = events.last().unwrap()["release"].as_str().unwrap();
    assert_eq!(f.current("web1").as_deref(), Some(v1.as_str()));
    assert!(f.switched_to("web1", v2));
    for host in ["web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
        f.assert_holds_nothing_of(host, v2);
    }
}

#[test]
fn the_same_gate_in_dry_run_goes_on_and_says_it_would_have_failed() {
    let Some((f, _monitoring, _)) = bad_canary(true) else {
        return;
    };
    let events = f.events(&["deploy", "--json"], 0);
    let samples = samples(&events);
    assert_eq!(samples.len(), 3, "{samples:?}");
    assert!(
        samples
            .iter()
            .all(|e| e["verdict"] == "fail" && e["dry_run"] == true)
    );
    assert!(said(
        &events,
        "dry_run: it would have stopped the rollout; going on"
    ));
    let v2 = events.last().unwrap()["release"].as_str().unwrap();
    for host in ["web1", "web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v2), "{host}");
    }
}

#[test]
fn a_healthy_canary_passes_the_comparison() {
    if skip() {
        return;
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let targets: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let port = free_port();
    let f = fleet(&format!("http://127.0.0.1:{port}"), &targets, false);
    let _monitoring = monitoring(&f, &ports, port);
    f.on_v1_then_v2();
    let events = f.events(&["deploy", "--json"], 0);
    let samples = samples(&events);
    assert!(samples.len() >= 5, "{samples:?}");
    assert!(
        samples.iter().all(|e| e["verdict"] == "pass"),
        "{samples:?}"
    );
    assert_eq!(samples[0]["value"]["canary"], 0.01);
}
