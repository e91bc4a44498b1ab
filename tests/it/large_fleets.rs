//! Fleets where a host or two is always down or flapping (issue 12):
//! connect retries, `max_unreachable`, and `--resume` reaching the hosts
//! a deploy went on without.

use crate::support::fleet::Fleet;
use crate::support::project::{ndjson, printed, said, summary_host};
use crate::support::sshd::ClientKey;

fn events_of(out: &std::process::Output) -> Vec<serde_json::Value> {
    ndjson(&out.stdout)
}

#[test]
fn a_wrong_host_key_is_refused_at_once_without_a_retry() {
    let f = Fleet::ssh(1)
        .ssh_settings("connect_retries = 2")
        .toml("[strategy]\ncanary = 0")
        .write();
    // known_hosts names web1's address with a key it does not have.
    let other = ClientKey::ed25519();
    let line = format!("[127.0.0.1]:{} {}\n", f.server("web1").port, other.public);
    std::fs::write(f.known_hosts(), line).unwrap();
    let out = f.hoist(&["deploy", "--json", "-v"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", printed(&out));
    let events = events_of(&out);
    assert!(
        !events.iter().any(|e| e["event"] == "connect_retry"),
        "a host key mismatch is never retried: {}",
        printed(&out)
    );
    let summary = events.last().unwrap();
    let web1 = summary_host(summary, "web1");
    assert_eq!(web1["result"], "failed");
    assert!(
        web1["error"].as_str().unwrap().contains("does not match"),
        "{web1}"
    );
    assert!(f.untouched("web1"));
}

fn three_with_limit(limit: &str) -> Fleet {
    Fleet::ssh(3)
        .ssh_settings("connect_retries = 1")
        .toml(&format!(
            "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nmax_unreachable = {limit}"
        ))
        .write()
}

#[test]
fn max_unreachable_goes_on_without_a_stopped_host_and_resume_reaches_it() {
    let mut f = three_with_limit("1");
    f.server_mut("web3").stop();

    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let events = events_of(&out);
    let retried = events
        .iter()
        .any(|e| e["event"] == "connect_retry" && e["host"] == "web3");
    assert!(retried, "a refused connect is retried: {}", printed(&out));
    let summary = events.last().unwrap();
    assert_eq!(summary["unreachable"], 1, "{summary}");
    assert_eq!(summary["ok"], 2, "{summary}");
    assert_eq!(summary_host(summary, "web3")["result"], "unreachable");
    let release = summary["release"].as_str().unwrap().to_string();
    for host in ["web1", "web2"] {
        assert_eq!(f.current(host).as_deref(), Some(release.as_str()), "{host}");
    }
    assert!(f.untouched("web3"), "an unreachable host is never touched");
    let human = String::from_utf8_lossy(&out.stderr);
    assert!(human.contains("unreachable"), "{human}");

    // status keeps listing it, marked.
    let out = f.hoist(&["status", "--json"]).output().unwrap();
    let rows: Vec<serde_json::Value> = events_of(&out)
        .into_iter()
        .filter(|e| e["event"] == "row")
        .collect();
    let web3 = rows.iter().find(|r| r["host"] == "web3").unwrap();
    assert_eq!(web3["reachable"], false, "{web3}");
    assert_eq!(web3["marked"], true, "{web3}");

    f.server_mut("web3").start_again();
    let out = f.hoist(&["deploy", "--resume", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let summary = events_of(&out).pop().unwrap();
    assert_eq!(summary["release"], release.as_str());
    for host in ["web1", "web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(release.as_str()), "{host}");
    }
}

#[test]
fn more_unreachable_hosts_than_max_unreachable_stop_the_deploy_untouched() {
    let mut f = three_with_limit("1");
    f.server_mut("web2").stop();
    f.server_mut("web3").stop();
    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", printed(&out));
    assert!(f.untouched("web1"), "nothing is touched");
    let summary = events_of(&out).pop().unwrap();
    assert_eq!(summary_host(&summary, "web2")["result"], "failed");
}

/// 50 hosts (one sshd, one address each), and `hoist check --json` run
/// under `ulimit` with `limits` (e.g. `-Sn 40`).
fn check_fifty_hosts_under(limits: &str) -> std::process::Output {
    let f = Fleet::ssh(1);
    let port = f.server("web1").port;
    let deploy_to = f.deploy_path("web1");
    let extra: String = (2..=50)
        .map(|i| {
            format!(
                "[hosts.web{i}]\naddress = \"127.0.0.1\"\nport = {port}\ndeploy_to = \"{}\"\n",
                deploy_to.display()
            )
        })
        .collect();
    let f = f.toml(&extra).write();
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit {limits} && exec \"$0\" \"$@\""))
        .arg(assert_cmd::cargo::cargo_bin("hoist"))
        .args(["check", "--json"])
        .current_dir(f.path())
        .env("HOME", f.path().join("home"))
        .env("USER", crate::support::project::whoami())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("HOIST_CONFIG")
        .env_remove("HOIST_ENV")
        .output()
        .unwrap()
}

#[test]
fn a_fleet_past_the_soft_limit_on_open_files_is_reached_whole() {
    // Under a soft limit of 40 open files: each connection holds a socket
    // for the whole run, so without raising the limit the hosts past it
    // fail as "too many open files".
    let out = check_fifty_hosts_under("-Sn 40");
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let reached = events_of(&out)
        .iter()
        .filter(|e| e["event"] == "row" && e["ok"] == true && e["connect"] == "ok")
        .count();
    assert_eq!(reached, 50, "{text}");
    assert!(!said(&events_of(&out), "open files"), "{text}");
}

#[test]
fn a_hard_limit_on_open_files_too_low_for_the_fleet_is_said_with_what_to_raise() {
    // 50 hosts need about 356 open files; the hard limit is 128, so the
    // soft one cannot be raised that far: hoist says so before it connects.
    let out = check_fifty_hosts_under("-n 128");
    let text = printed(&out);
    let events = events_of(&out);
    assert!(
        said(&events, "50 hosts need about 356 open files"),
        "{text}"
    );
    assert!(said(&events, "ulimit -n 356"), "{text}");
    let warned = events.iter().any(|e| {
        e["event"] == "message"
            && e["level"] == "warn"
            && e["text"].as_str().unwrap_or("").contains("hard limit 128")
    });
    assert!(warned, "a warning, with the hard limit: {text}");
}
