//! Two runs on one fleet, and a lock taken from a run (issue 23 items 1-3,
//! 11; issue 22 item 7): exactly one of two racing runs wins, a run that
//! waited reads the fleet again, a run whose lock was forced open switches
//! no more hosts, and the end of a run frees its lock or says whose it is.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::fleet::{FirstOnPath, Fleet};
use crate::support::project::{Project, ndjson, printed, said, said_to, whoami};

/// A local `on_start_local` hook that holds each run until `$BARRIER`
/// (a directory) names two runs: both have then read the fleet and are
/// about to take the lock at the same instant. Without `$BARRIER` it does
/// nothing.
const TOGETHER: &str = "[hooks]\non_start_local = [\"[ -z \\\"${BARRIER:-}\\\" ] || { mkdir -p \\\"$BARRIER\\\" && : > \\\"$BARRIER/$$\\\" && i=0 && while [ $(ls \\\"$BARRIER\\\" | wc -l) -lt 2 ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; }\"]";

/// `hoist ARGS` started in the background, its output captured.
fn start(p: &Project, args: &[&str], envs: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hoist"));
    cmd.current_dir(p.path())
        .args(args)
        .env("HOME", p.path().join("home"))
        .env("USER", whoami())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("HOIST_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Two runs started together, held at [`TOGETHER`]'s barrier `round`
/// until both are about to lock; their outputs, in order.
fn race(p: &Project, round: &str, a: &[&str], b: &[&str]) -> (Output, Output) {
    let barrier = p.path().join("barriers").join(round);
    let barrier = barrier.to_str().unwrap();
    let first = start(p, a, &[("BARRIER", barrier)]);
    let second = start(p, b, &[("BARRIER", barrier)]);
    (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    )
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..3600 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Exit codes of two runs, the lower first.
fn codes(a: &Output, b: &Output) -> (i32, i32) {
    let (x, y) = (a.status.code().unwrap(), b.status.code().unwrap());
    (x.min(y), x.max(y))
}

#[test]
fn two_rollbacks_started_together_one_rolls_back_and_the_other_answers_locked() {
    let f = Fleet::ssh(4).toml(TOGETHER).write();
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v2 = f.current("web1").unwrap();
    for round in 0..8 {
        let to = if round % 2 == 0 { &v1 } else { &v2 };
        let args = ["rollback", "--to", to.as_str()];
        let (a, b) = race(&f, &round.to_string(), &args, &args);
        assert_eq!(
            codes(&a, &b),
            (0, 4),
            "round {round}:\n{}\n---\n{}",
            printed(&a),
            printed(&b)
        );
        let loser = if a.status.code() == Some(4) { &a } else { &b };
        assert!(
            printed(loser).contains(&format!("locked by {}", whoami())),
            "round {round}: {}",
            printed(loser)
        );
        for host in f.host_names() {
            assert_eq!(f.current(&host).as_ref(), Some(to), "round {round}: {host}");
            assert!(!f.locked(&host), "round {round}: {host} left locked");
        }
    }
}

#[test]
fn a_deploy_racing_a_rollback_and_two_deploys_racing_still_let_one_through() {
    let f = Fleet::ssh(4).toml(TOGETHER).write();
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let deploy = ["deploy", "--yes", "-q"];
    let rollback = ["rollback", "--to", v1.as_str(), "-q"];
    for (round, (a, b)) in [(&deploy[..], &rollback[..]), (&deploy[..], &deploy[..])]
        .into_iter()
        .enumerate()
    {
        let (a, b) = race(&f, &format!("mixed{round}"), a, b);
        assert_eq!(
            codes(&a, &b),
            (0, 4),
            "round {round}:\n{}\n---\n{}",
            printed(&a),
            printed(&b)
        );
        let on = f.current("web1");
        for host in f.host_names() {
            assert_eq!(
                f.current(&host),
                on,
                "round {round}: one release everywhere"
            );
            assert!(!f.locked(&host), "round {round}: {host} left locked");
        }
    }
}

#[test]
fn promote_and_abort_waiting_for_the_lock_act_on_what_they_read_under_it() {
    let f = Fleet::ssh(3)
        .toml(&format!(
            "{TOGETHER}\n[strategy]\ncanary = 1\ncanary_pause = \"0s\""
        ))
        .write();
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy", "--yes", "--until", "canary"])
        .assert()
        .success();
    let v2 = f.current("web1").unwrap();
    assert_ne!(v1, v2);
    let (abort, promote) = race(
        &f,
        "canary",
        &["abort", "--lock-wait", "10m", "--json"],
        &["promote", "--lock-wait", "10m", "--json"],
    );
    let (a, p) = (abort.status.code(), promote.status.code());
    let both = format!(
        "abort:\n{}\n---\npromote:\n{}",
        printed(&abort),
        printed(&promote)
    );
    // One acts; the other, having waited for it, reads the journals again
    // and finds nothing waiting any more.
    let (winner, loser, release) = match (a, p) {
        (Some(0), Some(2)) => (&abort, &promote, &v1),
        (Some(2), Some(0)) => (&promote, &abort, &v2),
        _ => panic!("one must win, the other refuse (exit 2): {both}"),
    };
    let events = ndjson(&loser.stdout);
    assert!(said(&events, "no longer waits for promotion"), "{both}");
    assert_eq!(ndjson(&winner.stdout).last().unwrap()["exit_code"], 0);
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_ref(), Some(release), "{host}: {both}");
        assert!(!f.locked(&host), "{host} left locked");
        let ends: Vec<String> = f
            .journal(&host)
            .iter()
            .filter(|e| e["event"] == "promoted" || e["event"] == "aborted")
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ends.len(), 1, "{host}: promoted or aborted, once: {ends:?}");
    }
}

