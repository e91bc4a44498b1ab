//! The canary in CI, on real OpenSSH hosts: a timed canary_pause that bakes,
//! `deploy --until canary` then `promote` or `abort` from elsewhere, and
//! `--lock-wait`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::fleet::{FirstOnPath, Fleet, HEALTH};
use crate::support::project::{
    assert_every_host_was_sent_bytes, follow, ndjson, phase_at, position, printed, said, times_in,
};

/// `n` SSH hosts web1..webN, trusted, with `extra` TOML.
fn fleet(n: usize, extra: &str) -> Fleet {
    Fleet::ssh(n).toml(extra).write()
}

/// `hoist ARGS --json` started in the background, its NDJSON read line by line.
fn spawn_json(f: &Fleet, args: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(args)
        .arg("--json")
        .env("HOME", f.path().join("home"))
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The canary web1 went to `v2` and came back to `v1`; web2 and web3
/// were never switched and hold nothing of `v2` (an upload made ahead of
/// their wave was taken back with its sum and manifest).
fn only_the_canary_went_and_came_back(f: &Fleet, v1: &str, v2: &str) {
    assert_eq!(f.current("web1").as_deref(), Some(v1), "canary back");
    for host in ["web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1), "{host}");
        f.assert_holds_nothing_of(host, v2);
    }
}

#[test]
fn a_canary_that_turns_unhealthy_during_the_bake_is_rolled_back() {
    let f = fleet(
        3,
        &format!("{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"6s\"\nbatch = 2"),
    );
    let v1 = f.on_v1_then_v2();
    let mut child = spawn_json(&f, &["deploy"]);
    let mut bake_started = None;
    let events = follow(&mut child, |line| {
        if bake_started.is_none() && line.contains("\"bake_started\"") {
            bake_started = Some(Instant::now());
            std::thread::sleep(Duration::from_secs(2));
            f.mark("web1", "FAIL");
        }
    });
    assert_eq!(child.wait().unwrap().code(), Some(5));
    let stopped = bake_started.expect("the bake started").elapsed();
    assert!(
        stopped < Duration::from_secs(5),
        "the bake stopped at the failing probe, not at its end ({stopped:?})"
    );
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    let done = events.iter().find(|e| e["event"] == "bake_done").unwrap();
    assert_eq!(done["healthy"], false);
    let failed = events
        .iter()
        .find(|e| e["event"] == "host_failed" && e["host"] == "web1")
        .unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("during the bake")
    );
    only_the_canary_went_and_came_back(&f, &v1, &v2);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "wave_started")
            .count(),
        1
    );
}

#[test]
fn the_next_wave_is_uploaded_during_the_bake_and_only_switched_after_it() {
    let f = fleet(
        3,
        &format!("{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"2s\"\nbatch = 2"),
    );
    f.on_v1_then_v2();
    let mut child = spawn_json(&f, &["deploy"]);
    let events = follow(&mut child, |_| {});
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let bake = position(&events, |e| e["event"] == "bake_started");
    let baked = position(&events, |e| e["event"] == "bake_done");
    let wave2 = position(&events, |e| e["event"] == "wave_started" && e["wave"] == 2);
    assert!(baked < wave2);
    for host in ["web2", "web3"] {
        let upload = phase_at(&events, host, "upload");
        let ready = phase_at(&events, host, "ready");
        let switch = phase_at(&events, host, "switch");
        assert!(
            bake < upload && ready < baked,
            "{host}: uploaded during the bake"
        );
        assert!(wave2 < switch, "{host}: switched in its wave");
        assert_eq!(
            times_in(&events, host, "upload"),
            1,
            "{host}: not uploaded again in its wave"
        );
        assert_eq!(f.read_current(host, "README"), "v2");
    }
    assert_every_host_was_sent_bytes(&events);
}

/// Stops `child` (SIGTERM: exit 130) after 60 s unless the flag returned
/// is set first: a run waiting on a ten-minute bake for an event that never
/// comes fails its test instead of hanging it.
fn watchdog(child: &std::process::Child) -> Arc<AtomicBool> {
    let ended = Arc::new(AtomicBool::new(false));
    let (watched, pid) = (ended.clone(), child.id().to_string());
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !watched.load(Ordering::SeqCst) {
            let _ = Command::new("kill").arg(&pid).status();
        }
    });
    ended
}

/// Three hosts on v1, v2 built, and a canary bake far longer than any
/// test: it ends when the canary fails, or on Ctrl-C.
fn three_with_a_long_bake() -> (Fleet, String) {
    long_bake(Fleet::ssh(3))
}

