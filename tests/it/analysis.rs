//! Analysis gates on real OpenSSH hosts: a local `command` gate and a
//! `host_command` gate sampled during the canary bake and `wave_bake`; a
//! failing gate rolls back what was switched (exit 5) and touches no other
//! host; `dry_run` only says what it would have done; `on_inconclusive`.

use crate::support::fleet::Fleet;
use crate::support::project::said;

/// A local gate: it logs what it was given, then exits with the number in
/// the project's `verdict` file (0 when there is none).
const GATE: &str = r#"[[analysis]]
name = "errors"
command = ["sh", "-c", "echo \"$HOIST_CANARY_HOSTS|$HOIST_BASELINE_HOSTS|$HOIST_APP\" >> gate.log; exit $(cat verdict 2>/dev/null || echo 0)"]
interval = "200ms"
count = 2
consecutive_errors = 0
"#;

/// 3 hosts: a canary with a 1 s bake, then one batch of 2; `extra` TOML.
fn fleet(extra: &str) -> Fleet {
    Fleet::ssh(3)
        .toml(&format!(
            "[strategy]\ncanary = 1\ncanary_pause = \"1s\"\nbatch = 2\n\n[diagnose]\ncommands = [\"echo looked at $HOIST_HOST\"]\n\n{extra}"
        ))
        .write()
}

fn verdict(f: &Fleet, code: u8) {
    std::fs::write(f.path().join("verdict"), code.to_string()).unwrap();
}

fn analysis(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events.iter().filter(|e| e["event"] == "analysis").collect()
}

/// web1 went to the new release and came back to `v1`; web2 and web3 were
/// never switched.
fn only_the_canary_came_back(f: &Fleet, v1: &str, events: &[serde_json::Value]) {
    let v2 = events.last().unwrap()["release"].as_str().unwrap();
    assert_ne!(v1, v2);
    assert_eq!(f.current("web1").as_deref(), Some(v1));
    assert!(f.switched_to("web1", v2), "the canary was switched");
    for host in ["web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1), "{host}");
        f.assert_holds_nothing_of(host, v2);
    }
}

#[test]
fn a_failing_command_gate_rolls_the_canary_back_after_diagnose() {
    let f = fleet(GATE);
    let v1 = f.on_v1_then_v2();
    std::fs::remove_file(f.path().join("gate.log")).ok();
    verdict(&f, 1);
    let events = f.events(&["deploy", "--json"], 5);
    let samples = analysis(&events);
    assert_eq!(
        samples.len(),
        1,
        "the first failure ends the gate: {samples:?}"
    );
    assert_eq!(samples[0]["gate"], "errors");
    assert_eq!(samples[0]["step"], "canary bake");
    assert_eq!(samples[0]["verdict"], "fail");
    assert_eq!(samples[0]["value"], 1);
    let log = std::fs::read_to_string(f.path().join("gate.log")).unwrap();
    assert_eq!(log.lines().next(), Some("web1|web2 web3|shop-api"), "{log}");
    assert!(said(
        &events,
        "rollout stopped: gate errors 1 of 1 sample(s) failed"
    ));
    assert!(said(&events, "last values: 1"));
    let diagnosed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "host_diagnostics")
        .collect();
    assert_eq!(diagnosed.len(), 1, "{diagnosed:?}");
    assert_eq!(diagnosed[0]["host"], "web1");
    let diag = position_of(&events, "host_diagnostics");
    let rollback = position_of(&events, "rollback_started");
    assert!(diag < rollback, "diagnose before the rollback");
    only_the_canary_came_back(&f, &v1, &events);
}

fn position_of(events: &[serde_json::Value], event: &str) -> usize {
    events
        .iter()
        .position(|e| e["event"] == event)
        .unwrap_or_else(|| panic!("no {event}"))
}

#[test]
fn plain_output_names_the_failed_gate_with_its_last_values() {
    let f = fleet(&GATE.replace("count = 2", "count = 3\nfailure_limit = 1"));
    f.on_v1_then_v2();
    verdict(&f, 1);
    let out = f.hoist(&["deploy"]).assert().code(5).get_output().clone();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("gate errors [canary bake 1/3]: fail, value 1"),
        "{text}"
    );
    assert!(
        text.contains("gate errors 2 of 2 sample(s) failed (failure_limit 1) during the canary bake; last values: 1, 1"),
        "{text}"
    );
}