#[test]
fn a_deploy_whose_lock_is_forced_open_switches_no_more_hosts() {
    // web1's after_switch waits while the test forces the lock open and a
    // second deploy runs through the whole fleet.
    let hold = "if [ -e \\\"$HOIST_DEPLOY_TO/HOLD\\\" ]; then rm \\\"$HOIST_DEPLOY_TO/HOLD\\\"; : > \\\"$HOIST_DEPLOY_TO/HELD\\\"; while [ ! -e \\\"$HOIST_DEPLOY_TO/GO\\\" ]; do sleep 0.05; done; fi";
    let f = Fleet::ssh(3)
        .toml(&format!(
            "[strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 1\n[hooks]\nafter_switch = [\"{hold}\"]"
        ))
        .write();
    f.on_v1_then_v2();
    f.mark("web1", "HOLD");
    let first = start(&f, &["deploy", "--yes", "--json"], &[]);
    let held = f.deploy_path("web1").join("HELD");
    wait_for("web1's hook", || held.exists());
    f.hoist(&["unlock", "--force"]).assert().success();
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v3 = f.current("web2").unwrap();
    f.mark("web1", "GO");
    let out = first.wait_with_output().unwrap();
    let events = ndjson(&out.stdout);
    let text = printed(&out);
    let summary = events.last().unwrap();
    let v2 = summary["release"].as_str().unwrap();
    assert!(
        matches!(out.status.code(), Some(1) | Some(4)),
        "the forced-open run does not end ok: {text}"
    );
    assert!(said(&events, "the lock was taken from this run"), "{text}");
    for host in ["web2", "web3"] {
        assert!(
            !f.switched_to(host, v2),
            "{host} was switched after the lock was taken"
        );
    }
    for host in f.host_names() {
        assert_eq!(
            f.current(&host).as_deref(),
            Some(v3.as_str()),
            "{host}: {text}"
        );
        assert!(!f.locked(&host), "{host} left locked");
    }
}

/// `chattr +i` on a file for as long as this lives (root on a filesystem
/// that has the flag); taken off again even when the test fails.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Whether this machine can make a file immutable (root, chattr, a
/// filesystem with the flag), tried on a file of its own in `dir`.
fn can_freeze(dir: &std::path::Path) -> bool {
    let trial = Immutable(dir.join("chattr-trial"));
    std::fs::write(&trial.0, "").unwrap();
    let flagged = Command::new("chattr").arg("+i").arg(&trial.0).status();
    drop(trial);
    std::fs::remove_file(dir.join("chattr-trial")).unwrap();
    flagged.is_ok_and(|s| s.success())
}

