//! Safe rollouts on real OpenSSH hosts: canary, waves, health, hooks,
//! failure limits, automatic rollback, the fleet lock, interruption, resume.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::fleet::{Fleet, HEALTH, SshSetup};
use crate::support::netns::{self, Netns};
use crate::support::project::{
    assert_every_host_was_sent_bytes, ndjson, phase_at, position, printed, said, times_in, whoami,
};
use crate::support::sshd::{Sshd, SshdOptions};

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
    let events = f.events(&["deploy", "--json"], 5);
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

/// An HTTP server for health probes that counts its requests: 200 for
/// GET /health, 503 for anything else. Started inside `ns`, only processes
/// in that namespace (the hosts' sshd) can reach it.
struct HealthServer {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HealthServer {
    fn start(ns: Option<&Netns>) -> HealthServer {
        let ns = ns.map(|ns| ns.name.clone());
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopped) = (hits.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Some(ns) = ns {
                netns::enter(&ns);
            }
            let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            server.set_nonblocking(true).unwrap();
            tx.send(server.local_addr().unwrap().port()).unwrap();
            while !stopped.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = server.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                counter.fetch_add(1, Ordering::SeqCst);
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
        let port = rx.recv().unwrap();
        HealthServer { port, hits, stop }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How many direct-tcpip channels (port forwards) to 127.0.0.1:`port` a
/// host's sshd opened; its log says so at DEBUG1.
fn forwarded_to(server: &Sshd, port: u16) -> usize {
    let target = format!("target 127.0.0.1 port {port}");
    server
        .log()
        .lines()
        .filter(|l| l.contains("server_request_direct_tcpip") && l.contains(&target))
        .count()
}

/// Two hosts probed over HTTP, then one whose probe gets a 503; every probe
/// the server answers must have come through a host's own sshd.
fn http_health_through_the_hosts(ns: Option<&Netns>) {
    let server = HealthServer::start(ns);
    let port = server.port;
    if ns.is_some() {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the health server must not be reachable from outside the namespace"
        );
    }
    let setup = || SshSetup {
        sshd: SshdOptions {
            log_level: Some("DEBUG1".into()),
            ..SshdOptions::default()
        },
        netns: ns,
        ..SshSetup::default()
    };
    let f = Fleet::ssh_with(2, setup())
        .toml(&format!(
            "[health]\nhttp = \"http://127.0.0.1:{port}/health\"\nretries = 1\n[strategy]\ncanary = 0\nbatch = 2"
        ))
        .write();
    f.hoist(&["deploy"]).assert().success();
    assert!(server.hits() >= 2);
    let forwarded: Vec<usize> = f.servers().iter().map(|s| forwarded_to(s, port)).collect();
    assert!(
        forwarded.iter().all(|&n| n >= 1),
        "each host's sshd forwarded its probe: {forwarded:?}"
    );
    assert_eq!(
        forwarded.iter().sum::<usize>(),
        server.hits(),
        "every request the server saw came through a host's sshd"
    );

    let f2 = Fleet::ssh_with(1, setup())
        .toml(&format!(
            "[health]\nhttp = \"http://127.0.0.1:{port}/nope\"\nretries = 1\n[strategy]\ncanary = 0\nbatch = 1"
        ))
        .write();
    let out = f2.hoist(&["deploy"]).assert().code(5).get_output().clone();
    let stderr = printed(&out);
    assert!(
        stderr.contains(&format!(
            "GET http://127.0.0.1:{port}/nope answered 503 Service Unavailable"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("down for maintenance"), "{stderr}");
    assert!(
        forwarded_to(&f2.servers()[0], port) >= 1,
        "the 503 came through web1's sshd"
    );
}

#[test]
fn http_health_goes_through_the_ssh_connection() {
    http_health_through_the_hosts(None);
}

#[test]
fn http_health_reaches_a_server_only_the_hosts_can_reach() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!(
                "skipping: cannot make a network namespace ({why}); http_health_goes_through_the_ssh_connection checks the sshd logs instead"
            );
            return;
        }
    };
    http_health_through_the_hosts(Some(&ns));
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
        // Mid-wave 2: web2 runs its one-second hook, web3 has just got its
        // upload ahead of wave 3.
        if !sent && line.contains("\"phase\":\"ready\"") && line.contains("\"web3\"") {
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
    // web3's wave never ran: its upload was taken back.
    for host in ["web3", "web4"] {
        f.assert_holds_nothing_of(host, &v2);
    }
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
    let events = f.events(
        &[
            "exec",
            "--json",
            "--",
            "test ! -e \"$PWD/BAD\" && echo fine || { echo broken; exit 7; }",
        ],
        1,
    );
    let exit_code = |host: &str| {
        events
            .iter()
            .find(|e| e["event"] == "row" && e["table"] == "exec" && e["host"] == host)
            .unwrap_or_else(|| panic!("no exec row for {host}"))["exit_code"]
            .clone()
    };
    let said = |host: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == "host_output" && e["host"] == host)
            .map(|e| e["line"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(exit_code("web1"), 0);
    assert_eq!(said("web1"), ["fine"]);
    assert_eq!(said("web2"), ["broken"]);
    assert_eq!(
        exit_code("web2"),
        7,
        "the exec row carries web2's own exit code"
    );
    assert_eq!(exit_code("web3"), 0);
    assert_eq!(events.last().unwrap()["exit_code"], 1);
}

/// Three waves of one host, no pause between them, and an after_switch
/// hook that takes a second: the time the next wave's host gets its upload.
fn three_waves_of_one() -> (Fleet, String) {
    let f = fleet(
        3,
        &format!(
            "{HEALTH}\n[hooks]\nafter_switch = [\"sleep 1\"]\n[strategy]\ncanary = 0\nbatch = 1"
        ),
    );
    let v1 = f.on_v1_then_v2();
    (f, v1)
}

#[test]
fn each_batch_wave_uploads_while_the_one_before_it_switches() {
    let (f, _) = three_waves_of_one();
    let events = f.events(&["deploy", "--json"], 0);
    let wave = |n: u64, event: &str| position(&events, |e| e["event"] == event && e["wave"] == n);
    for (host, during) in [("web2", 1), ("web3", 2)] {
        let upload = phase_at(&events, host, "upload");
        assert!(
            upload > wave(during, "wave_started") && upload < wave(during, "wave_done"),
            "{host} uploaded during wave {during}: {events:#?}"
        );
        // Only once the host of that wave had its own upload.
        let before = ["web1", "web2"][during as usize - 1];
        assert!(phase_at(&events, before, "switch") < upload, "{events:#?}");
        assert!(phase_at(&events, host, "ready") < wave(during + 1, "wave_started"));
        assert!(wave(during + 1, "wave_started") < phase_at(&events, host, "switch"));
        assert_eq!(
            times_in(&events, host, "upload"),
            1,
            "{host}: not uploaded again in its wave"
        );
        assert_eq!(f.read_current(host, "README"), "v2");
    }
    assert_every_host_was_sent_bytes(&events);
}

#[test]
fn a_wave_that_fails_takes_back_what_the_next_wave_was_sent() {
    let (f, v1) = three_waves_of_one();
    f.mark("web1", "FAIL");
    let events = f.events(&["deploy", "--json"], 5);
    // web2 had its release while web1 ran its hook; web1's health check
    // failed, web2's wave never ran, and its release was taken back.
    phase_at(&events, "web2", "ready");
    assert!(said(&events, "taking back"), "{events:#?}");
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    for host in ["web1", "web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
    }
    for host in ["web2", "web3"] {
        f.assert_holds_nothing_of(host, &v2);
    }
}
