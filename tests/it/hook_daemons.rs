//! A hook that starts a daemon with `&` (`nohup ./server &`, its output not
//! redirected) ends when its command does: the daemon keeps what the hook
//! gave it as output, and neither the deploy nor a SIGTERM waits for it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fleet::Fleet;
use crate::support::project::{follow, printed};

/// Writes its pid, lives on, and writes to the output it inherited after
/// the hook has ended (a daemon killed by SIGPIPE would never say `alive`).
const DAEMON: &str = "#!/bin/sh\necho $$ > \"$HOIST_DEPLOY_TO/daemon.pid\"\necho starting\nsleep 1\necho late\necho late >&2\necho alive > \"$HOIST_DEPLOY_TO/daemon-alive\"\nexec sleep 600\n";

/// Kills the daemons the hooks started (by the pid each wrote), however
/// the test ends.
struct Daemons(Vec<std::path::PathBuf>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for file in &self.0 {
            if let Ok(pid) = std::fs::read_to_string(file) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

fn daemon_fleet(f: Fleet, toml: &str) -> (Fleet, Daemons) {
    let f = f
        .artifact(&[("README", "v2"), ("bin/daemon", DAEMON)])
        .toml(toml)
        .write();
    let mut pids: Vec<_> = f
        .host_names()
        .iter()
        .map(|h| f.deploy_path(h).join("daemon.pid"))
        .collect();
    pids.push(f.path().join("local-daemon.pid"));
    let daemons = Daemons(pids);
    (f, daemons)
}

/// Waits (bounded) until `path` exists.
fn appears(path: &std::path::Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn a_daemon_started_by_a_hook_does_not_hold_the_deploy(f: Fleet) {
    let (f, _daemons) = daemon_fleet(
        f,
        "[hooks]\nafter_switch = [\"nohup sh bin/daemon &\", \"echo hook-done\"]\n\
         after_batch_local = [\"nohup sh -c 'echo $$ > local-daemon.pid; exec sleep 600' & echo local-done\"]\n\
         [strategy]\ncanary = 0\nbatch = 2",
    );
    let started = Instant::now();
    let out = f.hoist(&["deploy", "-v"]).output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", printed(&out));
    // The daemon lives ten minutes; the run is bounded well below that
    // (slack for a loaded machine).
    assert!(
        took < Duration::from_secs(100),
        "the deploy waited for the daemon: {took:?}"
    );
    let text = printed(&out);
    assert!(
        text.contains("hook-done") && text.contains("local-done"),
        "{text}"
    );
    for host in f.host_names() {
        assert_eq!(f.read_current(&host, "README"), "v2");
        // Still running, and still able to write where its output went.
        let alive = f.deploy_path(&host).join("daemon-alive");
        assert!(appears(&alive), "{host}: the daemon died");
    }
    assert!(appears(&f.path().join("local-daemon.pid")));
}

#[test]
fn a_daemon_started_by_a_hook_does_not_hold_the_deploy_over_ssh() {
    a_daemon_started_by_a_hook_does_not_hold_the_deploy(Fleet::ssh(2));
}

#[test]
fn a_daemon_started_by_a_hook_does_not_hold_the_deploy_on_local_hosts() {
    a_daemon_started_by_a_hook_does_not_hold_the_deploy(Fleet::local(2));
}

/// SIGTERM while the canary's `after_switch` starts a daemon: the run ends
/// at once (exit 130), nothing new starts, and it never waits for the daemon.
fn sigterm_does_not_wait_for_a_hooks_daemon(f: Fleet) {
    let (f, _daemons) = daemon_fleet(
        f,
        "[hooks]\nafter_switch = [\"nohup sh bin/daemon &\"]\n\
         [strategy]\ncanary = 1\ncanary_pause = \"0s\"\nbatch = 1",
    );
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .current_dir(f.path())
        .args(["deploy", "--json"])
        .env("HOME", f.path().join("home"))
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Never hang the suite: a run still there after 150 s is killed.
    let pid = child.id().to_string();
    let watchdog_pid = pid.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(150));
        let _ = Command::new("kill").args(["-KILL", &watchdog_pid]).status();
    });
    let mut sent: Option<Instant> = None;
    let events = follow(&mut child, |line| {
        if sent.is_none()
            && line.contains("\"host\":\"web1\"")
            && line.contains("\"phase\":\"after_switch\"")
        {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            sent = Some(Instant::now());
        }
    });
    let code = child.wait().unwrap().code();
    let took = sent.expect("web1 reached after_switch").elapsed();
    assert!(
        took < Duration::from_secs(60),
        "the interrupted run waited for the daemon: {took:?}"
    );
    assert_eq!(code, Some(130), "{events:?}");
    assert!(
        f.current("web2").is_none(),
        "web2 switched after the interrupt"
    );
    assert!(appears(&f.deploy_path("web1").join("daemon-alive")));
}

#[test]
fn sigterm_does_not_wait_for_a_hooks_daemon_over_ssh() {
    sigterm_does_not_wait_for_a_hooks_daemon(Fleet::ssh(2));
}

#[test]
fn sigterm_does_not_wait_for_a_hooks_daemon_on_local_hosts() {
    sigterm_does_not_wait_for_a_hooks_daemon(Fleet::local(2));
}