#[test]
fn a_passing_gate_lets_every_wave_go_and_wave_bakes_sample_it_again() {
    let f = fleet(GATE);
    // wave_bake belongs to [strategy]: written in the table itself.
    let toml = std::fs::read_to_string(f.path().join("deploy.toml")).unwrap();
    std::fs::write(
        f.path().join("deploy.toml"),
        toml.replace("batch = 2\n", "batch = 2\nwave_bake = \"500ms\"\n"),
    )
    .unwrap();
    f.on_v1_then_v2();
    let plan = f.events(&["plan", "--json"], 0);
    let text = serde_json::to_string(&plan).unwrap();
    assert!(
        text.contains("wave bake 500ms"),
        "plan shows the wave bake: {text}"
    );
    assert!(
        text.contains("analysis gate errors: command sh -c"),
        "plan shows the gate: {text}"
    );
    let events = f.events(&["deploy", "--json"], 0);
    let steps: Vec<&str> = analysis(&events)
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["canary bake", "canary bake", "wave 2 bake", "wave 2 bake"]
    );
    assert!(analysis(&events).iter().all(|e| e["verdict"] == "pass"));
    assert!(
        !events.iter().any(|e| e["event"] == "traffic_step"),
        "no [traffic]: no weight is ever set"
    );
    for host in ["web1", "web2", "web3"] {
        assert_eq!(f.current(host), f.current("web1"), "{host}");
    }
    let log = std::fs::read_to_string(f.path().join("gate.log")).unwrap();
    assert!(
        log.lines().any(|l| l == "web1 web2 web3||shop-api"),
        "after the last wave: {log}"
    );
}

#[test]
fn a_failing_host_command_gate_in_a_wave_bake_rolls_back_only_what_was_switched() {
    let gate = r#"[[analysis]]
name = "fivexx"
host_command = ["sh", "-c", "test ! -e \"$HOIST_DEPLOY_TO/FAIL\""]
interval = "200ms"
count = 2
"#;
    let f = fleet(gate);
    let toml = std::fs::read_to_string(f.path().join("deploy.toml")).unwrap();
    std::fs::write(
        f.path().join("deploy.toml"),
        toml.replace(
            "canary_pause = \"1s\"",
            "canary_pause = \"0s\"\nwave_bake = \"400ms\"",
        ),
    )
    .unwrap();
    let v1 = f.on_v1_then_v2();
    f.mark("web1", "FAIL");
    let events = f.events(&["deploy", "--json"], 5);
    let samples = analysis(&events);
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0]["step"], "wave 1 bake");
    assert_eq!(samples[0]["value"]["web1"], 1);
    assert_eq!(samples[0]["verdict"], "fail");
    only_the_canary_came_back(&f, &v1, &events);
}

#[test]
fn a_dry_run_gate_goes_on_and_says_it_would_have_stopped_the_rollout() {
    let f = fleet(&format!("{GATE}dry_run = true\n"));
    f.on_v1_then_v2();
    verdict(&f, 1);
    let events = f.events(&["deploy", "--json"], 0);
    let samples = analysis(&events);
    assert_eq!(samples[0]["verdict"], "fail");
    assert_eq!(samples[0]["dry_run"], true);
    assert!(said(
        &events,
        "dry_run: it would have stopped the rollout; going on"
    ));
    let v2 = events.last().unwrap()["release"].as_str().unwrap();
    for host in ["web1", "web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v2), "{host}");
    }
}

/// The gate answers 2 (inconclusive) with `on_inconclusive = on`.
fn inconclusive(on: &str) -> (Fleet, String) {
    let f = fleet(&format!("{GATE}on_inconclusive = \"{on}\"\n"));
    let v1 = f.on_v1_then_v2();
    verdict(&f, 2);
    (f, v1)
}

#[test]
fn an_inconclusive_gate_fails_with_on_inconclusive_fail() {
    let (f, v1) = inconclusive("fail");
    let events = f.events(&["deploy", "--json"], 5);
    assert_eq!(analysis(&events)[0]["verdict"], "inconclusive");
    assert!(said(&events, "gate errors inconclusive after 1 sample(s)"));
    only_the_canary_came_back(&f, &v1, &events);
}

#[test]
fn an_inconclusive_gate_goes_on_saying_so_with_on_inconclusive_pass() {
    let (f, _) = inconclusive("pass");
    let events = f.events(&["deploy", "--json"], 0);
    assert!(said(&events, "on_inconclusive = \"pass\": going on"));
    let v2 = events.last().unwrap()["release"].as_str().unwrap();
    assert_eq!(f.current("web3").as_deref(), Some(v2));
}

