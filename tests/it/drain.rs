//! `hooks.drain_local` / `undrain_local` / `drain_wait` on real OpenSSH
//! hosts: each host leaves the load balancer before it is touched and
//! returns after its health check, or once it is back on its old release.

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::printed;

/// Local drain hooks and remote switch hooks that all append
/// `<what> <host> <unix seconds>` to one log file (the hosts are sshd
/// processes on this machine, so they reach it too).
fn fleet(n: usize, drain: &str, strategy: &str) -> Fleet {
    let f = Fleet::ssh(n);
    let log = f.path().join("order.log");
    let log = log.display();
    let note = |what: &str| format!("echo {what} $HOIST_HOST $(date +%s) >> {log}");
    let hooks = format!(
        "[hooks]\ndrain_local = [\"{drain}\", \"{}\"]\nundrain_local = [\"{}\"]\ndrain_wait = \"1s\"\nbefore_switch = [\"{}\"]\nafter_switch = [\"{}\"]\nafter_rollback = [\"{}\"]\n",
        note("drain"),
        note("undrain"),
        note("before_switch"),
        note("after_switch"),
        note("after_rollback"),
    );
    f.toml(&format!("{HEALTH}\n{hooks}{strategy}")).write()
}

/// The log, as (what, host, seconds), with the v1 deploy's lines dropped.
fn log_since(f: &Fleet, skip: usize) -> Vec<(String, String, i64)> {
    std::fs::read_to_string(f.path().join("order.log"))
        .unwrap_or_default()
        .lines()
        .skip(skip)
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            (parts[0].into(), parts[1].into(), parts[2].parse().unwrap())
        })
        .collect()
}

fn log_len(f: &Fleet) -> usize {
    log_since(f, 0).len()
}

/// The unix time the host's journal records its switch to `release` at.
fn switched_at(f: &Fleet, host: &str, release: &str) -> i64 {
    let entry = f
        .journal(host)
        .into_iter()
        .find(|e| e["event"] == "deploy" && e["release"] == release)
        .unwrap_or_else(|| panic!("{host}: no switch to {release} in its journal"));
    chrono::DateTime::parse_from_rfc3339(entry["ts"].as_str().unwrap())
        .unwrap()
        .timestamp()
}

fn what_for(log: &[(String, String, i64)], host: &str) -> Vec<String> {
    log.iter()
        .filter(|(_, h, _)| h == host)
        .map(|(w, _, _)| w.clone())
        .collect()
}

#[test]
fn each_host_is_drained_before_its_switch_and_undrained_after_its_health() {
    let f = fleet(3, "true", "[strategy]\ncanary = 0\nbatch = 1");
    f.on_v1_then_v2();
    let skip = log_len(&f);
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v2 = f.current("web1").unwrap();
    let log = log_since(&f, skip);
    let hosts: Vec<&str> = log.iter().map(|(_, h, _)| h.as_str()).collect();
    let mut seen = hosts.clone();
    seen.dedup();
    assert_eq!(
        seen,
        ["web1", "web2", "web3"],
        "one host after the other: {log:?}"
    );
    for host in ["web1", "web2", "web3"] {
        assert_eq!(
            what_for(&log, host),
            ["drain", "before_switch", "after_switch", "undrain"],
            "{host}"
        );
        let at = |what: &str| {
            log.iter()
                .find(|(w, h, _)| w == what && h == host)
                .unwrap()
                .2
        };
        let switch = switched_at(&f, host, &v2);
        // drain_wait = 1s: the switch is at least a second after the drain.
        assert!(
            at("drain") < switch,
            "{host}: drained, waited, then switched"
        );
        assert!(
            switch <= at("undrain"),
            "{host}: undrained after its switch"
        );
    }
}

#[test]
fn a_failing_drain_leaves_the_host_untouched_and_stops_the_rollout() {
    let f = fleet(
        3,
        "test $HOIST_HOST != web2 || test ! -e no-drain",
        "[strategy]\ncanary = 0\nbatch = 1",
    );
    let v1 = f.on_v1_then_v2();
    std::fs::write(f.path().join("no-drain"), "").unwrap();
    let skip = log_len(&f);
    let out = f
        .hoist(&["deploy", "--yes"])
        .assert()
        .code(5)
        .get_output()
        .clone();
    let said = printed(&out);
    assert!(
        said.contains("drain_local hook"),
        "the failing hook is named: {said}"
    );
    let log = log_since(&f, skip);
    // web2 never got past its drain: no hook ran on it, it goes back in.
    assert_eq!(what_for(&log, "web2"), ["undrain"], "{log:?}");
    assert_eq!(f.current("web2").as_deref(), Some(v1.as_str()));
    let v2_on_web1 = f
        .journal("web1")
        .iter()
        .filter(|e| e["event"] == "deploy")
        .count();
    assert_eq!(v2_on_web1, 2, "web1 went to v2 first");
    // The failure policy (rollback): web1 goes back, web3 is never started.
    assert_eq!(f.current("web1").as_deref(), Some(v1.as_str()));
    assert!(what_for(&log, "web3").is_empty(), "{log:?}");
    assert_eq!(f.current("web3").as_deref(), Some(v1.as_str()));
}

#[test]
fn a_host_failing_its_health_stays_drained_until_it_is_back_on_its_release() {
    let f = fleet(2, "true", "[strategy]\ncanary = 0\nbatch = 2");
    let v1 = f.on_v1_then_v2();
    f.mark("web2", "FAIL");
    let skip = log_len(&f);
    f.hoist(&["deploy", "--yes"]).assert().code(5);
    let log = log_since(&f, skip);
    assert_eq!(
        what_for(&log, "web2"),
        [
            "drain",
            "before_switch",
            "after_switch",
            "after_rollback",
            "undrain"
        ],
        "{log:?}"
    );
    assert_eq!(f.current("web2").as_deref(), Some(v1.as_str()));
}

