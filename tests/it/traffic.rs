//! `[traffic]` on real OpenSSH hosts: after the canary wave `set_local`
//! runs for each weight in turn (a recorder appending `set|weight|canary
//! hosts|baseline hosts` to a log the remote hooks append to too), then
//! the other waves, then 100 with every host; a failing gate or
//! `set_local` during a step sets the weight to 0 before anything goes
//! back (exit 5), later waves untouched.

use crate::support::fleet::{Fleet, HEALTH};

/// A local gate that fails while the weight last set is the one in the
/// project's `fail-at` file (none: it always passes).
const GATE: &str = r#"[[analysis]]
name = "errors"
command = ["sh", "-c", "w=$(grep '^set' order.log | tail -n 1 | cut -d'|' -f2); test \"$w\" != \"$(cat fail-at 2>/dev/null || echo none)\""]
interval = "200ms"
count = 2
consecutive_errors = 0
"#;

/// 3 hosts: a canary with a 1 s bake, then batches of one; traffic steps
/// 10/50/100 held 1 s each; `set_local` records, then runs `check`;
/// remote hooks record switches and rollbacks into the same log.
fn fleet(check: &str, extra: &str) -> Fleet {
    let f = Fleet::ssh(3);
    let log = f.path().join("order.log");
    let log = log.display();
    let toml = format!(
        r#"{HEALTH}

[strategy]
canary = 1
canary_pause = "1s"
batch = 1

[hooks]
before_switch = ['echo "switch|$HOIST_HOST" >> {log}']
after_rollback = ['echo "rollback|$HOIST_HOST" >> {log}']

[diagnose]
commands = ["echo looked at $HOIST_HOST"]

[traffic]
steps = [10, 50, 100]
step_bake = "1s"
set_local = ['echo "set|$HOIST_WEIGHT|$HOIST_CANARY_HOSTS|$HOIST_BASELINE_HOSTS|$HOIST_CANARY_ADDRESSES" >> order.log', '{check}']

{extra}"#
    );
    f.toml(&toml).write()
}

/// The log's lines after the first `skip`, addresses left out.
fn log_since(f: &Fleet, skip: usize) -> Vec<String> {
    std::fs::read_to_string(f.path().join("order.log"))
        .unwrap_or_default()
        .lines()
        .skip(skip)
        .map(|l| match l.starts_with("set|") {
            true => l.rsplit_once('|').unwrap().0.to_string(),
            false => l.to_string(),
        })
        .collect()
}

fn log_len(f: &Fleet) -> usize {
    log_since(f, 0).len()
}

fn fail_at(f: &Fleet, weight: &str) {
    std::fs::write(f.path().join("fail-at"), weight).unwrap();
}

fn of<'a>(events: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

fn position_of(events: &[serde_json::Value], event: &str) -> usize {
    events
        .iter()
        .position(|e| e["event"] == event)
        .unwrap_or_else(|| panic!("no {event}"))
}

#[test]
fn steps_run_in_order_after_the_canary_wave_and_before_the_next_then_100_with_every_host() {
    let f = fleet("true", GATE);
    f.on_v1_then_v2();
    let skip = log_len(&f);
    let events = f.events(&["deploy", "--json"], 0);
    assert_eq!(
        log_since(&f, skip),
        [
            "switch|web1",
            "set|10|web1|web2 web3",
            "set|50|web1|web2 web3",
            "set|100|web1|web2 web3",
            "switch|web2",
            "switch|web3",
            "set|100|web1 web2 web3|",
        ]
    );
    let raw = std::fs::read_to_string(f.path().join("order.log")).unwrap();
    let last = raw.lines().last().unwrap();
    assert!(
        last.ends_with("|127.0.0.1 127.0.0.1 127.0.0.1"),
        "HOIST_CANARY_ADDRESSES: {last}"
    );
    let steps: Vec<(serde_json::Value, u64, &str)> = of(&events, "traffic_step")
        .iter()
        .map(|e| {
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
            (serde_json::Value::Null, 100, "ok"),
        ]
    );
    let first = of(&events, "traffic_step")[0];
    assert_eq!(first["canary"], serde_json::json!(["web1"]));
    assert_eq!(first["baseline"], serde_json::json!(["web2", "web3"]));
    let sampled: Vec<&str> = of(&events, "analysis")
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    for step in ["canary bake", "traffic 10%", "traffic 50%", "traffic 100%"] {
        assert_eq!(
            sampled.iter().filter(|s| **s == step).count(),
            2,
            "{step}: {sampled:?}"
        );
    }
    let v2 = f.current("web1").unwrap();
    for host in ["web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v2.as_str()), "{host}");
    }
}

/// web1 went to the new release and came back to `v1`; web2 and web3 were
/// never switched.
fn only_the_canary_came_back(f: &Fleet, v1: &str, log: &[String]) {
    assert_eq!(f.current("web1").as_deref(), Some(v1));
    for host in ["web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1), "{host}");
        assert!(!log.contains(&format!("switch|{host}")), "{host}: {log:?}");
    }
}

