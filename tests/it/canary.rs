//! The canary in CI, on real OpenSSH hosts: a timed canary_pause that bakes,
//! `deploy --until canary` then `promote` or `abort` from elsewhere, and
//! `--lock-wait`.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::{ndjson, printed};

/// `n` SSH hosts web1..webN, trusted, with `extra` TOML.
fn fleet(n: usize, extra: &str) -> Fleet {
    Fleet::ssh(n).toml(extra).write()
}

/// `hoist ARGS --json` started in the background, its NDJSON read line by line.
fn spawn_json(f: &Fleet, args: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(args)
        .arg("--json")
        .env("HOME", f.path().join("home"))
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_canary_that_turns_unhealthy_during_the_bake_is_rolled_back() {
    let f = fleet(
        3,
        &format!("{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"6s\"\nbatch = 2"),
    );
    let v1 = f.on_v1_then_v2();
    let mut child = spawn_json(&f, &["deploy"]);
    let mut lines = Vec::new();
    let mut bake_started = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if bake_started.is_none() && line.contains("\"bake_started\"") {
            bake_started = Some(Instant::now());
            std::thread::sleep(Duration::from_secs(2));
            f.mark("web1", "FAIL");
        }
        lines.push(line);
    }
    assert_eq!(child.wait().unwrap().code(), Some(5));
    let stopped = bake_started.expect("the bake started").elapsed();
    assert!(
        stopped < Duration::from_secs(5),
        "the bake stopped at the failing probe, not at its end ({stopped:?})"
    );
    let events = ndjson((lines.join("\n") + "\n").as_bytes());
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    let done = events.iter().find(|e| e["event"] == "bake_done").unwrap();
    assert_eq!(done["healthy"], false);
    let failed = events
        .iter()
        .find(|e| e["event"] == "host_failed" && e["host"] == "web1")
        .unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("during the bake")
    );
    assert_eq!(
        f.current("web1").as_deref(),
        Some(v1.as_str()),
        "canary back"
    );
    for host in ["web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()));
        assert!(!f.switched_to(host, &v2), "{host} untouched");
        assert!(!f.releases(host).contains(&v2), "{host} got no upload");
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "wave_started")
            .count(),
        1
    );
}

#[test]
fn a_canary_that_stays_healthy_through_the_bake_is_promoted() {
    let f = fleet(
        2,
        &format!("{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"1s\"\nbatch = 1"),
    );
    f.on_v1_then_v2();
    let out = f.hoist(&["deploy"]).assert().success().get_output().clone();
    let text = printed(&out);
    assert!(text.contains("baking the canary (web1) for 1.0s"), "{text}");
    assert!(
        text.contains("bake over: the canary stayed healthy"),
        "{text}"
    );
    assert_eq!(f.read_current("web2", "README"), "v2");
}
