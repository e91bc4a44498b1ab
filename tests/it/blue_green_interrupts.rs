//! SIGTERM at each point of a blue-green deploy, on real OpenSSH hosts:
//! before the traffic switch nothing new starts and the idle colour goes
//! back (exit 130); once `switch_local` has started it completes and the
//! probe runs; an interrupt is never a failed probe nor a failed host.
//!
//! web1-2 are blue, web3-4 green. Every test starts with green live on the
//! second release and blue idle on the first; the interrupted deploy goes
//! to blue. Hooks send the SIGTERM themselves at the point under test,
//! then wait until hoist has said it noticed (in its log file), so the
//! signal lands exactly there.

use std::process::Command;

use crate::support::fleet::Fleet;
use crate::support::project::{follow, said};

const BLUE: [&str; 2] = ["web1", "web2"];
const GREEN: [&str; 2] = ["web3", "web4"];

/// Where the run under test writes its log, and what hoist writes there
/// once it took the signal in.
const LOG: &str = "term.log";
const NOTICED: &str = "interrupted: starting nothing new";

/// hoist's pid, in a local hook: the parent of the wrapper shell the hook
/// runs under (see `layout::until_it_exits`), not the hook's own parent.
const HOIST_PID: &str = "$(ps -o ppid= -p $PPID)";

/// Sends SIGTERM to `pid` (a shell expression) when `marker` (a path) is
/// there, taking the marker (only one host does, however many run this),
/// then waits until hoist noticed.
fn term_once(marker: &str, pid: &str, log: &str) -> String {
    format!(
        "{{ test ! -e {marker} || ! rm {marker} 2>/dev/null || {{ kill -TERM {pid} && until grep -qs '{NOTICED}' {log}; do sleep 0.05; done; }}; }}"
    )
}

struct Setup {
    f: Fleet,
    /// Blue's release (the first deploy), green's (the second, live).
    r1: String,
    r2: String,
}

/// Four SSH hosts, green live on r2, blue idle on r1, v3 built. Markers in
/// the project make a hook send the SIGTERM: `TERM_AFTER_BATCH` (the last
/// wave's `after_batch_local`), `TERM_IN_SWITCH` (`switch_local`),
/// `TERM_IN_PROBE` (the health check once traffic is on the host's colour;
/// that attempt fails, the next passes). With `BREAK`, a colour is
/// unhealthy once it takes traffic.
fn setup() -> Setup {
    let f = Fleet::ssh(4);
    let proj = f.path().display().to_string();
    let pid_file = format!("{proj}/hoist.pid");
    let log = format!("{proj}/{LOG}");
    let local = |marker: &str| term_once(marker, HOIST_PID, LOG);
    let in_probe = format!(
        "{{ ! grep -qx \"$HOIST_COLOR\" {proj}/lb || test ! -e {proj}/TERM_IN_PROBE || ! rm {proj}/TERM_IN_PROBE 2>/dev/null || {{ kill -TERM $(cat {pid_file}) && until grep -qs '{NOTICED}' {log}; do sleep 0.05; done; exit 1; }}; }}"
    );
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
switch_local = ["{switch} && printf '%s %s\n' \"$HOIST_COLOR\" \"$HOIST_RELEASE\" >> switches && printf '%s' \"$HOIST_COLOR\" > lb"]

[hooks]
after_batch_local = ["test \"$HOIST_BATCH_HOSTS\" != web2 || {after_batch}"]

[health]
command = "{in_probe} && {{ test ! -e {proj}/BREAK || ! grep -qx \"$HOIST_COLOR\" {proj}/lb; }}"
grace = "100ms"
retries = 3
interval = "100ms"
"#,
        switch = local("TERM_IN_SWITCH").replace('"', "\\\""),
        after_batch = local("TERM_AFTER_BATCH").replace('"', "\\\""),
        in_probe = in_probe.replace('"', "\\\""),
    );
    let f = f.toml(&toml).write();
    f.hoist(&["deploy"]).assert().success();
    let r1 = f.current("web1").unwrap();
    build(&f, "v2");
    f.hoist(&["deploy"]).assert().success();
    let r2 = f.current("web3").unwrap();
    assert_eq!(lb(&f), "green");
    build(&f, "v3");
    std::fs::remove_file(f.path().join("switches")).unwrap();
    Setup { f, r1, r2 }
}

fn build(f: &Fleet, version: &str) {
    std::fs::write(f.path().join("build/README"), version).unwrap();
}

fn lb(f: &Fleet) -> String {
    std::fs::read_to_string(f.path().join("lb")).unwrap_or_default()
}

