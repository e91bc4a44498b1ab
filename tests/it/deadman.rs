//! The dead-man switch (issue 25) on real OpenSSH hosts: a switched host
//! goes back by itself when hoist dies, cannot reach it after its switch,
//! or abandons its cleanup; a confirmed one keeps nothing running; an old
//! watchdog never undoes a newer deploy. With a short `deadman_timeout`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::fleet::{FirstOnPath, Fleet, HEALTH, SshSetup};
use crate::support::project::{ndjson, printed, summary_host};

/// How long a host waits for hoist in these tests.
const TIMEOUT_S: u64 = 3;

/// After a rollback, the hook writes where it went and from where.
const AFTER_ROLLBACK: &str = r#"after_rollback = ["printf '%s from %s\n' \"$HOIST_RELEASE\" \"$HOIST_PREVIOUS_RELEASE\" >> \"$HOIST_DEPLOY_TO/after_rollback.ran\""]"#;

/// `n` SSH hosts on v1 (deployed with the switch armed and confirmed),
/// the artifact now v2, with `strategy` lines added and a bake of
/// `bake` after the canary.
fn fleet(n: usize, setup: SshSetup, strategy: &str, hooks: &str, bake: &str) -> (Fleet, String) {
    let f = Fleet::ssh_with(n, setup)
        .toml(&format!(
            "{HEALTH}\n[hooks]\n{AFTER_ROLLBACK}\n{hooks}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\ndeadman_timeout = \"{TIMEOUT_S}s\"\n{strategy}"
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    for host in f.host_names() {
        assert_left_nothing(&f, &host);
    }
    set(&f, "canary_pause", "0s", bake);
    (f, v1)
}

/// Changes `key = "was"` to `key = "now"` in deploy.toml.
fn set(f: &Fleet, key: &str, was: &str, now: &str) {
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let from = format!("{key} = \"{was}\"");
    assert!(text.contains(&from), "{text}");
    std::fs::write(&toml, text.replace(&from, &format!("{key} = \"{now}\""))).unwrap();
}

/// The watchdog processes of `host` (its marker and deploy_to in their
/// command line), with the program each runs.
fn watchdogs(f: &Fleet, host: &str) -> Vec<(u32, String)> {
    let deploy_to = f.deploy_path(host).display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // `sh -c SCRIPT hoist-deadman RUN`: the marker is its $0.
        let watchdog = args.iter().any(|a| a == "hoist-deadman")
            && args.iter().any(|a| a.contains(&deploy_to));
        if watchdog {
            let exe = std::fs::read_link(entry.path().join("exe"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            found.push((pid, exe));
        }
    }
    found
}

/// What is left of the dead-man switch in a host's files.
fn markers(f: &Fleet, host: &str) -> Vec<String> {
    std::fs::read_dir(f.deploy_path(host).join(".hoist/deadman"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn assert_left_nothing(f: &Fleet, host: &str) {
    assert_eq!(watchdogs(f, host), [], "{host}: a watchdog still runs");
    assert_eq!(markers(f, host), Vec::<String>::new(), "{host}");
}

/// Waits until `done`, at most `limit`; how long it took.
fn wait_until(limit: Duration, what: &str, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// Long enough for a host to go back by itself and say so.
fn by_itself() -> Duration {
    Duration::from_secs(TIMEOUT_S + 6)
}

/// The events of a run read until its output ends (it may be killed:
/// no summary then), `on_event` seeing each as it comes.
fn events_until_end(
    child: &mut std::process::Child,
    mut on_event: impl FnMut(&serde_json::Value),
) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let mut events = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        on_event(&event);
        events.push(event);
    }
    events
}

fn spawn_json(f: &Fleet, args: &[&str]) -> std::process::Child {
    let mut all = args.to_vec();
    all.push("--json");
    f.spawn(&all)
}

/// The host's journal lines of `event`.
fn lines_of(f: &Fleet, host: &str, event: &str) -> Vec<serde_json::Value> {
    f.journal(host)
        .into_iter()
        .filter(|e| e["event"] == event)
        .collect()
}

/// `sh` on the hosts' PATH is `shell` (dash, bash or busybox's).
fn shell_first(shell: &str) -> FirstOnPath {
    let run = match shell {
        "busybox" => "exec busybox sh \"$@\"".to_string(),
        other => format!("exec {other} \"$@\""),
    };
    FirstOnPath::new("sh", &format!("#!/bin/sh\n{run}\n"))
}

fn a_killed_hoist_leaves_the_canary_to_go_back_by_itself(shell: &str) {
    if Command::new(shell).arg("-c").arg("true").status().is_err() {
        panic!("{shell} is not installed (tests/run.sh installs busybox)");
    }
    let sh = shell_first(shell);
    let (f, v1) = fleet(3, sh.setup(), "batch = 2", "", "10m");
    let mut child = spawn_json(&f, &["deploy"]);
    let pid = child.id().to_string();
    let mut killed = None;
    let events = events_until_end(&mut child, |v| {
        if killed.is_none() && v["event"] == "host_done" && v["host"] == "web1" {
            Command::new("kill").args(["-KILL", &pid]).status().unwrap();
            killed = Some(Instant::now());
        }
    });
    let killed = killed.unwrap_or_else(|| panic!("the canary never ended: {events:#?}"));
    child.wait().unwrap();
    let v2 = events
        .iter()
        .find(|e| e["event"] == "host_done" && e["host"] == "web1")
        .unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(f.current("web1").as_deref(), Some(v2.as_str()));
    // The watchdog runs detached, under the shell the host gives `sh`.
    let running = watchdogs(&f, "web1");
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].1.contains(shell), "{shell}: {running:?}");

    wait_until(by_itself(), "web1 back on v1", || {
        f.current("web1").as_deref() == Some(v1.as_str())
    });
    let back_after = killed.elapsed();
    wait_until(by_itself(), "the lock freed", || !f.locked("web1"));
    assert!(
        back_after < Duration::from_secs(TIMEOUT_S + 3),
        "back {back_after:?} after the kill"
    );
    wait_until(Duration::from_secs(3), "the watchdog's end", || {
        watchdogs(&f, "web1").is_empty()
    });
    assert_left_nothing(&f, "web1");
    let ran = std::fs::read_to_string(f.deploy_path("web1").join("after_rollback.ran")).unwrap();
    assert_eq!(ran, format!("{v1} from {v2}\n"));
    let reverted = lines_of(&f, "web1", "self_reverted");
    assert_eq!(reverted.len(), 1, "{reverted:?}");
    assert_eq!(reverted[0]["release"], v1.as_str());
    assert_eq!(reverted[0]["previous"], v2.as_str());
    let why = reverted[0]["message"].as_str().unwrap();
    assert!(why.contains("no heartbeat or confirmation"), "{why}");
    let freed = lines_of(&f, "web1", "unlock");
    assert!(
        freed.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("freed by the watchdog"),
        "{freed:?}"
    );
    // No other host was touched: the dead run never switched them.
    for host in ["web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
        assert!(!f.switched_to(host, &v2), "{host}");
        assert!(lines_of(&f, host, "self_reverted").is_empty(), "{host}");
        assert_left_nothing(&f, host);
    }
    // `status` says it, with when, from what and why.
    let out = f.hoist(&["status", "--json"]).output().unwrap();
    let events = ndjson(&out.stdout);
    let told = events
        .iter()
        .find(|e| e["event"] == "host_self_reverted")
        .unwrap_or_else(|| panic!("{}", printed(&out)));
    assert_eq!(told["host"], "web1");
    assert_eq!(told["from"], v2.as_str());
    assert_eq!(told["to"], v1.as_str());
    assert_eq!(told["at"], reverted[0]["ts"]);
    let row = |host: &str| {
        events
            .iter()
            .find(|e| e["event"] == "row" && e["host"] == host)
            .unwrap()
            .clone()
    };
    assert!(
        row("web1")["self_reverted"]
            .as_str()
            .unwrap()
            .contains("went back by itself"),
        "{:?}",
        row("web1")
    );
    assert!(row("web2")["self_reverted"].is_null());
    // A deploy says it too before it goes on (the dead run's locks freed first).
    f.hoist(&["unlock", "--force"]).assert().success();
    set(&f, "canary_pause", "10m", "0s");
    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    let events = ndjson(&out.stdout);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "host_self_reverted" && e["host"] == "web1"),
        "{}",
        printed(&out)
    );
}

#[test]
fn a_killed_hoist_leaves_the_canary_to_go_back_by_itself_under_dash() {
    a_killed_hoist_leaves_the_canary_to_go_back_by_itself("dash");
}

#[test]
fn a_killed_hoist_leaves_the_canary_to_go_back_by_itself_under_bash() {
    a_killed_hoist_leaves_the_canary_to_go_back_by_itself("bash");
}

#[test]
fn a_killed_hoist_leaves_the_canary_to_go_back_by_itself_under_busybox() {
    a_killed_hoist_leaves_the_canary_to_go_back_by_itself("busybox");
}

/// An after_switch that stops the host's sshd listener (its running
/// sessions, hoist's among them, stay) on a host holding `DROP`.
const DROP_SSHD: &str = r#"after_switch = ["if [ -e \"$HOIST_DEPLOY_TO/DROP\" ]; then rm \"$HOIST_DEPLOY_TO/DROP\"; kill \"$(cat \"$HOIST_DEPLOY_TO/sshd.pid\")\"; fi"]"#;

#[test]
fn a_host_unreachable_after_its_switch_fails_at_confirmation_and_goes_back_by_itself() {
    let (mut f, v1) = fleet(2, SshSetup::default(), "", DROP_SSHD, "0s");
    let pid = f.server("web2").pid();
    std::fs::write(f.deploy_path("web2").join("sshd.pid"), pid.to_string()).unwrap();
    f.mark("web2", "DROP");
    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    let events = ndjson(&out.stdout);
    // The rest follows the failure policy (rollback): web1 is put back.
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let summary = events.last().unwrap();
    let v2 = summary["release"].as_str().unwrap().to_string();
    let web2 = summary_host(summary, "web2");
    assert_eq!(web2["result"], "failed", "{web2}");
    let failed = events
        .iter()
        .find(|e| e["event"] == "host_failed" && e["host"] == "web2")
        .unwrap();
    assert_eq!(failed["phase"], "confirm", "{failed}");
    let error = web2["error"].as_str().unwrap();
    assert!(error.contains("unreachable after its switch"), "{error}");
    assert_eq!(summary_host(summary, "web1")["result"], "rolled_back");
    assert_eq!(f.current("web1").as_deref(), Some(v1.as_str()));
    assert_left_nothing(&f, "web1");
    // web2 goes back by itself.
    wait_until(by_itself(), "web2 back on v1", || {
        f.current("web2").as_deref() == Some(v1.as_str())
    });
    wait_until(by_itself(), "web2's lock freed", || !f.locked("web2"));
    wait_until(Duration::from_secs(3), "the watchdog's end", || {
        watchdogs(&f, "web2").is_empty()
    });
    assert_left_nothing(&f, "web2");
    let ran = std::fs::read_to_string(f.deploy_path("web2").join("after_rollback.ran")).unwrap();
    assert_eq!(ran, format!("{v1} from {v2}\n"));
    // Reachable again: `status` says what happened.
    f.server_mut("web2").stop();
    f.server_mut("web2").start_again();
    let out = f.hoist(&["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    let events = ndjson(&out.stdout);
    let told: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "host_self_reverted")
        .collect();
    assert_eq!(told.len(), 1, "{events:#?}");
    assert_eq!(told[0]["host"], "web2");
    assert_eq!(told[0]["from"], v2.as_str());
}

#[test]
fn a_double_ctrl_c_that_abandons_the_cleanup_leaves_every_switched_host_to_go_back() {
    // The batch wave's hooks take a while: Ctrl-C twice while they run.
    let (f, v1) = fleet(3, SshSetup::default(), "batch = 2", "", "0s");
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let hook = r#"after_switch = ["if [ \"$HOIST_HOST\" != web1 ]; then sleep 3; fi"]"#;
    std::fs::write(
        &toml,
        text.replace("[hooks]\n", &format!("[hooks]\n{hook}\n")),
    )
    .unwrap();
    let mut child = spawn_json(&f, &["deploy"]);
    let pid = child.id().to_string();
    let mut in_hook = 0;
    let events = events_until_end(&mut child, |v| {
        if v["event"] == "host_phase" && v["phase"] == "after_switch" && v["host"] != "web1" {
            in_hook += 1;
            if in_hook == 2 {
                Command::new("kill").args(["-INT", &pid]).status().unwrap();
                std::thread::sleep(Duration::from_millis(200));
                Command::new("kill").args(["-INT", &pid]).status().unwrap();
            }
        }
    });
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(1), "{events:#?}");
    let said = serde_json::to_string(&events).unwrap();
    assert!(said.contains("cleanup abandoned"), "{said}");
    assert!(
        said.contains("go back by themselves within 3s (the dead-man switch)"),
        "{said}"
    );
    for host in ["web1", "web2", "web3"] {
        wait_until(by_itself(), &format!("{host} back on v1"), || {
            f.current(host).as_deref() == Some(v1.as_str())
        });
        wait_until(by_itself(), "the lock freed", || !f.locked(host));
        assert_eq!(lines_of(&f, host, "self_reverted").len(), 1, "{host}");
        wait_until(Duration::from_secs(3), "the watchdog's end", || {
            watchdogs(&f, host).is_empty()
        });
        assert_left_nothing(&f, host);
    }
}

#[test]
fn a_deploy_then_until_canary_and_promote_leave_no_watchdog_behind() {
    let (f, _) = fleet(3, SshSetup::default(), "batch = 2", "", "0s");
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v2 = f.current("web1").unwrap();
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v2.as_str()));
        assert_left_nothing(&f, &host);
    }
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    f.hoist(&["deploy", "--until", "canary", "--yes"])
        .assert()
        .success();
    let v3 = f.current("web1").unwrap();
    assert_ne!(v3, v2);
    for host in f.host_names() {
        assert_left_nothing(&f, &host);
    }
    // Longer than the timeout: a canary confirmed stays on its release.
    std::thread::sleep(Duration::from_secs(TIMEOUT_S + 2));
    assert_eq!(f.current("web1").as_deref(), Some(v3.as_str()));
    f.hoist(&["promote", "--yes"]).assert().success();
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v3.as_str()), "{host}");
        assert_left_nothing(&f, &host);
        assert!(lines_of(&f, &host, "self_reverted").is_empty(), "{host}");
    }
}

