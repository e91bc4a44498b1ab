//! Safe rollouts on real OpenSSH hosts: canary, waves, health, hooks,
//! failure limits, automatic rollback, the fleet lock, interruption, resume.

use std::time::Duration;

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::{ndjson, printed, whoami};

/// `n` SSH hosts web1..webN, trusted, with `extra` TOML.
fn fleet(n: usize, extra: &str) -> Fleet {
    Fleet::ssh(n).toml(extra).write()
}

#[test]
fn nine_hosts_in_waves_of_three_stop_at_the_second_failure_and_roll_back() {
    let f = fleet(
        9,
        &format!("{HEALTH}\n[strategy]\ncanary = 0\nbatch = 3\nmax_failures = 1\nparallel = 3"),
    );
    let v1 = f.on_v1_then_v2();
    f.mark("web2", "FAIL");
    f.mark("web5", "FAIL");
    let out = f
        .hoist(&["deploy", "--json"])
        .assert()
        .code(5)
        .get_output()
        .stdout
        .clone();
    let events = ndjson(&out);
    let waves: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "wave_started")
        .collect();
    assert_eq!(waves.len(), 2, "the third wave never starts");
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()), "{host}");
    }
    for host in ["web7", "web8", "web9"] {
        assert!(!f.switched_to(host, &v2), "{host} untouched");
    }
}

#[test]
fn a_failing_before_switch_hook_leaves_the_host_on_its_old_release() {
    let f = fleet(
        2,
        "[hooks]\nbefore_switch = [\"echo checking >&2; test ! -e \\\"$HOIST_DEPLOY_TO/BAD\\\"\"]\n[strategy]\ncanary = 0\nbatch = 2\nmax_failures = 1\non_failure = \"stop\"",
    );
    let v1 = f.on_v1_then_v2();
    f.mark("web2", "BAD");
    let out = f.hoist(&["deploy"]).assert().code(1).get_output().clone();
    let stderr = printed(&out);
    assert!(
        stderr.contains("checking"),
        "the hook's stderr is shown: {stderr}"
    );
    assert_eq!(f.current("web2").as_deref(), Some(v1.as_str()));
    assert_ne!(f.current("web1").as_deref(), Some(v1.as_str()));
}

#[test]
fn http_health_goes_through_the_ssh_connection() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in server.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, body) = if req.starts_with("GET /health ") {
                ("200 OK", "ok")
            } else {
                ("503 Service Unavailable", "down for maintenance")
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let f = fleet(
        2,
        &format!(
            "[health]\nhttp = \"http://127.0.0.1:{port}/health\"\nretries = 1\n[strategy]\ncanary = 0\nbatch = 2"
        ),
    );
    f.hoist(&["deploy"]).assert().success();
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    let f2 = fleet(
        1,
        &format!(
            "[health]\nhttp = \"http://127.0.0.1:{port}/nope\"\nretries = 1\n[strategy]\ncanary = 0\nbatch = 1"
        ),
    );
    let out = f2.hoist(&["deploy"]).assert().code(5).get_output().clone();
    let stderr = printed(&out);
    assert!(stderr.contains("503"), "{stderr}");
    assert!(stderr.contains("down for maintenance"), "{stderr}");
}

#[test]
fn a_second_concurrent_deploy_is_refused_and_names_the_owner() {
    let f = fleet(
        2,
        "[hooks]\nbefore_switch = [\"sleep 3\"]\n[strategy]\ncanary = 0\nbatch = 2",
    );
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"));
    first
        .current_dir(f.path())
        .args(["deploy"])
        .env("HOME", f.path().join("home"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = first.spawn().unwrap();
    // Wait for the lock to appear.
    let lock = f.deploy_path("web1").join(".hoist/lock");
    for _ in 0..100 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lock.exists(), "first deploy took the lock");
    let out = f.hoist(&["deploy"]).assert().code(4).get_output().clone();
    let stderr = printed(&out);
    assert!(stderr.contains(&whoami()), "names the owner: {stderr}");
    assert!(child.wait().unwrap().success());
    for host in f.host_names() {
        assert!(!f.locked(&host), "lock freed on {host}");
    }
    f.hoist(&["deploy"]).assert().success();
}

#[test]
fn sigint_mid_wave_leaves_whole_releases_and_no_lock() {
    let f = fleet(
        4,
        "[hooks]\nafter_switch = [\"sleep 1\"]\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 1",
    );
    let v1 = f.on_v1_then_v2();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(["deploy", "--json"])
        .env("HOME", f.path().join("home"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut lines = Vec::new();
    let mut sent = false;
    for line in reader {
        let line = line.unwrap();
        if !sent && line.contains("\"wave_started\"") && line.contains("\"wave\":2") {
            std::thread::sleep(Duration::from_millis(300));
            std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            sent = true;
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let events = ndjson((lines.join("\n") + "\n").as_bytes());
    assert_eq!(events.last().unwrap()["exit_code"], 130);
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    for host in f.host_names() {
        let current = f.current(&host).unwrap();
        assert!(current == v1 || current == v2, "{host} on a whole release");
        assert!(
            f.deploy_path(&host)
                .join("releases")
                .join(&current)
                .is_dir()
        );
        assert!(!f.locked(&host), "no lock left on {host}");
    }
    assert_eq!(
        f.current("web4").as_deref(),
        Some(v1.as_str()),
        "the last wave never started"
    );
}

#[test]
fn resume_carries_a_failed_deploy_on_with_the_same_release_id() {
    let f = fleet(
        3,
        "[hooks]\nbefore_switch = [\"test ! -e \\\"$HOIST_DEPLOY_TO/BAD\\\"\"]\n[strategy]\ncanary = 0\nbatch = 1\non_failure = \"stop\"",
    );
    f.on_v1_then_v2();
    let bad = f.mark("web2", "BAD");
    let out = f
        .hoist(&["deploy", "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v2 = ndjson(&out).last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(f.current("web1").as_deref(), Some(v2.as_str()));
    std::fs::remove_file(bad).unwrap();
    f.hoist(&["deploy", "--resume"]).assert().success();
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v2.as_str()), "{host}");
    }
}

#[test]
fn exec_reports_each_host_and_fails_when_one_does() {
    let f = fleet(3, "");
    f.mark("web2", "BAD");
    let out = f
        .hoist(&[
            "exec",
            "--",
            "test ! -e \"$PWD/BAD\" && echo fine || { echo broken; exit 7; }",
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let all = String::from_utf8_lossy(&out.stdout).to_string() + &printed(&out);
    assert!(all.contains("web1"), "{all}");
    assert!(all.contains("broken"), "{all}");
    assert!(all.contains('7'), "{all}");
}
