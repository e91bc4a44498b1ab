//! `[traffic]` in a blue-green deploy on real OpenSSH hosts: web1-2 are
//! blue, web3-4 green. Once the idle colour is healthy `set_local` runs
//! for each weight in turn (a recorder appending `set|weight|canary
//! hosts|baseline hosts|colour|previous colour` to a log the remote hooks
//! append to too), then `switch_local` once; a failing gate or `set_local`
//! at a step sets the weight to 0 before the idle colour goes back (exit
//! 5), the live colour untouched.

use std::process::Command;

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::{printed, said};

/// A local gate that fails while the weight last set is the one in the
/// project's `fail-at` file (none: it always passes).
const GATE: &str = r#"[[analysis]]
name = "errors"
command = ["sh", "-c", "w=$(grep '^set' order.log | tail -n 1 | cut -d'|' -f2); test \"$w\" != \"$(cat fail-at 2>/dev/null || echo none)\""]
interval = "200ms"
count = 2
consecutive_errors = 0
"#;

/// `switch_local` that records itself and writes the live colour to `lb`.
const SWITCH: &str = r#"switch_local = ['echo "switch_local|$HOIST_COLOR|$HOIST_PREVIOUS_COLOR" >> order.log', "printf '%s' \"$HOIST_COLOR\" > lb"]"#;

/// 4 hosts in two colours, waves of one; traffic steps 10/50/100 held 1 s
/// each; `set_local` records, then runs `check`; remote hooks record
/// switches and rollbacks into the same log. `switch`: the
/// `[blue_green]` switch_local line, or none (set_local only).
fn fleet(check: &str, switch: &str, extra: &str) -> Fleet {
    fleet_with(|_| HEALTH.to_string(), check, switch, extra)
}

/// As [`fleet`], with the `[health]` table `health` makes of the
/// project's path.
fn fleet_with(
    health: impl Fn(&std::path::Path) -> String,
    check: &str,
    switch: &str,
    extra: &str,
) -> Fleet {
    let f = Fleet::ssh(4);
    let health = health(f.path());
    let log = f.path().join("order.log");
    let log = log.display();
    let toml = format!(
        r#"{health}

[groups.blue]
hosts = ["web1", "web2"]

[groups.green]
hosts = ["web3", "web4"]

[strategy]
kind = "blue-green"
batch = 1

[blue_green]
colors = ["blue", "green"]
{switch}

[hooks]
before_switch = ['echo "switch|$HOIST_HOST" >> {log}']
after_rollback = ['echo "rollback|$HOIST_HOST" >> {log}']

[diagnose]
commands = ["echo looked at $HOIST_HOST"]

[traffic]
steps = [10, 50, 100]
step_bake = "1s"
set_local = ['echo "set|$HOIST_WEIGHT|$HOIST_CANARY_HOSTS|$HOIST_BASELINE_HOSTS|$HOIST_COLOR|$HOIST_PREVIOUS_COLOR" >> order.log', '{check}']

{extra}"#
    );
    f.toml(&toml).write()
}

