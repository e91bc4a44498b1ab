//! Behind a real load balancer (issue 22): a Python app on three real sshd
//! hosts, restarted by their hooks, behind Debian's nginx with passive
//! health checks, under a steady load of about 50 requests a second. A
//! rolling deploy with drain/enable batch hooks, a manual rolling rollback
//! and the automatic rollbacks after a failure lose no request; so do a
//! blue-green deploy, its rollback, and a SIGTERM at each point of one.

use std::process::Command;
use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::lb::{APP, APP_HEALTH, Apps, Load, Nginx, Seen, unavailable};
use crate::support::project::{follow, printed};

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
    let (backends, apps) = Apps::ports_for(&f);
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

/// What hoist writes in its log once it took a signal in.
const NOTICED: &str = "interrupted: starting nothing new";

/// A shell snippet: when `marker` (in the project) is there, take it and
/// send SIGTERM to hoist (`pid`, a shell expression), then wait until hoist
/// noticed, so the signal lands exactly at this point.
fn term_at(proj: &str, marker: &str, pid: &str) -> String {
    format!(
        "{{ test ! -e {proj}/{marker} || ! rm {proj}/{marker} 2>/dev/null || {{ kill -TERM {pid} && until grep -qs '{NOTICED}' {proj}/term.log; do sleep 0.05; done; }}; }}"
    )
}

/// Four hosts behind nginx, blue (web1, web2) idle on v1 and green (web3,
/// web4) live on v2, the artifact at v3. Markers in the project send a
/// SIGTERM from a hook: `TERM_AFTER_BATCH` (once the idle colour passed
/// health), `TERM_IN_SWITCH` (in `switch_local`, before `./lb use`),
/// `TERM_IN_PROBE` (in the health check once traffic is on the colour).
fn blue_green_site(test: &str) -> Option<(Fleet, Nginx, Apps)> {
    if let Some(why) = unavailable() {
        eprintln!("{test}: skipped: {why}");
        return None;
    }
    let mut files: Vec<(&str, &str)> = APP.to_vec();
    files.push(("README", "v1"));
    let f = Fleet::ssh(4).artifact(&files);
    let proj = f.path().display().to_string();
    let local = |marker: &str| term_at(&proj, marker, "$(ps -o ppid= -p $PPID)");
    let on_host = |marker: &str| term_at(&proj, marker, &format!("$(cat {proj}/hoist.pid)"));
    let toml = format!(
        r#"[groups.blue]
hosts = ["web1", "web2"]

[groups.green]
hosts = ["web3", "web4"]

[strategy]
kind = "blue-green"
batch = 1

[blue_green]
colors = ["blue", "green"]
switch_local = ['''{in_switch}''', "./lb use $HOIST_COLOR"]

[hooks]
after_switch = ["sh bin/restart"]
after_rollback = ["sh bin/restart"]
after_batch_local = ['''test "$HOIST_BATCH_HOSTS" != web2 || {after_batch}''']

[health]
command = '''{{ ! grep -qx "$HOIST_COLOR" {proj}/nginx/live || {in_probe}; }} && curl -fsS http://127.0.0.1:$(cat $HOIST_DEPLOY_TO/port)/ | grep -qx "$(cat README)"'''
retries = 3
interval = "200ms"
timeout = "5s"
"#,
        in_switch = local("TERM_IN_SWITCH"),
        after_batch = local("TERM_AFTER_BATCH"),
        in_probe = on_host("TERM_IN_PROBE"),
    );
    let f = f.toml(&toml).write();
    let (backends, apps) = Apps::ports_for(&f);
    let nginx = Nginx::start(
        f.path(),
        &backends,
        &[("blue", &["web1", "web2"]), ("green", &["web3", "web4"])],
    );
    for version in ["v1", "v2"] {
        std::fs::write(f.path().join("build/README"), version).unwrap();
        let deployed = f.hoist(&["deploy"]).output().unwrap();
        assert!(deployed.status.success(), "{}", printed(&deployed));
    }
    assert_eq!(live(&nginx), "green");
    assert_eq!(nginx.get("/").unwrap(), (200, "v2".to_string()));
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    Some((f, nginx, apps))
}

