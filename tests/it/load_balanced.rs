//! Behind a real load balancer (issue 22): a Python app on three real sshd
//! hosts, restarted by their hooks, behind Debian's nginx with passive
//! health checks, under a steady load of about 50 requests a second. A
//! rolling deploy with drain/enable batch hooks, a manual rolling rollback
//! and the automatic rollbacks after a failure lose no request.

use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::lb::{APP, APP_HEALTH, Apps, Load, Nginx, Seen, free_port, unavailable};
use crate::support::project::printed;

/// The drain/enable recipe of the README.
const DRAIN_ENABLE: &str = "[hooks]\nafter_switch = [\"sh bin/restart\"]\nafter_rollback = [\"sh bin/restart\"]\nbefore_batch_local = [\"./lb drain $HOIST_BATCH_HOSTS\"]\nafter_batch_local = [\"./lb enable $HOIST_BATCH_HOSTS\"]\n";

/// A deploy never waits longer than this under load.
const BOUND: Duration = Duration::from_secs(180);

/// Three hosts (canary web1, then web2, then web3) on v1 behind nginx,
/// the artifact at v2. `None` (said why) when nginx cannot be had.
fn site(test: &str) -> Option<(Fleet, Nginx, Apps)> {
    if let Some(why) = unavailable() {
        eprintln!("{test}: skipped: {why}");
        return None;
    }
    let mut files: Vec<(&str, &str)> = APP.to_vec();
    files.push(("README", "v1"));
    let f = Fleet::ssh(3)
        .artifact(&files)
        .toml(&format!(
            "{DRAIN_ENABLE}{APP_HEALTH}[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 1\n"
        ))
        .write();
    let mut backends = Vec::new();
    let mut pidfiles = Vec::new();
    for host in f.host_names() {
        let port = free_port();
        let deploy_to = f.deploy_path(&host);
        std::fs::create_dir_all(&deploy_to).unwrap();
        std::fs::write(deploy_to.join("port"), port.to_string()).unwrap();
        pidfiles.push(deploy_to.join("app.pid"));
        backends.push((host, port));
    }
    let apps = Apps { pidfiles };
    let nginx = Nginx::start(f.path(), &backends, &[]);
    let deployed = f.hoist(&["deploy", "--yes"]).output().unwrap();
    assert!(deployed.status.success(), "{}", printed(&deployed));
    assert_eq!(nginx.get("/").unwrap(), (200, "v1".to_string()));
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    Some((f, nginx, apps))
}

/// Runs hoist with `args` under load; returns its exit code, what it
/// printed and what the load saw.
fn under_load(f: &Fleet, nginx: &Nginx, args: &[&str]) -> (Option<i32>, String, Seen) {
    let load = Load::start(nginx.port, BOUND);
    let out = f.hoist(args).output().unwrap();
    let seen = load.stop();
    (out.status.code(), printed(&out), seen)
}

fn no_request_lost(seen: &Seen, what: &str, printed: &str) {
    assert!(
        seen.failed.is_empty(),
        "{what}: {} of {} requests failed, first at {:?}\n{printed}",
        seen.failed.len(),
        seen.failed.len() + seen.ok,
        &seen.failed[..seen.failed.len().min(5)]
    );
    assert!(seen.ok > 20, "{what}: the load ran ({} requests)", seen.ok);
}

/// `./lb` calls as (action and hosts, HOIST_RESULT), in order, from line `from`.
fn lb_calls(nginx: &Nginx, from: usize) -> Vec<(String, String)> {
    nginx.log()[from..]
        .iter()
        .map(|line| {
            let (call, rest) = line.split_once(" result=").unwrap();
            let result = rest.split_whitespace().next().unwrap_or("");
            let result = if result.starts_with("failed=") {
                ""
            } else {
                result
            };
            (call.to_string(), result.to_string())
        })
        .collect()
}

fn calls(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(c, r)| (c.to_string(), r.to_string()))
        .collect()
}