fn log(f: &Fleet) -> Vec<String> {
    std::fs::read_to_string(f.path().join("order.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn fail_at(f: &Fleet, weight: &str) {
    std::fs::write(f.path().join("fail-at"), weight).unwrap();
}

fn of<'a>(events: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

/// The colour every host's journal names live last.
fn recorded_live(f: &Fleet) -> Vec<String> {
    ["web1", "web2", "web3", "web4"]
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

#[test]
fn steps_weigh_the_healthy_idle_colour_against_the_live_one_then_switch_local_once() {
    let f = fleet("true", SWITCH, GATE);
    // No colour live yet: no steps, all of the traffic to blue at once.
    let first = f.events(&["deploy", "--json"], 0);
    assert!(said(&first, "no colour is live yet: no traffic steps"));
    assert_eq!(
        log(&f),
        [
            "switch|web1",
            "switch|web2",
            "set|100|web1 web2|web3 web4|blue|",
            "switch_local|blue|",
        ]
    );
    let v1 = f.current("web1").unwrap();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let skip = log(&f).len();
    let events = f.events(&["deploy", "--json"], 0);
    assert_eq!(
        log(&f)[skip..],
        [
            "switch|web3",
            "switch|web4",
            "set|10|web3 web4|web1 web2|green|blue",
            "set|50|web3 web4|web1 web2|green|blue",
            "set|100|web3 web4|web1 web2|green|blue",
            "switch_local|green|blue",
        ]
    );
    let steps: Vec<(serde_json::Value, u64, &str)> = of(&events, "traffic_step")
        .iter()
        .map(|e| {
            assert_eq!(e["color"], "green", "{e}");
            (
                e["step"].clone(),
                e["weight"].as_u64().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (serde_json::json!(1), 10, "ok"),
            (serde_json::json!(2), 50, "ok"),
            (serde_json::json!(3), 100, "ok"),
        ]
    );
    // Each step held on the idle colour while the gate sampled it twice.
    let held: Vec<(&str, &serde_json::Value)> = of(&events, "bake_started")
        .iter()
        .map(|e| (e["step"].as_str().unwrap(), &e["hosts"]))
        .collect();
    let green = serde_json::json!(["web3", "web4"]);
    assert_eq!(
        held,
        [
            ("traffic 10%", &green),
            ("traffic 50%", &green),
            ("traffic 100%", &green)
        ]
    );
    let sampled: Vec<&str> = of(&events, "analysis")
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    for step in ["traffic 10%", "traffic 50%", "traffic 100%"] {
        assert_eq!(
            sampled.iter().filter(|s| **s == step).count(),
            2,
            "{step}: {sampled:?}"
        );
    }
    // The switch comes after the last step, then the live record flips.
    let last_step = events
        .iter()
        .rposition(|e| e["event"] == "traffic_step")
        .unwrap();
    let switch = events.iter().position(|e| e["event"] == "traffic").unwrap();
    assert!(last_step < switch);
    assert_eq!(
        std::fs::read_to_string(f.path().join("lb")).unwrap(),
        "green"
    );
    assert_eq!(recorded_live(&f), ["green"; 4]);
    for host in ["web1", "web2"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
    }
}

/// Blue live on v1, then green live on v2 (deployed in steps), then v3
/// built: blue is idle. Returns blue's and green's releases.
fn green_live_then_v3(f: &Fleet) -> (String, String) {
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy"]).assert().success();
    let v2 = f.current("web3").unwrap();
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    (v1, v2)
}

/// The deploy of v3 to blue stopped at 50%: the log after `skip` shows
/// the steps up to it, the weight 0 set before any host goes back, then
/// blue going back to `v1`; green untouched on `v2` and still live.
fn stopped_at_50(f: &Fleet, skip: usize, (v1, v2): &(String, String)) {
    let log = log(f);
    let log = &log[skip..];
    assert_eq!(
        log[..5],
        [
            "switch|web1",
            "switch|web2",
            "set|10|web1 web2|web3 web4|blue|green",
            "set|50|web1 web2|web3 web4|blue|green",
            "set|0|web1 web2|web3 web4|blue|green",
        ],
        "{log:?}"
    );
    let mut rest = log[5..].to_vec();
    rest.sort();
    assert_eq!(rest, ["rollback|web1", "rollback|web2"], "{log:?}");
    for host in ["web1", "web2"] {
        assert_eq!(f.current(host).as_ref(), Some(v1), "{host} back");
    }
    for host in ["web3", "web4"] {
        assert_eq!(f.current(host).as_ref(), Some(v2), "{host} untouched");
    }
    assert_eq!(recorded_live(f), ["green"; 4]);
    assert_eq!(
        std::fs::read_to_string(f.path().join("lb")).unwrap(),
        "green"
    );
}

#[test]
fn a_failing_gate_at_step_two_sets_the_weight_to_0_before_the_idle_colour_goes_back() {
    let f = fleet("true", SWITCH, GATE);
    let releases = green_live_then_v3(&f);
    fail_at(&f, "50");
    let skip = log(&f).len();
    let events = f.events(&["deploy", "--json"], 5);
    stopped_at_50(&f, skip, &releases);
    let failed: Vec<&serde_json::Value> = of(&events, "analysis")
        .into_iter()
        .filter(|e| e["verdict"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["step"], "traffic 50%");
    // Weight 0, then [diagnose] on the idle colour, then it goes back.
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        events.iter().position(pred).expect("in the events")
    };
    let zero = at(&|e| e["event"] == "traffic_step" && e["weight"] == 0);
    let mut diagnosed: Vec<&str> = of(&events, "host_diagnostics")
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    diagnosed.sort();
    assert_eq!(diagnosed, ["web1", "web2"], "the idle colour");
    assert!(zero < at(&|e| e["event"] == "host_diagnostics"));
    let back = at(&|e| e["event"] == "rollback_started");
    assert!(at(&|e| e["event"] == "host_diagnostics") < back);
    assert!(of(&events, "traffic").is_empty(), "switch_local never ran");
    assert!(said(
        &events,
        "gate errors 1 of 1 sample(s) failed (failure_limit 0) during the traffic 50%"
    ));
}

#[test]
fn a_failing_set_local_stops_the_same_way() {
    let f = fleet(
        "test $HOIST_WEIGHT != $(cat fail-at 2>/dev/null || echo none)",
        SWITCH,
        "",
    );
    let releases = green_live_then_v3(&f);
    fail_at(&f, "50");
    let skip = log(&f).len();
    let events = f.events(&["deploy", "--json"], 5);
    stopped_at_50(&f, skip, &releases);
    let outcomes: Vec<(u64, &str)> = of(&events, "traffic_step")
        .iter()
        .map(|e| {
            (
                e["weight"].as_u64().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [(10, "ok"), (50, "failed"), (0, "ok")]);
    assert!(said(
        &events,
        "rollout stopped: set_local did not pass at traffic 50%"
    ));
}

#[test]
fn plan_shows_the_steps_after_each_colours_waves() {
    let f = fleet("true", SWITCH, GATE);
    let out = f.hoist(&["plan"]).assert().success().get_output().clone();
    let text = printed(&out);
    for colour in ["blue", "green"] {
        assert!(
            text.contains(&format!("after {colour} wave 2: traffic 10% (step 1 of 3, held 1s), then traffic 50% (step 2 of 3, held 1s), then traffic 100% (step 3 of 3, held 1s)")),
            "{text}"
        );
    }
    assert!(text.contains("traffic: between the colours"), "{text}");
    assert!(
        text.contains(
            "each step held 1s while the idle colour's health checks hold and gates errors sample"
        ),
        "{text}"
    );
    assert!(
        text.contains("`hoist rollback` runs set_local at 100% to the other colour"),
        "{text}"
    );
}

#[test]
fn gates_without_traffic_steps_are_refused_in_blue_green() {
    let f = Fleet::ssh(2)
        .toml(&format!(
            "[groups.blue]\nhosts = [\"web1\"]\n[groups.green]\nhosts = [\"web2\"]\n\
             [strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"green\"]\n{GATE}"
        ))
        .write();
    let out = f.hoist(&["plan"]).assert().code(2).get_output().clone();
    assert!(
        printed(&out).contains("sample its traffic steps, and there are none: add [traffic]"),
        "{}",
        printed(&out)
    );
}

#[test]
fn a_set_local_only_fleet_deploys_in_steps_and_rolls_back_with_100_to_the_other_colour() {
    let f = fleet("true", "", "");
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy"]).assert().success();
    let v2 = f.current("web3").unwrap();
    assert_eq!(recorded_live(&f), ["green"; 4]);
    let skip = log(&f).len();
    let events = f.events(&["rollback", "--json"], 0);
    assert_eq!(log(&f)[skip..], ["set|100|web1 web2|web3 web4|blue|green"]);
    let step = of(&events, "traffic_step");
    assert_eq!(step.len(), 1);
    assert_eq!(step[0]["color"], "blue");
    assert_eq!(recorded_live(&f), ["blue"; 4]);
    // No host moved.
    for (host, release) in [("web1", &v1), ("web2", &v1), ("web3", &v2), ("web4", &v2)] {
        assert_eq!(f.current(host).as_ref(), Some(release), "{host}");
    }
}

#[test]
fn sigterm_during_a_step_sets_0_then_the_idle_colour_goes_back() {
    let f = fleet("true", SWITCH, "");
    let (v1, v2) = green_live_then_v3(&f);
    let skip = log(&f).len();
    let mut child = f.spawn(&["deploy", "--json"]);
    let pid = child.id().to_string();
    let mut sent = false;
    // The signal once the first weight is set: during its step.
    let events = crate::support::project::follow(&mut child, |line| {
        if !sent && line.contains("\"traffic_step\"") && line.contains("\"weight\":10,") {
            sent = true;
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        }
    });
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "{events:#?}");
    let log = log(&f);
    let log = &log[skip..];
    assert_eq!(
        log[..4],
        [
            "switch|web1",
            "switch|web2",
            "set|10|web1 web2|web3 web4|blue|green",
            "set|0|web1 web2|web3 web4|blue|green",
        ],
        "{log:?}"
    );
    let mut rest = log[4..].to_vec();
    rest.sort();
    assert_eq!(rest, ["rollback|web1", "rollback|web2"], "{log:?}");
    assert!(of(&events, "traffic").is_empty(), "switch_local never ran");
    let back = of(&events, "rollback_started");
    assert!(
        back[0]["reason"]
            .as_str()
            .unwrap()
            .contains("interrupted during the traffic steps"),
        "{back:?}"
    );
    for host in ["web1", "web2"] {
        assert_eq!(f.current(host).as_ref(), Some(&v1), "{host} back");
    }
    for host in ["web3", "web4"] {
        assert_eq!(f.current(host).as_ref(), Some(&v2), "{host} untouched");
    }
    assert_eq!(recorded_live(&f), ["green"; 4]);
}

#[test]
fn a_host_turning_unhealthy_at_a_step_is_diagnosed_after_0_is_set_and_its_colour_goes_back() {
    // web2 answers its health check badly once it takes half the traffic.
    let health = |proj: &std::path::Path| {
        let proj = proj.display();
        format!(
            "[health]\ncommand = '''test ! -e {proj}/sick-$HOIST_HOST || test \"$(grep '^set' {proj}/order.log | tail -n 1 | cut -d'|' -f2)\" != 50'''\nretries = 1\ninterval = \"100ms\"\ntimeout = \"5s\""
        )
    };
    let f = fleet_with(health, "true", SWITCH, "");
    let releases = green_live_then_v3(&f);
    std::fs::write(f.path().join("sick-web2"), "").unwrap();
    let skip = log(&f).len();
    let events = f.events(&["deploy", "--json"], 5);
    stopped_at_50(&f, skip, &releases);
    let diagnosed: Vec<&str> = of(&events, "host_diagnostics")
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(diagnosed, ["web2"], "the host that turned unhealthy");
    let zero = events
        .iter()
        .position(|e| e["event"] == "traffic_step" && e["weight"] == 0)
        .unwrap();
    let diagnostics = events
        .iter()
        .position(|e| e["event"] == "host_diagnostics")
        .unwrap();
    assert!(zero < diagnostics);
    assert!(said(
        &events,
        "rollout stopped: web2 of blue turned unhealthy during a traffic step"
    ));
    assert!(of(&events, "traffic").is_empty(), "switch_local never ran");
}

#[test]
fn a_failed_probe_after_the_steps_sets_0_then_switches_back_then_the_colour_goes_back() {
    // A colour breaks once `lb` names it, with BREAK in the project.
    let health = |proj: &std::path::Path| {
        let proj = proj.display();
        format!(
            "[health]\ncommand = '''test ! -e {proj}/BREAK || ! grep -qx \"$HOIST_COLOR\" {proj}/lb'''\nretries = 1\ninterval = \"100ms\"\ntimeout = \"5s\""
        )
    };
    let f = fleet_with(health, "true", SWITCH, "");
    let (v1, v2) = green_live_then_v3(&f);
    std::fs::write(f.path().join("BREAK"), "").unwrap();
    let skip = log(&f).len();
    let events = f.events(&["deploy", "--json"], 5);
    let log = log(&f);
    let log = &log[skip..];
    assert_eq!(
        log[..8],
        [
            "switch|web1",
            "switch|web2",
            "set|10|web1 web2|web3 web4|blue|green",
            "set|50|web1 web2|web3 web4|blue|green",
            "set|100|web1 web2|web3 web4|blue|green",
            "switch_local|blue|green",
            "set|0|web1 web2|web3 web4|blue|green",
            "switch_local|green|blue",
        ],
        "{log:?}"
    );
    let mut rest = log[8..].to_vec();
    rest.sort();
    assert_eq!(rest, ["rollback|web1", "rollback|web2"], "{log:?}");
    assert!(said(&events, "failed the probe after the traffic switch"));
    for host in ["web1", "web2"] {
        assert_eq!(f.current(host).as_ref(), Some(&v1), "{host} back");
    }
    for host in ["web3", "web4"] {
        assert_eq!(f.current(host).as_ref(), Some(&v2), "{host} untouched");
    }
    assert_eq!(recorded_live(&f), ["green"; 4]);
    assert_eq!(
        std::fs::read_to_string(f.path().join("lb")).unwrap(),
        "green"
    );
}