#[test]
fn a_failing_gate_at_step_two_sets_the_weight_to_0_before_the_canary_goes_back() {
    let f = fleet("true", GATE);
    let v1 = f.on_v1_then_v2();
    fail_at(&f, "50");
    let skip = log_len(&f);
    let events = f.events(&["deploy", "--json"], 5);
    let log = log_since(&f, skip);
    assert_eq!(
        log,
        [
            "switch|web1",
            "set|10|web1|web2 web3",
            "set|50|web1|web2 web3",
            "set|0|web1|web2 web3",
            "rollback|web1",
            // Back on the old release: every host its whole share again.
            "set|0||web1 web2 web3",
        ]
    );
    only_the_canary_came_back(&f, &v1, &log);
    let failed: Vec<&serde_json::Value> = of(&events, "analysis")
        .into_iter()
        .filter(|e| e["verdict"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["step"], "traffic 50%");
    // Weight 0, then [diagnose], then the rollback.
    let zero = events
        .iter()
        .position(|e| e["event"] == "traffic_step" && e["weight"] == 0)
        .expect("weight 0 set");
    assert!(zero < position_of(&events, "host_diagnostics"));
    assert!(position_of(&events, "host_diagnostics") < position_of(&events, "rollback_started"));
    assert!(crate::support::project::said(
        &events,
        "gate errors 1 of 1 sample(s) failed (failure_limit 0) during the traffic 50%"
    ));
}

#[test]
fn a_failing_set_local_stops_the_same_way() {
    let f = fleet(
        "test $HOIST_WEIGHT != $(cat fail-at 2>/dev/null || echo none)",
        "",
    );
    let v1 = f.on_v1_then_v2();
    fail_at(&f, "50");
    let skip = log_len(&f);
    let events = f.events(&["deploy", "--json"], 5);
    let log = log_since(&f, skip);
    assert_eq!(
        log,
        [
            "switch|web1",
            "set|10|web1|web2 web3",
            "set|50|web1|web2 web3",
            "set|0|web1|web2 web3",
            "rollback|web1",
            // Back on the old release: every host its whole share again.
            "set|0||web1 web2 web3",
        ]
    );
    only_the_canary_came_back(&f, &v1, &log);
    let outcomes: Vec<(u64, &str)> = of(&events, "traffic_step")
        .iter()
        .map(|e| {
            (
                e["weight"].as_u64().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [(10, "ok"), (50, "failed"), (0, "ok"), (0, "ok")]);
    assert!(crate::support::project::said(
        &events,
        "rollout stopped: set_local did not pass at traffic 50%"
    ));
}

#[test]
fn plan_shows_each_step_with_its_weight_and_bake() {
    let f = fleet("true", GATE);
    let out = f.hoist(&["plan"]).assert().success().get_output().clone();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("after wave 1: bake 1s, then traffic 10% (step 1 of 3, held 1s), then traffic 50% (step 2 of 3, held 1s), then traffic 100% (step 3 of 3, held 1s);"),
        "{text}"
    );
    assert!(
        text.contains("each step held 1s while the health checks hold and gates errors sample"),
        "{text}"
    );
}

#[test]
fn traffic_keys_are_strict() {
    for (table, strategy, says) in [
        (
            "steps = [10, 100]\nset_local = [\"true\"]\nstep_bakes = \"1s\"\n",
            "",
            "step_bakes",
        ),
        (
            "steps = [50, 10]\nset_local = [\"true\"]\n",
            "",
            "10 after 50: steps go strictly up",
        ),
        (
            "steps = [0, 100]\nset_local = [\"true\"]\n",
            "",
            "0 is not a weight",
        ),
        (
            "steps = [10, 101]\nset_local = [\"true\"]\n",
            "",
            "101 is not a weight",
        ),
        ("steps = [10]\n", "", "set_local"),
        (
            "steps = [10]\nset_local = [\"true\"]\n",
            "[strategy]\ncanary = 0\n",
            "strategy.canary = 0 plans none",
        ),
    ] {
        let f = Fleet::ssh(1)
            .toml(&format!("{strategy}\n[traffic]\n{table}"))
            .write();
        let out = f.hoist(&["plan"]).assert().code(2).get_output().clone();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(says), "{table}: {text}");
    }
}

#[test]
fn a_failure_in_a_later_wave_sets_the_weight_to_0_before_anything_goes_back() {
    let f = fleet("true", "");
    let v1 = f.on_v1_then_v2();
    f.mark("web3", "FAIL");
    let skip = log_len(&f);
    f.hoist(&["deploy"]).assert().code(5);
    let log = log_since(&f, skip);
    assert_eq!(
        log[..7],
        [
            "switch|web1",
            "set|10|web1|web2 web3",
            "set|50|web1|web2 web3",
            "set|100|web1|web2 web3",
            "switch|web2",
            "switch|web3",
            "set|0|web1 web2 web3|",
        ],
        "{log:?}"
    );
    assert!(
        log[7..log.len() - 1]
            .iter()
            .all(|l| l.starts_with("rollback|")),
        "{log:?}"
    );
    // Every host back: the balancer gets every host as the baseline.
    assert_eq!(log.last().unwrap(), "set|0||web1 web2 web3", "{log:?}");
    for host in ["web1", "web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
    }
}

#[test]
fn until_canary_keeps_the_last_weight_and_promote_ends_at_100_with_every_host() {
    let f = fleet("true", "");
    f.on_v1_then_v2();
    let skip = log_len(&f);
    f.hoist(&["deploy", "--until", "canary"]).assert().success();
    assert_eq!(
        log_since(&f, skip),
        [
            "switch|web1",
            "set|10|web1|web2 web3",
            "set|50|web1|web2 web3",
            "set|100|web1|web2 web3",
        ]
    );
    let skip = log_len(&f);
    f.hoist(&["promote"]).assert().success();
    assert_eq!(
        log_since(&f, skip),
        ["switch|web2", "switch|web3", "set|100|web1 web2 web3|"]
    );
}