#[test]
fn a_live_colour_a_host_could_not_record_is_in_the_history_incomplete_line() {
    if !crate::support::sshd::is_root() {
        eprintln!("skipped: only root can make a journal unwritable for root's sshd (chattr +i)");
        return;
    }
    // switch_local makes web3's journal unwritable just before the live
    // colour is recorded on every host.
    let f = Fleet::ssh(4);
    let journal = f.deploy_path("web3").join(".hoist/journal");
    let f = f
        .toml(&format!(
            "[groups.blue]\nhosts = [\"web1\", \"web2\"]\n[groups.green]\nhosts = [\"web3\", \"web4\"]\n\
             [strategy]\nkind = \"blue-green\"\n[blue_green]\ncolors = [\"blue\", \"green\"]\n\
             switch_local = [\"if [ -e FREEZE ]; then chattr +i {}; fi\"]",
            journal.display()
        ))
        .write();
    f.hoist(&["deploy", "--yes"]).assert().success();
    if !can_freeze(journal.parent().unwrap()) {
        eprintln!("skipped: no chattr, or this filesystem has no immutable flag");
        return;
    }
    let _thaw = Immutable(journal.clone());
    std::fs::write(f.path().join("FREEZE"), "").unwrap();
    std::fs::write(f.path().join("build/README"), "v2").unwrap();
    let out = f.hoist(&["deploy", "--yes", "--json"]).output().unwrap();
    let text = printed(&out);
    let events = ndjson(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        said_to(&events, "web3", "could not record that green is live"),
        "{text}"
    );
    assert!(
        said(&events, "history incomplete on web3:"),
        "said at the end: {text}"
    );
}

#[test]
fn a_journal_line_lost_after_a_switch_is_warned_about_and_summed_up() {
    if !crate::support::sshd::is_root() {
        eprintln!("skipped: only root can make a journal unwritable for root's sshd (chattr +i)");
        return;
    }
    // The journal becomes unwritable just before web1's switch (as a disk
    // that fills up would make it).
    let freeze = "if [ -e \\\"$HOIST_DEPLOY_TO/FREEZE\\\" ]; then chattr +i \\\"$HOIST_DEPLOY_TO/.hoist/journal\\\"; fi";
    let f = Fleet::ssh(2)
        .toml(&format!("[hooks]\nbefore_switch = [\"{freeze}\"]"))
        .write();
    f.on_v1_then_v2();
    let hoist_dir = f.deploy_path("web1").join(".hoist");
    let trial = Immutable(hoist_dir.join("chattr-trial"));
    std::fs::write(&trial.0, "").unwrap();
    let flagged = Command::new("chattr").arg("+i").arg(&trial.0).status();
    drop(trial);
    std::fs::remove_file(hoist_dir.join("chattr-trial")).unwrap();
    if !flagged.is_ok_and(|s| s.success()) {
        eprintln!("skipped: no chattr, or this filesystem has no immutable flag");
        return;
    }
    let _thaw = Immutable(hoist_dir.join("journal"));
    f.mark("web1", "FREEZE");
    let out = f.hoist(&["deploy", "--yes", "--json"]).output().unwrap();
    let text = printed(&out);
    let events = ndjson(&out.stdout);
    let v2 = events.last().unwrap()["release"].as_str().unwrap();
    assert_eq!(out.status.code(), Some(0), "the switch stands: {text}");
    assert_eq!(f.current("web1").as_deref(), Some(v2));
    assert!(!f.switched_to("web1", v2), "the switch's line was lost");
    assert!(
        said_to(&events, "web1", "history is incomplete"),
        "warned on the host: {text}"
    );
    assert!(!said_to(&events, "web2", "history"), "{text}");
    assert!(
        said(&events, "history incomplete on web1:"),
        "said at the end: {text}"
    );
    let end = events.len() - 2;
    assert!(
        events[end]["text"]
            .as_str()
            .unwrap_or("")
            .contains("history incomplete on web1"),
        "just before the summary: {text}"
    );
}