#[test]
fn a_blue_green_deploy_leaves_no_watchdog_behind() {
    let f = Fleet::ssh(4);
    let toml = format!(
        r#"[groups.blue]
hosts = ["web1", "web2"]

[groups.green]
hosts = ["web3", "web4"]

[strategy]
kind = "blue-green"
deadman_timeout = "{TIMEOUT_S}s"

[blue_green]
colors = ["blue", "green"]
switch_local = ["printf '%s' \"$HOIST_COLOR\" > lb"]

{HEALTH}
"#
    );
    let f = f.toml(&toml).write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let lb = std::fs::read_to_string(f.path().join("lb")).unwrap();
    assert_eq!(lb, "green");
    for host in f.host_names() {
        assert_left_nothing(&f, &host);
    }
    std::thread::sleep(Duration::from_secs(TIMEOUT_S + 2));
    for host in f.host_names() {
        assert!(lines_of(&f, &host, "self_reverted").is_empty(), "{host}");
        assert!(f.current(&host).is_some(), "{host}");
    }
}

#[test]
fn an_older_dead_runs_watchdog_does_not_undo_a_newer_deploy() {
    let (f, v1) = fleet(2, SshSetup::default(), "", "", "10m");
    // The dead run's watchdog waits longer than the next deploy takes.
    set(&f, "deadman_timeout", &format!("{TIMEOUT_S}s"), "8s");
    let mut child = spawn_json(&f, &["deploy"]);
    let pid = child.id().to_string();
    let mut killed = None;
    events_until_end(&mut child, |v| {
        if killed.is_none() && v["event"] == "host_done" && v["host"] == "web1" {
            Command::new("kill").args(["-KILL", &pid]).status().unwrap();
            killed = Some(Instant::now());
        }
    });
    child.wait().unwrap();
    assert!(killed.is_some());
    let v2 = f.current("web1").unwrap();
    assert_ne!(v2, v1);
    assert_eq!(watchdogs(&f, "web1").len(), 1);
    // Someone frees the dead run's lock and deploys v3.
    f.hoist(&["unlock", "--force"]).assert().success();
    set(&f, "canary_pause", "10m", "0s");
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v3 = f.current("web1").unwrap();
    assert_ne!(v3, v2);
    // The old watchdog's deadline passes: it finds v3 and does nothing.
    wait_until(Duration::from_secs(14), "the old watchdog's end", || {
        watchdogs(&f, "web1").is_empty()
    });
    assert_eq!(f.current("web1").as_deref(), Some(v3.as_str()));
    assert!(lines_of(&f, "web1", "self_reverted").is_empty());
    assert!(!f.deploy_path("web1").join("after_rollback.ran").exists());
    assert_left_nothing(&f, "web1");
    assert!(!Path::new(&f.deploy_path("web1").join(".hoist/lock")).exists());
}