#[test]
fn a_rolling_deploy_with_drain_and_enable_hooks_loses_no_request() {
    let Some((f, nginx, _apps)) = site("rolling deploy") else {
        return;
    };
    let before = nginx.log().len();
    let (code, printed, seen) = under_load(&f, &nginx, &["deploy", "--yes"]);
    assert_eq!(code, Some(0), "{printed}");
    no_request_lost(&seen, "the rolling deploy", &printed);
    assert_eq!(seen.releases.last().map(String::as_str), Some("v2"));
    assert_eq!(
        lb_calls(&nginx, before),
        calls(&[
            ("drain web1", ""),
            ("enable web1", "ok"),
            ("drain web2", ""),
            ("enable web2", "ok"),
            ("drain web3", ""),
            ("enable web3", "ok"),
        ])
    );
    // The address beside each host: its SSH address.
    assert!(
        nginx.log()[before].contains("addresses=127.0.0.1 "),
        "{:?}",
        nginx.log()
    );
}

#[test]
fn a_manual_rollback_goes_back_in_waves_and_loses_no_request() {
    let Some((f, nginx, _apps)) = site("manual rollback") else {
        return;
    };
    f.hoist(&["deploy", "--yes"]).assert().success();
    assert_eq!(nginx.get("/").unwrap(), (200, "v2".to_string()));
    let before = nginx.log().len();
    let (code, printed, seen) = under_load(&f, &nginx, &["rollback", "--yes"]);
    assert_eq!(code, Some(0), "{printed}");
    no_request_lost(&seen, "the manual rollback", &printed);
    assert_eq!(seen.releases.last().map(String::as_str), Some("v1"));
    assert_eq!(
        lb_calls(&nginx, before),
        calls(&[
            ("drain web1", ""),
            ("enable web1", "rolled_back"),
            ("drain web2", ""),
            ("enable web2", "rolled_back"),
            ("drain web3", ""),
            ("enable web3", "rolled_back"),
        ])
    );
}

#[test]
fn an_all_at_once_rollback_restarts_every_host_together() {
    // What `hoist rollback` did to this site before it went in waves, and
    // what --all-at-once still does: the harness sees the outage.
    let Some((f, nginx, _apps)) = site("all-at-once rollback") else {
        return;
    };
    f.hoist(&["deploy", "--yes"]).assert().success();
    let before = nginx.log().len();
    let (code, printed, seen) = under_load(&f, &nginx, &["rollback", "--yes", "--all-at-once"]);
    assert_eq!(code, Some(0), "{printed}");
    assert!(
        !seen.failed.is_empty(),
        "every upstream restarted at once, yet no request failed: {seen:?}"
    );
    assert!(
        nginx.log().len() == before,
        "--all-at-once runs no batch hook"
    );
    for host in f.host_names() {
        assert_eq!(f.read_current(&host, "README"), "v1");
    }
}

#[test]
fn a_canary_that_fails_goes_back_before_it_is_enabled_and_no_request_is_lost() {
    let Some((f, nginx, _apps)) = site("failed canary") else {
        return;
    };
    f.mark("web1", "FAIL");
    let before = nginx.log().len();
    let (code, printed, seen) = under_load(&f, &nginx, &["deploy", "--yes"]);
    assert_eq!(code, Some(5), "{printed}");
    no_request_lost(&seen, "the canary's rollback", &printed);
    assert_eq!(
        lb_calls(&nginx, before),
        calls(&[("drain web1", ""), ("enable web1", "rolled_back")])
    );
    assert_eq!(f.read_current("web1", "README"), "v1");
}

#[test]
fn a_failure_in_the_last_wave_rolls_back_in_reverse_order_and_no_request_is_lost() {
    let Some((f, nginx, _apps)) = site("failed last wave") else {
        return;
    };
    f.mark("web3", "FAIL");
    let before = nginx.log().len();
    let (code, printed, seen) = under_load(&f, &nginx, &["deploy", "--yes"]);
    assert_eq!(code, Some(5), "{printed}");
    no_request_lost(&seen, "the rollback after the last wave", &printed);
    assert_eq!(
        lb_calls(&nginx, before),
        calls(&[
            ("drain web1", ""),
            ("enable web1", "ok"),
            ("drain web2", ""),
            ("enable web2", "ok"),
            ("drain web3", ""),
            ("enable web3", "rolled_back"),
            ("drain web2", ""),
            ("enable web2", "rolled_back"),
            ("drain web1", ""),
            ("enable web1", "rolled_back"),
        ])
    );
    for host in f.host_names() {
        assert_eq!(f.read_current(&host, "README"), "v1", "{host}");
    }
}