#[test]
fn an_inconclusive_gate_that_would_pause_fails_without_a_terminal() {
    let (f, v1) = inconclusive("pause");
    let events = f.events(&["deploy", "--json", "--yes"], 5);
    assert!(said(
        &events,
        "on_inconclusive = \"pause\" and there is no terminal to ask"
    ));
    only_the_canary_came_back(&f, &v1, &events);
}

#[test]
fn a_provider_that_cannot_answer_turns_inconclusive_after_consecutive_errors() {
    let f = fleet(GATE);
    f.on_v1_then_v2();
    let toml = std::fs::read_to_string(f.path().join("deploy.toml")).unwrap();
    let broken = toml
        .replace("[\"sh\", \"-c\",", "[\"./no-such-gate\",")
        .replace(
            "consecutive_errors = 0",
            "consecutive_errors = 1\non_inconclusive = \"fail\"",
        );
    std::fs::write(f.path().join("deploy.toml"), broken).unwrap();
    let events = f.events(&["deploy", "--json"], 5);
    let verdicts: Vec<&str> = analysis(&events)
        .iter()
        .map(|e| e["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["error", "error"]);
    assert!(
        analysis(&events)[0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot run ./no-such-gate")
    );
}

#[test]
fn gates_are_strict() {
    for (gate, says) in [
        (
            "name = \"a\"\ncommand = [\"true\"]\nintervall = \"1s\"\n",
            "intervall",
        ),
        (
            "name = \"a\"\ncommand = [\"true\"]\nhost_command = [\"true\"]\n",
            "exactly one of",
        ),
        (
            "name = \"a\"\nprometheus = { url = \"http://p:9090\", query = \"up\", pass = \"0.5\" }\n",
            "expected a comparison",
        ),
        (
            "name = \"a\"\ncommand = [\"true\"]\non_inconclusive = \"maybe\"\n",
            "\"pause\", \"fail\" or \"pass\"",
        ),
    ] {
        let f = Fleet::ssh(1).toml(&format!("[[analysis]]\n{gate}")).write();
        let out = f.hoist(&["plan"]).assert().code(2).get_output().clone();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(says), "{gate}: {text}");
    }
}

/// After a deploy of v1 without gates, a Prometheus gate whose server does
/// not listen, with `on_inconclusive = on`.
fn unreachable_prometheus(on: &str) -> (Fleet, String) {
    let f = fleet("");
    let v1 = f.on_v1_then_v2();
    let port = crate::support::lb::free_port();
    let toml = std::fs::read_to_string(f.path().join("deploy.toml")).unwrap();
    let gate = format!(
        "\n[[analysis]]\nname = \"prom\"\nprometheus = {{ url = \"http://127.0.0.1:{port}\", query = 'sum(up{{instance=~\"{{{{canary}}}}\"}})', pass = \"canary >= baseline\" }}\ninterval = \"200ms\"\nconsecutive_errors = 1\non_inconclusive = \"{on}\"\n"
    );
    std::fs::write(f.path().join("deploy.toml"), toml + &gate).unwrap();
    (f, v1)
}

#[test]
fn an_unreachable_prometheus_follows_on_inconclusive() {
    let (f, v1) = unreachable_prometheus("fail");
    let events = f.events(&["deploy", "--json"], 5);
    let samples = analysis(&events);
    assert_eq!(
        samples.len(),
        2,
        "one error tolerated, the second ends it: {samples:?}"
    );
    assert!(samples.iter().all(|e| e["verdict"] == "error"));
    assert!(
        samples[0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach")
    );
    assert!(said(&events, "gate prom inconclusive after 2 sample(s)"));
    only_the_canary_came_back(&f, &v1, &events);

    let (f, _) = unreachable_prometheus("pass");
    let events = f.events(&["deploy", "--json"], 0);
    assert!(said(&events, "on_inconclusive = \"pass\": going on"));
    let v2 = events.last().unwrap()["release"].as_str().unwrap();
    assert_eq!(f.current("web3").as_deref(), Some(v2));

    let (f, v1) = unreachable_prometheus("pause");
    let events = f.events(&["deploy", "--json"], 5);
    assert!(said(&events, "there is no terminal to ask"));
    only_the_canary_came_back(&f, &v1, &events);
}