#[test]
fn deadman_timeout_0s_arms_nothing_and_plan_says_so() {
    let f = Fleet::ssh(2)
        .toml("[strategy]\ncanary = 1\ncanary_pause = \"0s\"\ndeadman_timeout = \"0s\"")
        .write();
    let out = f.hoist(&["plan"]).output().unwrap();
    assert!(
        printed(&out).contains("dead-man switch: off"),
        "{}",
        printed(&out)
    );
    let mut child = spawn_json(&f, &["deploy", "--yes"]);
    let mut seen = false;
    events_until_end(&mut child, |v| {
        // Right after the canary's switch: nothing watches it.
        if !seen && v["event"] == "host_done" && v["host"] == "web1" {
            seen = true;
            assert_eq!(watchdogs(&f, "web1"), []);
        }
    });
    assert!(child.wait().unwrap().success());
    assert!(seen);
    for host in f.host_names() {
        assert!(
            !f.deploy_path(&host).join(".hoist/deadman").exists(),
            "{host}"
        );
    }
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace("deadman_timeout = \"0s\"\n", "")).unwrap();
    let out = f.hoist(&["plan"]).output().unwrap();
    assert!(
        printed(&out).contains("unless hoist confirms it within 1m"),
        "{}",
        printed(&out)
    );
}