/// The colour nginx sends traffic to.
fn live(nginx: &Nginx) -> String {
    std::fs::read_to_string(nginx.dir.join("nginx/live"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_blue_green_deploy_and_its_rollback_lose_no_request() {
    let Some((f, nginx, _apps)) = blue_green_site("blue-green deploy") else {
        return;
    };
    // (While nginx reloads, its old worker may answer a last request after
    // the new one answered a first: the load can see v2, v3, v2, v3 within
    // that moment. What hoist does is one `./lb use` per run.)
    let before = nginx.log().len();
    let (code, printed, seen) = under_load(&f, &nginx, &["deploy"]);
    assert_eq!(code, Some(0), "{printed}");
    no_request_lost(&seen, "the blue-green deploy", &printed);
    assert_eq!(seen.releases.first().map(String::as_str), Some("v2"));
    assert_eq!(seen.releases.last().map(String::as_str), Some("v3"));
    assert_eq!(lb_calls(&nginx, before), calls(&[("use blue", "")]));
    assert_eq!(live(&nginx), "blue");

    let before = nginx.log().len();
    let (code, printed, seen) = under_load(&f, &nginx, &["rollback", "--yes"]);
    assert_eq!(code, Some(0), "{printed}");
    no_request_lost(&seen, "the blue-green rollback", &printed);
    assert_eq!(seen.releases.first().map(String::as_str), Some("v3"));
    assert_eq!(seen.releases.last().map(String::as_str), Some("v2"));
    assert_eq!(lb_calls(&nginx, before), calls(&[("use green", "")]));
    assert_eq!(live(&nginx), "green");
    assert_eq!(
        f.read_current("web1", "README"),
        "v3",
        "no host was switched"
    );
}

#[test]
fn sigterm_at_each_point_of_a_blue_green_deploy_loses_no_request() {
    let Some((f, nginx, _apps)) = blue_green_site("blue-green SIGTERM") else {
        return;
    };
    // (where the signal lands, its marker, the colour live after, the
    // release it answers with)
    let points = [
        ("while the idle colour deploys", None, "green", "v2"),
        (
            "once the idle colour passed health",
            Some("TERM_AFTER_BATCH"),
            "green",
            "v2",
        ),
        ("in switch_local", Some("TERM_IN_SWITCH"), "blue", "v3"),
        // Blue is live on v3 now: this deploy goes to green.
        (
            "in the probe after the switch",
            Some("TERM_IN_PROBE"),
            "green",
            "v3",
        ),
    ];
    for (point, marker, colour, release) in points {
        if let Some(marker) = marker {
            std::fs::write(f.path().join(marker), "").unwrap();
        }
        let load = Load::start(nginx.port, BOUND);
        let mut child = f.spawn(&["deploy", "--json", "--log-file", "term.log"]);
        let pid = child.id().to_string();
        let mut sent = marker.is_some();
        let events = follow(&mut child, |line| {
            // web1 is switched and in its health check; web2's wave is next.
            if !sent && line.contains("\"host\":\"web1\",\"phase\":\"health\"") {
                sent = true;
                let killed = Command::new("kill").args(["-TERM", &pid]).status();
                assert!(killed.unwrap().success());
            }
        });
        let code = child.wait().unwrap().code();
        let seen = load.stop();
        let said = format!("{events:#?}");
        assert_eq!(code, Some(130), "SIGTERM {point}: {said}");
        no_request_lost(&seen, &format!("SIGTERM {point}"), &said);
        assert_eq!(live(&nginx), colour, "SIGTERM {point}");
        assert_eq!(
            seen.releases.last().map(String::as_str),
            Some(release),
            "SIGTERM {point}: {seen:?}"
        );
        assert!(
            marker.is_none_or(|m| !f.path().join(m).exists()),
            "SIGTERM {point}: the hook sent it"
        );
        std::fs::remove_file(f.path().join("term.log")).unwrap();
    }
}