#[test]
fn the_final_unlock_waits_for_a_slow_host_within_the_command_timeout() {
    // `grep` on the lock file (what freeing it runs) takes 7 s on every
    // host: a loaded machine, not a host that is down.
    let slow = FirstOnPath::new(
        "grep",
        "#!/bin/sh\nfor a; do last=$a; done\ncase $last in */.hoist/lock) sleep 7 ;; esac\nexec /usr/bin/grep \"$@\"\n",
    );
    let f = Fleet::ssh_with(2, slow.setup()).write();
    let out = f.hoist(&["deploy", "--yes"]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for host in f.host_names() {
        assert!(!f.locked(&host), "{host} left locked: {text}");
    }
    assert!(!text.contains("could not free the lock"), "{text}");
    assert!(
        !text.contains("is back"),
        "never says a reachable host is back: {text}"
    );
}

#[test]
fn a_lock_left_by_your_own_killed_run_is_named_as_yours_with_how_to_free_it() {
    let f = Fleet::ssh(2)
        .toml("[hooks]\nbefore_batch_local = [\"[ -z \\\"${HOLD_AT:-}\\\" ] || { : > \\\"$HOLD_AT\\\"; while [ -e \\\"$HOLD_AT\\\" ]; do sleep 0.05; done; }\"]")
        .write();
    f.on_v1_then_v2();
    let at = f.path().join("holding");
    let run = start(
        &f,
        &["deploy", "--yes", "-q"],
        &[("HOLD_AT", at.to_str().unwrap())],
    );
    wait_for("the deploy's first wave", || at.exists());
    let pid = run.id();
    // The run dies at once: nothing frees the lock. Its hook ends when
    // the file it waits on goes.
    let mut run = run;
    run.kill().unwrap();
    let out = run.wait_with_output().unwrap();
    std::fs::remove_file(&at).unwrap();
    assert_eq!(out.status.code(), None, "killed");
    assert!(f.locked("web1"));

    let out = f.hoist(&["deploy", "--yes"]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains(&format!("your own lock from run {pid} at ")),
        "{text}"
    );
    assert!(text.contains("`hoist unlock` frees it"), "{text}");
    assert!(!text.contains("someone else"), "{text}");
    f.hoist(&["unlock"]).assert().success();
    f.hoist(&["deploy", "--yes"]).assert().success();
}

#[test]
fn a_rollback_reads_the_fleet_again_under_the_lock_and_never_undoes_a_deploy_made_meanwhile() {
    // The rollback reads its target (v1), then its on_start_local waits
    // while a deploy of v3 runs through the whole fleet; then it takes the
    // lock. Going on with what it read would undo v3 and skip v2.
    let f = Fleet::ssh(3);
    let dir = f.path().display().to_string();
    let hold = format!(
        "if [ \\\"$HOIST_COMMAND\\\" = rollback ]; then : > {dir}/HELD; while [ ! -e {dir}/GO ]; do sleep 0.05; done; fi"
    );
    let f = f
        .toml(&format!("[hooks]\non_start_local = [\"{hold}\"]"))
        .write();
    let v1 = f.on_v1_then_v2();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v2 = f.current("web1").unwrap();
    let mut rollback = start(&f, &["rollback", "--json"], &[]);
    wait_for("the rollback's on_start_local", || {
        let held = f.path().join("HELD").exists();
        if !held && let Ok(Some(_)) = rollback.try_wait() {
            let mut text = String::new();
            use std::io::Read;
            rollback
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            rollback
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            panic!("the rollback ended early: {text}");
        }
        held
    });
    std::fs::write(f.path().join("build/README"), "v3").unwrap();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let v3 = f.current("web1").unwrap();
    assert!(v3 != v1 && v3 != v2);
    std::fs::write(f.path().join("GO"), "").unwrap();
    let out = rollback.wait_with_output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        said(
            &ndjson(&out.stdout),
            "the fleet changed before this rollback took the lock"
        ),
        "{text}"
    );
    for host in f.host_names() {
        assert_eq!(f.current(&host).as_ref(), Some(&v3), "{host}: {text}");
        assert!(!f.locked(&host), "{host} left locked: {text}");
    }
}

#[test]
fn a_rollback_reads_a_fleet_nothing_changed_once_not_again_under_the_lock() {
    // `df` runs in the probe and in no other script: a `df` first on the
    // hosts' PATH that logs its arguments (the host's deploy_to) counts
    // how many times each host was read.
    let df = FirstOnPath::new(
        "df",
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"${0%/*}/df.log\"\nexec /usr/bin/df \"$@\"\n",
    );
    let f = Fleet::ssh_with(2, df.setup()).write();
    f.on_v1_then_v2();
    f.hoist(&["deploy", "--yes"]).assert().success();
    let log = df.dir().join("df.log");
    std::fs::remove_file(&log).unwrap();
    let out = f.hoist(&["rollback", "--yes"]).output().unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let read = std::fs::read_to_string(&log).unwrap();
    for host in f.host_names() {
        let path = f.deploy_path(&host).display().to_string();
        let probes = read.lines().filter(|l| l.ends_with(&path)).count();
        assert_eq!(probes, 1, "{host} read {probes} times: {read}\n{text}");
    }
}