/// An after_switch that keeps hoist's heartbeats from reaching the host's
/// watchdog (its `beat` file made a directory, which the heartbeats'
/// renames go into), then takes longer than the timeout: the host goes
/// back by itself while hoist is alive.
const RUN_OUT: &str = r#"after_switch = ["if [ -e \"$HOIST_DEPLOY_TO/RUN_OUT\" ]; then rm \"$HOIST_DEPLOY_TO/RUN_OUT\"; for d in \"$HOIST_DEPLOY_TO\"/.hoist/deadman/*/; do rm -f \"$d/beat\"; mkdir \"$d/beat\"; done; sleep 6; fi"]"#;

#[test]
fn a_host_that_goes_back_by_itself_while_hoist_runs_is_told_and_the_run_exits_5() {
    let (f, v1) = fleet(2, SshSetup::default(), "", RUN_OUT, "0s");
    f.mark("web2", "RUN_OUT");
    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    let events = ndjson(&out.stdout);
    // web2 went back by itself, web1 was put back by hoist: all back.
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    let told = events
        .iter()
        .find(|e| e["event"] == "host_self_reverted")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(told["host"], "web2");
    assert_eq!(told["to"], v1.as_str());
    let summary = events.last().unwrap();
    assert_eq!(summary_host(summary, "web2")["result"], "rolled_back");
    assert_eq!(summary_host(summary, "web1")["result"], "rolled_back");
    for host in ["web1", "web2"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
        assert_left_nothing(&f, host);
        assert!(!f.locked(host), "{host}");
    }
    assert_eq!(lines_of(&f, "web2", "self_reverted").len(), 1);
    assert!(lines_of(&f, "web1", "self_reverted").is_empty());
    // Said in words too.
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("went back by itself"), "{text}");
}