#[test]
fn a_host_back_in_the_pool_is_drained_again_around_its_switch_back() {
    // web1's wave passes and web1 is undrained; web2 fails its health
    // check: web1 goes back too, out of the pool while it restarts.
    let f = fleet(
        3,
        "test $HOIST_HOST != web3 || test ! -e no-drain",
        "[strategy]\ncanary = 0\nbatch = 1",
    );
    let v1 = f.on_v1_then_v2();
    f.mark("web2", "FAIL");
    let skip = log_len(&f);
    f.hoist(&["deploy", "--yes"]).assert().code(5);
    let log = log_since(&f, skip);
    assert_eq!(
        what_for(&log, "web1"),
        [
            "drain",
            "before_switch",
            "after_switch",
            "undrain",
            "drain",
            "after_rollback",
            "undrain"
        ],
        "{log:?}"
    );
    // web2 stayed drained from its failure until it was back: drained once.
    assert_eq!(
        what_for(&log, "web2"),
        [
            "drain",
            "before_switch",
            "after_switch",
            "after_rollback",
            "undrain"
        ],
        "{log:?}"
    );
    assert_eq!(f.current("web1").as_deref(), Some(v1.as_str()));

    // `hoist rollback` drains each host around its switch back; a drain
    // that fails is said, and that host goes back all the same.
    std::fs::remove_file(f.deploy_path("web2").join("FAIL")).unwrap();
    f.hoist(&["deploy", "--yes"]).assert().success();
    std::fs::write(f.path().join("no-drain"), "").unwrap();
    let skip = log_len(&f);
    let out = f
        .hoist(&["rollback", "--yes"])
        .assert()
        .success()
        .get_output()
        .clone();
    let said = printed(&out);
    let log = log_since(&f, skip);
    for host in ["web1", "web2"] {
        assert_eq!(
            what_for(&log, host),
            ["drain", "after_rollback", "undrain"],
            "{host}: {log:?}"
        );
    }
    assert_eq!(
        what_for(&log, "web3"),
        ["after_rollback", "undrain"],
        "{log:?}"
    );
    assert!(
        said.contains("drain_local") && said.contains("goes back all the same"),
        "{said}"
    );
    for host in ["web1", "web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
    }
}

#[test]
fn plan_shows_the_drain_only_when_it_is_set() {
    let f = fleet(2, "true", "[strategy]\ncanary = 0\nbatch = 1");
    let out = f.hoist(&["plan"]).assert().success().get_output().clone();
    let said = printed(&out);
    assert!(
        said.contains("drain: per host, drain_local: true && echo drain")
            && said.contains("then wait 1s")
            && said.contains("undrain_local: echo undrain"),
        "{said}"
    );
    let plain = Fleet::ssh(1).toml(HEALTH).write();
    let out = plain
        .hoist(&["plan"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(!printed(&out).contains("drain_local"));
}

/// Per-host drain through the nginx harness's `./lb drain|enable HOST`.
const LB_DRAIN: &str = "[hooks]\nafter_switch = [\"sh bin/restart\"]\nafter_rollback = [\"sh bin/restart\"]\ndrain_local = [\"./lb drain $HOIST_HOST\"]\nundrain_local = [\"./lb enable $HOIST_HOST\"]\n";

#[test]
fn a_rolling_deploy_of_four_hosts_with_per_host_drain_loses_no_request() {
    use crate::support::lb::{APP, APP_HEALTH, Apps, Load, Nginx, unavailable};
    if let Some(why) = unavailable() {
        eprintln!("per-host drain behind nginx: skipped: {why}");
        return;
    }
    let mut files: Vec<(&str, &str)> = APP.to_vec();
    files.push(("README", "v1"));
    let f = Fleet::ssh(4)
        .artifact(&files)
        .toml(&format!(
            "{LB_DRAIN}{APP_HEALTH}[strategy]\ncanary = 0\nbatch = 2\n"
        ))
        .write();
    let (backends, _apps) = Apps::ports_for(&f);
    let nginx = Nginx::start(f.path(), &backends, &[]);
    let deployed = f.hoist(&["deploy", "--yes"]).output().unwrap();
    assert!(deployed.status.success(), "{}", printed(&deployed));
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let before = nginx.log().len();
    let load = Load::start(nginx.port, std::time::Duration::from_secs(180));
    let out = f.hoist(&["deploy", "--yes"]).output().unwrap();
    let seen = load.stop();
    let said = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        seen.failed.is_empty(),
        "{} of {} requests failed, first {:?}\n{said}",
        seen.failed.len(),
        seen.failed.len() + seen.ok,
        &seen.failed[..seen.failed.len().min(5)]
    );
    assert!(seen.ok > 20, "the load ran ({} requests)", seen.ok);
    assert_eq!(seen.releases.last().map(String::as_str), Some("v2"));
    let calls: Vec<String> = nginx.log()[before..]
        .iter()
        .map(|l| l.split(" result=").next().unwrap().to_string())
        .collect();
    for host in f.host_names() {
        let drain = calls.iter().position(|c| *c == format!("drain {host}"));
        let enable = calls.iter().position(|c| *c == format!("enable {host}"));
        assert!(
            matches!((drain, enable), (Some(d), Some(e)) if d < e),
            "{host}: drained, then enabled: {calls:?}"
        );
    }
    assert_eq!(
        calls.len(),
        8,
        "one drain and one enable per host: {calls:?}"
    );
}