/// [`three_with_a_long_bake`] on the three hosts of `f`.
fn long_bake(f: Fleet) -> (Fleet, String) {
    let f = f
        .toml(&format!(
            "{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 2"
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    let toml = f.path().join("deploy.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("canary_pause = \"0s\"", "canary_pause = \"10m\""),
    )
    .unwrap();
    (f, v1)
}

#[test]
fn ctrl_c_during_the_bake_takes_back_the_uploads_ahead_and_says_so() {
    let (f, v1) = three_with_a_long_bake();
    let mut child = spawn_json(&f, &["deploy"]);
    let ended = watchdog(&child);
    let (pid, mut ready) = (child.id().to_string(), 0);
    let events = follow(&mut child, |line| {
        if line.contains("\"phase\":\"ready\"") {
            ready += 1;
            if ready == 2 {
                let _ = Command::new("kill").args(["-INT", &pid]).status();
            }
        }
    });
    let code = child.wait().unwrap().code();
    ended.store(true, Ordering::SeqCst);
    assert_eq!(code, Some(130), "{events:#?}");
    let done = &events[position(&events, |e| e["event"] == "bake_done")];
    assert_eq!(done["healthy"], false, "{done}");
    assert_eq!(done["interrupted"], true, "{done}");
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    // The canary keeps the whole release it has; the others hold no trace of it.
    assert_eq!(f.current("web1").as_deref(), Some(v2.as_str()));
    for host in ["web2", "web3"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
        f.assert_holds_nothing_of(host, &v2);
    }
}

#[test]
fn what_was_uploaded_ahead_of_a_wave_that_never_runs_is_taken_back() {
    let (f, v1) = three_with_a_long_bake();
    let mut child = spawn_json(&f, &["deploy"]);
    let ended = watchdog(&child);
    let mut ready = 0;
    let events = follow(&mut child, |line| {
        if line.contains("\"phase\":\"ready\"") {
            ready += 1;
            if ready == 2 {
                // Both later hosts hold the new release: now the canary fails.
                f.mark("web1", "FAIL");
            }
        }
    });
    let code = child.wait().unwrap().code();
    ended.store(true, Ordering::SeqCst);
    assert_eq!(code, Some(5), "{events:#?}");
    let v2 = events.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(said(&events, "taking back"), "{events:#?}");
    only_the_canary_went_and_came_back(&f, &v1, &v2);
}

/// A `tar` that fails in any directory under one holding a file `no-tar`.
const FAILING_TAR: &str = r#"#!/bin/sh
d=$PWD
while [ -n "$d" ]; do
  if [ -e "$d/no-tar" ]; then echo "tar: no space left on device" >&2; exit 2; fi
  d=${d%/*}
done
exec /usr/bin/tar "$@"
"#;

#[test]
fn an_upload_ahead_that_fails_is_said_during_the_bake_not_after_it() {
    // The hosts' `tar` fails under a deploy_to holding `no-tar`: web3's.
    let tar = FirstOnPath::new("tar", FAILING_TAR);
    let (f, v1) = long_bake(Fleet::ssh_with(3, tar.setup()));
    std::fs::write(f.deploy_path("web3").join("no-tar"), "").unwrap();
    let mut child = spawn_json(&f, &["deploy"]);
    let ended = watchdog(&child);
    let pid = child.id().to_string();
    let events = follow(&mut child, |line| {
        if line.contains("upload ahead of its wave failed") {
            // Said while the ten-minute bake still runs: stop it.
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
    });
    let code = child.wait().unwrap().code();
    ended.store(true, Ordering::SeqCst);
    assert_eq!(code, Some(130), "{events:#?}");
    let said = position(&events, |e| {
        e["event"] == "message"
            && e["host"] == "web3"
            && e["level"] == "warn"
            && e["text"]
                .as_str()
                .is_some_and(|t| t.contains("upload ahead of its wave failed"))
    });
    let baked = position(&events, |e| e["event"] == "bake_done");
    assert!(said < baked, "{events:#?}");
    assert_eq!(f.current("web3").as_deref(), Some(v1.as_str()));
}

#[test]
fn a_canary_that_stays_healthy_through_the_bake_is_promoted() {
    let f = fleet(
        2,
        &format!("{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"1s\"\nbatch = 1"),
    );
    f.on_v1_then_v2();
    let out = f.hoist(&["deploy"]).assert().success().get_output().clone();
    let text = printed(&out);
    assert!(text.contains("baking the canary (web1) for 1.0s"), "{text}");
    assert!(
        text.contains("bake over: the canary stayed healthy"),
        "{text}"
    );
    assert_eq!(f.read_current("web2", "README"), "v2");
}

/// A copy of the project's deploy.toml and build in a fresh directory: what
/// another CI job has after its checkout and build.
fn another_checkout(f: &Fleet) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hoist-ci-job-")
        .tempdir()
        .unwrap();
    std::fs::copy(f.path().join("deploy.toml"), dir.path().join("deploy.toml")).unwrap();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    let status = Command::new("cp")
        .args(["-a"])
        .arg(f.path().join("build"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn hoist_in(f: &Fleet, dir: &std::path::Path, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = f.hoist(args);
    cmd.current_dir(dir).env("HOME", dir.join("home"));
    cmd
}

#[test]
fn until_canary_then_promote_from_another_checkout_carries_the_same_release_on() {
    let f = fleet(
        4,
        &format!("{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"manual\"\nbatch = 2"),
    );
    let v1 = f.on_v1_then_v2();
    let out = f
        .hoist(&["deploy", "--until", "canary", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v2 = ndjson(&out).last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        f.current("web1").as_deref(),
        Some(v2.as_str()),
        "the canary"
    );
    for host in ["web2", "web3", "web4"] {
        assert_eq!(f.current(host).as_deref(), Some(v1.as_str()), "{host}");
        f.assert_holds_nothing_of(host, &v2);
    }
    for host in f.host_names() {
        assert!(!f.locked(&host), "lock freed on {host}");
    }
    let status = f.hoist(&["status"]).assert().success().get_output().clone();
    let text = printed(&status);
    assert!(text.contains("waiting for promotion"), "{text}");
    // A plain deploy does not pass a release waiting for promotion.
    let blocked = f
        .hoist(&["deploy", "--yes"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        printed(&blocked).contains("hoist promote"),
        "{}",
        printed(&blocked)
    );

    let canary_release = f.deploy_path("web1").join("releases").join(&v2);
    let made = std::fs::metadata(&canary_release)
        .unwrap()
        .modified()
        .unwrap();
    let ci = another_checkout(&f);
    let out = hoist_in(&f, ci.path(), &["promote", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let events = ndjson(&out);
    assert_eq!(events.last().unwrap()["release"], v2.as_str());
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v2.as_str()), "{host}");
        assert_eq!(f.read_current(&host, "README"), "v2");
    }
    assert!(
        !events.iter().any(|e| e["host"] == "web1"
            && e["event"] == "host_phase"
            && [
                "upload",
                "unpack",
                "before_switch",
                "switch",
                "after_switch",
                "health"
            ]
            .contains(&e["phase"].as_str().unwrap())),
        "the canary is not touched again"
    );
    assert_eq!(
        std::fs::metadata(&canary_release)
            .unwrap()
            .modified()
            .unwrap(),
        made,
        "the canary's release was not uploaded again"
    );
    let switches: usize = f
        .journal("web1")
        .iter()
        .filter(|e| e["event"] == "deploy" && e["release"] == v2.as_str())
        .count();
    assert_eq!(switches, 1, "the canary was switched once");
    // Nothing waits any more.
    let again = hoist_in(&f, ci.path(), &["promote"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        printed(&again).contains("nothing is waiting"),
        "{}",
        printed(&again)
    );
    assert!(
        !printed(&f.hoist(&["status"]).assert().success().get_output().clone())
            .contains("waiting for promotion")
    );
}

#[test]
fn abort_rolls_the_waiting_canary_back_and_nothing_else() {
    let f = fleet(
        3,
        &format!("{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 2"),
    );
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy", "--until", "canary"]).assert().success();
    assert_ne!(f.current("web1").as_deref(), Some(v1.as_str()));
    let out = f.hoist(&["rollback"]).assert().code(2).get_output().clone();
    assert!(printed(&out).contains("hoist abort"), "{}", printed(&out));
    let ci = another_checkout(&f);
    hoist_in(&f, ci.path(), &["abort"]).assert().success();
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()), "{host}");
        assert!(!f.locked(&host));
    }
    assert_eq!(f.read_current("web1", "README"), "v1");
    f.hoist(&["abort"]).assert().code(2);
    f.hoist(&["promote"]).assert().code(2);
    // The fleet is free for a new deploy.
    f.hoist(&["deploy", "--yes"]).assert().success();
}

#[test]
fn promote_refuses_an_artifact_that_is_not_the_canarys() {
    let f = fleet(2, "[strategy]\ncanary = 1\nbatch = 1");
    f.on_v1_then_v2();
    f.hoist(&["deploy", "--until", "canary"]).assert().success();
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    let out = f.hoist(&["promote"]).assert().code(2).get_output().clone();
    assert!(
        printed(&out).contains("artifact differs"),
        "{}",
        printed(&out)
    );
    assert_eq!(f.read_current("web2", "README"), "v1");
}

#[test]
fn until_canary_without_a_canary_wave_is_a_usage_error() {
    let f = fleet(2, "[strategy]\ncanary = 0\nbatch = 1");
    let out = f
        .hoist(&["deploy", "--until", "canary"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(printed(&out).contains("canary is 0"), "{}", printed(&out));
    assert!(f.untouched("web1"));
}

#[test]
fn lock_wait_waits_for_another_run_then_deploys() {
    let f = fleet(
        2,
        "[hooks]\nbefore_switch = [\"sleep 3\"]\n[strategy]\ncanary = 0\nbatch = 2",
    );
    let mut first = Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(["deploy"])
        .env("HOME", f.path().join("home"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = f.deploy_path("web1").join(".hoist/lock");
    for _ in 0..200 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(lock.exists(), "the first deploy holds the lock");
    let started = Instant::now();
    let out = f
        .hoist(&["deploy", "--lock-wait", "30s"])
        .assert()
        .success()
        .get_output()
        .clone();
    let waited = started.elapsed();
    assert!(first.wait().unwrap().success());
    let text = printed(&out);
    assert!(text.contains("waiting up to 30s for the lock"), "{text}");
    assert!(
        text.contains(&crate::support::project::whoami()),
        "names the owner: {text}"
    );
    assert!(waited > Duration::from_secs(1), "it waited ({waited:?})");
    let deploys = f
        .journal("web1")
        .iter()
        .filter(|e| e["event"] == "deploy")
        .count();
    assert_eq!(deploys, 2, "both deploys ran, one after the other");
}

#[test]
fn lock_wait_gives_up_on_a_hand_lock_with_exit_4() {
    let f = fleet(2, "[strategy]\ncanary = 0\nbatch = 2");
    f.hoist(&["lock", "-m", "db migration, ask alice"])
        .assert()
        .success();
    let started = Instant::now();
    let out = f
        .hoist(&["deploy", "--lock-wait", "2s"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let waited = started.elapsed();
    let text = printed(&out);
    assert!(text.contains("db migration, ask alice"), "{text}");
    assert!(text.contains("since"), "{text}");
    // `hoist lock` has ended, but its lock is held on purpose: each host's
    // refusal names it, never "your own lock ... no longer running".
    assert!(!text.contains("no longer running"), "{text}");
    assert!(
        text.contains("failed in preflight after 0ms: locked by"),
        "{text}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "about 2s: {waited:?}"
    );
    assert!(f.untouched("web2") || f.releases("web2").is_empty());
    f.hoist(&["rollback", "--lock-wait", "1s"]).assert().code(4);
    f.hoist(&["promote", "--lock-wait", "1s"]).assert().code(4);
}

#[test]
fn a_promotion_that_fails_rolls_back_the_canary_too() {
    let f = fleet(
        3,
        &format!("{HEALTH}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 2"),
    );
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy", "--until", "canary"]).assert().success();
    f.mark("web3", "FAIL");
    f.hoist(&["promote"]).assert().code(5);
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_deref(), Some(v1.as_str()), "{host}");
    }
    // Nothing waits any more: the release was rolled back everywhere.
    let out = f.hoist(&["promote"]).assert().code(2).get_output().clone();
    assert!(
        printed(&out).contains("nothing is waiting"),
        "{}",
        printed(&out)
    );
}

#[test]
fn promote_and_abort_run_the_run_level_local_hooks() {
    let hook = "echo \\\"$HOIST_COMMAND $HOIST_RESULT $HOIST_RELEASE\\\" >> runs.log";
    let f = fleet(
        2,
        &format!(
            "[hooks]\non_start_local = [\"echo \\\"start $HOIST_COMMAND\\\" >> runs.log\"]\n\
             on_success_local = [\"{hook}\"]\non_failure_local = [\"{hook}\"]\n\
             [strategy]\ncanary = 1\nbatch = 1"
        ),
    );
    f.on_v1_then_v2();
    f.hoist(&["deploy", "--until", "canary"]).assert().success();
    f.hoist(&["promote"]).assert().success();
    let v2 = f.current("web2").unwrap();
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    f.hoist(&["deploy", "--until", "canary"]).assert().success();
    f.hoist(&["abort"]).assert().success();
    let log = std::fs::read_to_string(f.path().join("runs.log")).unwrap();
    assert!(log.contains("start promote\n"), "{log}");
    assert!(log.contains(&format!("promote done {v2}\n")), "{log}");
    assert!(log.contains("start abort\n"), "{log}");
    assert!(log.contains("abort done "), "{log}");
}