/// The watchdog starts in the switch's own command, first: a host where it
/// cannot start (its `.hoist/deadman` made a file by before_switch) is not
/// switched, fails at its switch saying why, and the rollout stops there.
#[test]
fn a_host_whose_watchdog_cannot_start_is_not_switched() {
    let block = r#"before_switch = ["rm -rf \"$HOIST_DEPLOY_TO/.hoist/deadman\" && touch \"$HOIST_DEPLOY_TO/.hoist/deadman\""]"#;
    let (f, v1) = fleet(2, SshSetup::default(), "", "", "0s");
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replacen("[hooks]\n", &format!("[hooks]\n{block}\n"), 1),
    )
    .unwrap();
    let out = f.hoist(&["deploy", "--yes"]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains("the dead-man switch could not be armed"),
        "{text}"
    );
    for host in f.host_names() {
        assert_eq!(
            f.current(&host).as_deref(),
            Some(v1.as_str()),
            "{host}: {text}"
        );
        assert_eq!(watchdogs(&f, &host), [], "{host}");
        assert_eq!(
            lines_of(&f, &host, "deploy").len(),
            1,
            "{host}: only v1's deploy"
        );
    }
}

/// A heartbeat that finds a host gone back by itself stops the rollout
/// there: the canary's bake ends at once and no later wave starts (the
/// rest of the fleet is never switched), exit 5 with everything back.
#[test]
fn a_host_found_gone_back_stops_the_rollout_at_once() {
    let (f, v1) = fleet(3, SshSetup::default(), "batch = 2", RUN_OUT, "10m");
    f.mark("web1", "RUN_OUT");
    let started = Instant::now();
    let out = f.hoist(&["deploy", "--json"]).output().unwrap();
    let took = started.elapsed();
    let events = ndjson(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    // The 10-minute bake did not run out: it ended when web1 was found back.
    assert!(took < Duration::from_secs(120), "took {took:?}");
    let told = events
        .iter()
        .find(|e| e["event"] == "host_self_reverted")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(told["host"], "web1");
    let v2 = told["from"].as_str().unwrap();
    for host in ["web2", "web3"] {
        assert!(!f.switched_to(host, v2), "{host} was switched");
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
        assert_left_nothing(&f, host);
    }
    assert_eq!(f.current("web1").as_deref(), Some(v1.as_str()));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("went back by itself"), "{text}");
}
