//! Regression tests for faults that broke hoist's promises (issue 13): each
//! is named after what it pins.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::project::{Project, ndjson, printed, whoami};

/// The hoist binary as a plain process (to run it in the background).
fn hoist_bin(p: &Project, args: &[&str]) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hoist"));
    cmd.current_dir(p.path())
        .args(args)
        .env("HOME", p.path().join("home"))
        .env("USER", whoami())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("HOIST_CONFIG")
        .stdin(Stdio::null());
    cmd
}

/// Writes `known_hosts` (these lines) and deploy.toml with an [ssh] table
/// logging in with `key`, plus `extra` [ssh] lines.
fn over_ssh(
    p: Project,
    key: &crate::support::sshd::ClientKey,
    known: &[String],
    extra: &str,
) -> Project {
    std::fs::write(p.path().join("known_hosts"), known.join("\n") + "\n").unwrap();
    p.write_with_ssh(&format!(
        "user = \"{}\"\nidentity_files = [\"{}\"]\nknown_hosts = [\"known_hosts\"]\n{extra}",
        whoami(),
        key.path.display()
    ))
}

fn wait_for(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..200 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_rollback_started_during_a_deploy_answers_locked_not_disagree() {
    // The canary is on v3 while the rest wait on v2 during the pause: the
    // hosts disagree on a rollback target, but the held lock must answer first.
    let p = Project::new()
        .local_hosts(3)
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"4s\"\nbatch = 2")
        .artifact(&[("app.txt", "v1")])
        .write();
    p.hoist(&["deploy", "--yes"]).assert().success();
    let p = p.artifact(&[("app.txt", "v2")]).write();
    p.hoist(&["deploy", "--yes"]).assert().success();
    let p = p.artifact(&[("app.txt", "v3")]).write();
    let v2 = p.current("local2").unwrap();
    let mut deploy = hoist_bin(&p, &["deploy", "--yes", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the canary's switch", || {
        p.current("local1") != Some(v2.clone())
    });
    let out = p.hoist(&["rollback"]).assert().code(4).get_output().clone();
    let text = printed(&out);
    assert!(text.contains(&format!("locked by {}", whoami())), "{text}");
    assert!(
        text.contains("`hoist unlock`"),
        "says how to free it: {text}"
    );
    assert!(!text.contains("disagree"), "{text}");
    assert!(deploy.wait().unwrap().success());
}