/// What `switch_local` was run with, one "colour release" per run.
fn switches(f: &Fleet) -> Vec<String> {
    std::fs::read_to_string(f.path().join("switches"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `hoist deploy --json` in the background, its pid where the remote
/// health check finds it; `on_line` sees each NDJSON line. Returns the
/// exit code and the events.
fn deploy(f: &Fleet, on_line: impl FnMut(&str, u32)) -> (Option<i32>, Vec<serde_json::Value>) {
    let mut child = f.spawn(&["deploy", "--json", "--log-file", LOG]);
    let pid = child.id();
    let mut on_line = on_line;
    let events = follow(&mut child, |line| on_line(line, pid));
    (child.wait().unwrap().code(), events)
}

/// The last colour each host's journal records as live.
fn live_in_journals(f: &Fleet) -> Vec<String> {
    f.host_names()
        .iter()
        .map(|h| {
            f.journal(h)
                .into_iter()
                .rev()
                .find(|e| e["event"] == "traffic")
                .map(|e| e["color"].as_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// Nothing in the run calls a host failed, nor the interrupt a failed probe.
fn no_host_failed(events: &[serde_json::Value]) {
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "host_failed")
        .collect();
    assert!(
        failed.is_empty(),
        "no host failed for an interrupt: {failed:#?}"
    );
    assert!(!said(events, "failed the probe"), "{events:#?}");
    let summary = events.last().unwrap();
    for row in summary["hosts"].as_array().unwrap() {
        assert_ne!(row["result"], "failed", "{row}");
    }
}

/// Before the switch: traffic stayed on green, blue is back on r1, exit 130.
fn blue_went_back(s: &Setup, code: Option<i32>, events: &[serde_json::Value]) {
    assert_eq!(code, Some(130), "{events:#?}");
    no_host_failed(events);
    assert_eq!(lb(&s.f), "green");
    assert!(switches(&s.f).is_empty(), "switch_local never ran");
    assert!(!events.iter().any(|e| e["event"] == "traffic"));
    assert_eq!(live_in_journals(&s.f), ["green"; 4]);
    for host in BLUE {
        assert_eq!(s.f.current(host).as_deref(), Some(s.r1.as_str()), "{host}");
        assert_eq!(s.f.read_current(host, "README"), "v1", "{host}");
    }
    for host in GREEN {
        assert_eq!(s.f.current(host).as_deref(), Some(s.r2.as_str()), "{host}");
    }
    let back = events
        .iter()
        .find(|e| e["event"] == "rollback_started")
        .expect("blue goes back");
    assert!(
        back["reason"]
            .as_str()
            .unwrap()
            .contains("interrupted before the traffic switch"),
        "{back}"
    );
    assert!(said(events, "traffic stays on green"));
}

/// After the switch: blue is live on the new release and was probed, exit 130.
fn blue_is_live(s: &Setup, code: Option<i32>, events: &[serde_json::Value]) {
    assert_eq!(code, Some(130), "{events:#?}");
    no_host_failed(events);
    let r3 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(lb(&s.f), "blue");
    assert_eq!(
        switches(&s.f),
        [format!("blue {r3}")],
        "one switch, no flap"
    );
    assert_eq!(live_in_journals(&s.f), ["blue"; 4]);
    for host in BLUE {
        assert_eq!(s.f.current(host).as_deref(), Some(r3.as_str()), "{host}");
    }
    for host in GREEN {
        assert_eq!(s.f.current(host).as_deref(), Some(s.r2.as_str()), "{host}");
    }
    assert!(!events.iter().any(|e| e["event"] == "rollback_started"));
    assert!(said(events, "interrupted after the traffic switch"));
}

#[test]
fn sigterm_while_the_idle_colour_deploys_sends_it_back_and_moves_no_traffic() {
    let s = setup();
    let mut sent = false;
    let (code, events) = deploy(&s.f, |line, pid| {
        // web1 is switched and in its health check (grace 100ms); web2's wave is next.
        if !sent && line.contains("\"host\":\"web1\",\"phase\":\"health\"") {
            sent = true;
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
        }
    });
    blue_went_back(&s, code, &events);
    let r3 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!s.f.switched_to("web2", &r3), "web2's wave never started");
}

#[test]
fn sigterm_after_the_idle_colour_passed_health_starts_no_switch() {
    let s = setup();
    std::fs::write(s.f.path().join("TERM_AFTER_BATCH"), "").unwrap();
    let (code, events) = deploy(&s.f, |_, _| {});
    blue_went_back(&s, code, &events);
    let back = events
        .iter()
        .find(|e| e["event"] == "rollback_started")
        .unwrap();
    assert_eq!(back["hosts"], serde_json::json!(BLUE), "{back}");
}

#[test]
fn sigterm_during_switch_local_lets_it_complete_and_the_probe_run() {
    let s = setup();
    std::fs::write(s.f.path().join("TERM_IN_SWITCH"), "").unwrap();
    let (code, events) = deploy(&s.f, |_, _| {});
    blue_is_live(&s, code, &events);
}

#[test]
fn sigterm_during_the_probe_is_not_a_failed_probe() {
    let s = setup();
    std::fs::write(s.f.path().join("TERM_IN_PROBE"), "").unwrap();
    let (code, events) = deploy(&s.f, |_, _| {});
    blue_is_live(&s, code, &events);
    assert!(
        !s.f.path().join("TERM_IN_PROBE").exists(),
        "the probe sent the signal"
    );
}

#[test]
fn switching_back_after_a_failed_probe_names_the_live_colours_release() {
    let s = setup();
    std::fs::write(s.f.path().join("BREAK"), "").unwrap();
    let (code, events) = deploy(&s.f, |_, _| {});
    assert_eq!(code, Some(5), "{events:#?}");
    let r3 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        switches(&s.f),
        [format!("blue {r3}"), format!("green {}", s.r2)],
        "the switch back names green's release"
    );
    assert_eq!(lb(&s.f), "green");
    for host in BLUE {
        assert_eq!(s.f.current(host).as_deref(), Some(s.r1.as_str()), "{host}");
    }
}
