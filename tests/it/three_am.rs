//! The 3 am shift (issue 12): evidence kept before a rollback, read back
//! later from any machine, and live output from every host.

use std::process::{Command, Stdio};

use crate::support::fleet::{Fleet, HEALTH};
use crate::support::project::{ndjson, printed, whoami};

/// Where an event is in the run.
fn position(events: &[serde_json::Value], what: impl Fn(&serde_json::Value) -> bool) -> usize {
    events
        .iter()
        .position(what)
        .unwrap_or_else(|| panic!("no such event in {events:#?}"))
}

#[test]
fn a_canary_failing_health_leaves_its_diagnostics_before_the_rollback() {
    let f = Fleet::ssh(2)
        .toml(&format!(
            "{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\n\
             [diagnose]\ncommands = [\"echo \\\"diag $HOIST_HOST $HOIST_RELEASE\\\"\", \"echo disk-full >&2; exit 4\"]"
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    f.mark("web1", "FAIL");
    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    let events = ndjson(&out.stdout);
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();

    let at = position(&events, |e| e["event"] == "host_diagnostics");
    let found = &events[at];
    assert_eq!(found["host"], "web1");
    assert_eq!(found["phase"], "health");
    assert_eq!(found["release"], v2.as_str());
    let commands = found["commands"].as_array().unwrap();
    assert_eq!(commands[0]["output"][0], format!("diag web1 {v2}"));
    assert_eq!(commands[0]["exit_code"], 0);
    assert_eq!(commands[1]["output"][0], "disk-full");
    assert_eq!(commands[1]["exit_code"], 4);
    // Evidence first, then the rollback (which restarts what was looked at).
    assert!(at < position(&events, |e| e["event"] == "rollback_started"));
    assert!(at < position(&events, |e| e["event"] == "host_failed"));
    assert_eq!(f.current("web1").as_deref(), Some(v1.as_str()));
    // The failure's display carries the last lines.
    let human = String::from_utf8_lossy(&out.stderr);
    assert!(human.contains("diagnostics, last lines:"), "{human}");
    assert!(human.contains("| disk-full"), "{human}");
    // Kept on the host.
    let kept = f.deploy_path("web1").join(".hoist/diagnostics").join(&v2);
    assert!(kept.is_file(), "{}", kept.display());

    // Another machine: a fresh working directory, only the file.
    let elsewhere = tempfile::tempdir().unwrap();
    let status = |extra: &[&str]| {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hoist"));
        cmd.current_dir(elsewhere.path())
            .arg("-c")
            .arg(f.path().join("deploy.toml"))
            .args(["status", "--last-failure"])
            .args(extra)
            .env("HOME", elsewhere.path())
            .env("USER", whoami())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("HOIST_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let text = printed(&out);
    assert!(
        text.contains("diagnostics after the health failure"),
        "{text}"
    );
    assert!(text.contains(&format!("| diag web1 {v2}")), "{text}");
    assert!(
        text.contains("$ echo disk-full >&2; exit 4  (exit 4)"),
        "{text}"
    );
    let out = status(&["--json"]);
    let events = ndjson(&out.stdout);
    let record = events
        .iter()
        .find(|e| e["event"] == "host_diagnostics")
        .unwrap();
    assert_eq!(record["host"], "web1");
    assert_eq!(record["commands"][1]["output"][0], "disk-full");
}