#[test]
fn a_second_concurrent_rollback_answers_locked() {
    let p = Project::new()
        .local_hosts(2)
        .toml("[strategy]\ncanary = 0\n[hooks]\nafter_rollback = [\"sleep 3\"]")
        .artifact(&[("app.txt", "v1")])
        .write();
    p.hoist(&["deploy"]).assert().success();
    let p = p.artifact(&[("app.txt", "v2")]).write();
    p.hoist(&["deploy"]).assert().success();
    let mut first = hoist_bin(&p, &["rollback", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = p.deploy_path("local1").join(".hoist/lock");
    wait_for("the first rollback's lock", || lock.exists());
    let out = p
        .hoist(&["rollback", "--json"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let events = ndjson(&out.stdout);
    let summary = events.last().unwrap();
    assert_eq!(summary["exit_code"], 4);
    assert!(
        printed(&out).contains(&whoami()),
        "names the owner: {}",
        printed(&out)
    );
    assert!(first.wait().unwrap().success());
}

#[test]
fn a_name_that_never_resolves_fails_within_the_connect_timeout_and_nothing_waits_after() {
    // A name server that never answers, for the hoist process only: a mount
    // namespace in which /etc/resolv.conf names a UDP socket this test holds.
    if !crate::support::sshd::is_root() {
        eprintln!("skipped: needs root for a private mount namespace");
        return;
    }
    let probe = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        eprintln!("skipped: unshare -m is not allowed here");
        return;
    }
    let silent = std::net::UdpSocket::bind("127.0.0.99:53").expect("bind a silent name server");
    let p = Project::new()
        .toml("[hosts.web1]\naddress = \"web1.silent-dns.test\"\ndeploy_to = \"/srv/app\"")
        .artifact(&[("app.txt", "v1")])
        .write_with_ssh("connect_timeout = \"2s\"\nhost_key_checking = \"off\"");
    let resolv = p.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.99\noptions timeout:5 attempts:3\n",
    )
    .unwrap();
    for command in ["check", "deploy"] {
        let started = Instant::now();
        let out = Command::new("unshare")
            .args(["-m", "--", "sh", "-c"])
            .arg("mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"")
            .arg("sh")
            .arg(&resolv)
            .arg(assert_cmd::cargo::cargo_bin("hoist"))
            .arg(command)
            .current_dir(p.path())
            .env("HOME", p.path().join("home"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(3), "{}", printed(&out));
        assert!(
            printed(&out).contains("timed out after 2s"),
            "{}",
            printed(&out)
        );
        // The resolver alone would wait 15 s; 2 s of budget plus start-up.
        assert!(took < Duration::from_secs(8), "{command} took {took:?}");
    }
    drop(silent);
}

#[test]
fn a_directory_at_the_lock_path_blocks_deploy_and_rollback_until_forced_open() {
    let p = Project::new()
        .local_hosts(2)
        .toml("[strategy]\ncanary = 0")
        .artifact(&[("app.txt", "v1")])
        .write();
    p.hoist(&["deploy"]).assert().success();
    let lock = p.deploy_path("local2").join(".hoist/lock");
    std::fs::create_dir_all(lock.join("inside")).unwrap();
    let p = p.artifact(&[("app.txt", "v2")]).write();
    for command in ["deploy", "rollback"] {
        let out = p.hoist(&[command]).assert().code(4).get_output().clone();
        let text = printed(&out);
        assert!(
            text.contains(".hoist/lock is a directory")
                && text.contains("`hoist unlock --force` removes it"),
            "{command}: {text}"
        );
    }
    assert_eq!(p.releases("local1").len(), 1, "nothing was deployed");
    // A plain unlock is refused (it is no lock of ours); --force clears it.
    p.hoist(&["unlock"]).assert().code(4);
    assert!(lock.is_dir());
    p.hoist(&["unlock", "--force"]).assert().success();
    assert!(!lock.exists());
    p.hoist(&["deploy"]).assert().success();
}

#[test]
fn a_current_release_that_is_gone_is_marked_in_status_and_deploy_goes_on() {
    let p = Project::new()
        .local_hosts(2)
        .toml("[strategy]\ncanary = 0")
        .artifact(&[("app.txt", "v1")])
        .write();
    p.hoist(&["deploy"]).assert().success();
    let gone = p.current("local1").unwrap();
    std::fs::remove_dir_all(p.deploy_path("local1").join("releases").join(&gone)).unwrap();
    let rows = p.events(&["status", "--json"], 0);
    let row = rows
        .iter()
        .find(|e| e["event"] == "row" && e["host"] == "local1")
        .unwrap();
    assert_eq!(row["release"], serde_json::Value::Null);
    assert_eq!(row["marked"], true);
    assert!(
        row["error"].as_str().unwrap().contains("which is missing"),
        "{row}"
    );
    let p = p.artifact(&[("app.txt", "v2")]).write();
    let out = p.hoist(&["deploy"]).assert().success().get_output().clone();
    assert!(
        printed(&out).contains("which is missing"),
        "{}",
        printed(&out)
    );
    assert_eq!(p.read_current("local1", "app.txt"), "v2");
}

#[test]
fn a_failed_switch_is_reported_in_the_switch_phase() {
    let p = Project::new()
        .local_hosts(1)
        .toml("[strategy]\ncanary = 0")
        .artifact(&[("app.txt", "v1")])
        .write();
    // `current` as a real directory: the new link cannot replace it.
    std::fs::create_dir_all(p.deploy_path("local1").join("current/current")).unwrap();
    let out = p.hoist(&["deploy", "--json"]).assert().get_output().clone();
    let failed = ndjson(&out.stdout)
        .into_iter()
        .find(|e| e["event"] == "host_failed")
        .unwrap_or_else(|| panic!("no host_failed: {}", printed(&out)));
    assert_eq!(failed["phase"], "switch", "{failed}");
}

#[test]
fn leftovers_of_abandoned_uploads_are_cleared_by_the_next_run() {
    let p = Project::new()
        .local_hosts(1)
        .artifact(&[("app.txt", "v1")])
        .write();
    let tmp = p.deploy_path("local1").join(".hoist/tmp");
    std::fs::create_dir_all(tmp.join("20260101T000000Z-aaaaaaaa.deadbeef0001.d")).unwrap();
    std::fs::write(
        tmp.join("20260101T000000Z-aaaaaaaa.deadbeef0001.part"),
        vec![0u8; 65536],
    )
    .unwrap();
    p.hoist(&["deploy"]).assert().success();
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in .hoist/tmp: {left:?}");
}

/// Issue 13 finding 5 and issue 9 item 1: a deploy holds one session per
/// host, so `MaxSessions 1` deploys; a host that grants none fails `check`
/// and the deploy's preflight, naming MaxSessions, and nothing is written.
#[test]
fn max_sessions_1_deploys_and_max_sessions_0_fails_check_and_preflight() {
    use crate::support::sshd::{ClientKey, Sshd, SshdOptions};
    let key = ClientKey::ed25519();
    let options = |max| SshdOptions {
        max_sessions: Some(max),
        ..SshdOptions::default()
    };
    let one = Sshd::start_with(&[&key], &options(1));
    let none = Sshd::start_with(&[&key], &options(0));
    let host = |p: Project, sshd: &Sshd| {
        let known = [sshd.known_hosts_line()];
        over_ssh(
            p.ssh_host("web1", sshd.port, &sshd.root, ""),
            &key,
            &known,
            "connect_timeout = \"5s\"",
        )
    };
    let p = host(Project::new().artifact(&[("app.txt", "v1")]), &one);
    p.hoist(&["check"]).assert().success();
    p.hoist(&["deploy", "--yes"]).assert().success();
    assert!(p.current("web1").is_some());

    let p = host(Project::new().artifact(&[("app.txt", "v1")]), &none);
    let rows = p.events(&["check", "--json"], 3);
    let row = rows
        .iter()
        .find(|e| e["event"] == "row" && e["host"] == "web1")
        .unwrap();
    assert_eq!(row["ok"], false);
    assert!(
        row["problem"].as_str().unwrap().contains("MaxSessions"),
        "{row}"
    );
    let out = p
        .hoist(&["deploy", "--yes"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(printed(&out).contains("MaxSessions"), "{}", printed(&out));
    assert!(p.untouched("web1"), "nothing written");
}

#[test]
fn forty_names_for_one_sshd_with_default_max_startups_all_connect() {
    use crate::support::sshd::{ClientKey, Sshd, SshdOptions};
    let key = ClientKey::ed25519();
    let options = SshdOptions {
        max_startups: Some("10:30:100".into()),
        ..SshdOptions::default()
    };
    let sshd = Sshd::start_with(&[&key], &options);
    let mut p = Project::new().artifact(&[("app.txt", "v1")]);
    for i in 1..=40 {
        p = p.ssh_host(
            &format!("h{i}"),
            sshd.port,
            &sshd.root.join(format!("h{i}")),
            "",
        );
    }
    let p = p.toml("[strategy]\ncanary = 0\nbatch = \"100%\"\nparallel = 40");
    let p = over_ssh(p, &key, &[sshd.known_hosts_line()], "");
    let out = p.hoist(&["deploy", "--json"]).assert().get_output().clone();
    let summary = ndjson(&out.stdout).pop().unwrap();
    assert_eq!(summary["exit_code"], 0, "{}", printed(&out));
    assert_eq!(summary["ok"], 40);
}

#[test]
fn a_server_that_starts_listening_late_is_reached_by_connect_retries() {
    use crate::support::sshd::{ClientKey, Sshd};
    let key = ClientKey::ed25519();
    let sshd = Sshd::start(&[&key]);
    // A port that refuses connections for 1.5 s, then leads to the sshd.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = sshd.port;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        for client in listener.incoming().flatten() {
            let server = std::net::TcpStream::connect(("127.0.0.1", to)).unwrap();
            for (mut from, mut into) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    let p = Project::new()
        .artifact(&[("app.txt", "v1")])
        .ssh_host("web1", port, &sshd.root, "");
    let known =
        sshd.known_hosts_line()
            .replacen(&format!("]:{}", sshd.port), &format!("]:{port}"), 1);
    let p = over_ssh(p, &key, &[known], "connect_timeout = \"8s\"");
    let out = p.hoist(&["deploy", "--yes", "-v"]).assert().success();
    let text = printed(out.get_output());
    // -v shows each retry, with why the try before failed.
    assert!(text.contains("web1  connect retry 1/2 in "), "{text}");
    assert_eq!(p.read_current("web1", "app.txt"), "v1");
}
