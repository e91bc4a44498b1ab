use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::host_shells::{Shell, shells};

const A: &str = "20260101T000000Z-aaaaaaaa";
const B: &str = "20260102T000000Z-bbbbbbbb";
const C: &str = "20260103T000000Z-cccccccc";
const RUN: &str = "run0001";

fn id(s: &str) -> ReleaseId {
    ReleaseId::parse(s).unwrap()
}

/// A host's deploy_to with releases A, B and C, `current` on B and this
/// run's lock.
fn host(base: &Path) -> std::path::PathBuf {
    let d = base.join("app");
    for r in [A, B, C] {
        fs::create_dir_all(d.join("releases").join(r)).unwrap();
    }
    fs::create_dir_all(d.join(".hoist/tmp")).unwrap();
    std::os::unix::fs::symlink(format!("releases/{B}"), d.join("current")).unwrap();
    fs::write(d.join(".hoist/lock"), format!("{{\"token\":\"{RUN}\"}}\n")).unwrap();
    d
}

fn watchdog<'a>(layout: &'a Layout, armed: &'a ReleaseId, previous: &'a ReleaseId) -> Watchdog<'a> {
    let line = |what: &str| {
        (
            "{\"ts\":\"".to_string(),
            format!("\",\"event\":\"{what}\"}}"),
        )
    };
    Watchdog {
        layout,
        run: RUN,
        armed,
        previous: Some(previous),
        after_rollback: vec![format!(
            "cd {} && echo \"$(readlink current)\" > after_rollback.ran",
            q(&layout.deploy_to)
        )],
        reverted: line("self_reverted"),
        reverted_hook_failed: line("self_reverted_hook_failed"),
        freed: line("unlock"),
        timeout_secs: 1,
    }
}

fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn journal(d: &Path) -> String {
    fs::read_to_string(d.join(".hoist/journal")).unwrap_or_default()
}

/// Whether a watchdog process for `d` is running (its marker and path in
/// its command line).
fn watchdog_running(d: &Path) -> bool {
    let needle = d.to_string_lossy().into_owned();
    fs::read_dir("/proc").unwrap().flatten().any(|p| {
        fs::read(p.path().join("cmdline")).is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains(MARKER) && c.contains(&needle) && !c.contains("W.settled")
        })
    })
}

fn arm(shell: &Shell, base: &Path, dog: &Watchdog, secs: u64) {
    let dog = Watchdog {
        timeout_secs: secs,
        ..watchdog(dog.layout, dog.armed, dog.previous.unwrap())
    };
    let ran = shell.run(base, &dog.arm(), b"");
    assert_eq!(ran.code, 0, "{}: {}", shell.name, ran.stderr);
    assert_eq!(ran.text().trim(), "armed", "{}", shell.name);
}

#[test]
fn without_a_heartbeat_the_host_goes_back_runs_after_rollback_and_frees_the_lock() {
    for shell in shells() {
        let base = tempfile::tempdir().unwrap();
        let d = host(base.path());
        let layout = Layout::new(d.to_string_lossy());
        let (armed, previous) = (id(B), id(A));
        arm(
            &shell,
            base.path(),
            &watchdog(&layout, &armed, &previous),
            1,
        );
        wait_for("the lock freed", Duration::from_secs(6), || {
            journal(&d).contains("unlock")
        });
        let at = shell.name;
        assert_eq!(
            fs::read_link(d.join("current")).unwrap(),
            Path::new(&format!("releases/{A}")),
            "{at}"
        );
        let ran = fs::read_to_string(d.join("after_rollback.ran")).unwrap();
        assert_eq!(ran.trim(), format!("releases/{A}"), "{at}");
        let text = journal(&d);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{at}: {lines:?}");
        assert!(lines[0].contains("\"event\":\"self_reverted\""), "{at}");
        assert!(lines[0].starts_with("{\"ts\":\"20"), "{at}: {}", lines[0]);
        assert!(!d.join(".hoist/lock").exists(), "{at}");
        wait_for("the watchdog's end", Duration::from_secs(3), || {
            !watchdog_running(&d)
        });
        let left: Vec<_> = fs::read_dir(d.join(".hoist/deadman")).unwrap().collect();
        assert!(left.is_empty(), "{at}: {left:?}");
    }
}

#[test]
fn heartbeats_keep_it_waiting_and_settling_stops_it_at_once() {
    for shell in shells() {
        let base = tempfile::tempdir().unwrap();
        let d = host(base.path());
        let layout = Layout::new(d.to_string_lossy());
        let (armed, previous) = (id(B), id(A));
        arm(
            &shell,
            base.path(),
            &watchdog(&layout, &armed, &previous),
            2,
        );
        let at = shell.name;
        wait_for("the watchdog", Duration::from_secs(3), || {
            watchdog_running(&d)
        });
        for _ in 0..6 {
            let ran = shell.run(base.path(), &heartbeat(&layout, RUN), b"");
            assert_eq!(ran.text().trim(), "alive", "{at}: {}", ran.stderr);
            std::thread::sleep(Duration::from_millis(500));
        }
        let ran = shell.run(base.path(), &settle(&layout, RUN), b"");
        assert_eq!(Settled::parse(&ran.text()), Some(Settled::Settled), "{at}");
        wait_for("the watchdog's end", Duration::from_secs(1), || {
            !watchdog_running(&d)
        });
        assert_eq!(
            fs::read_link(d.join("current")).unwrap(),
            Path::new(&format!("releases/{B}")),
            "{at}"
        );
        assert_eq!(journal(&d), "", "{at}");
        assert!(d.join(".hoist/lock").exists(), "{at}");
        let ran = shell.run(base.path(), &heartbeat(&layout, RUN), b"");
        assert_eq!(ran.text().trim(), "gone", "{at}");
        let left: Vec<_> = fs::read_dir(d.join(".hoist/deadman")).unwrap().collect();
        assert!(left.is_empty(), "{at}: {left:?}");
    }
}

#[test]
fn a_host_deployed_again_since_is_not_undone() {
    for shell in shells() {
        let base = tempfile::tempdir().unwrap();
        let d = host(base.path());
        let layout = Layout::new(d.to_string_lossy());
        let (armed, previous) = (id(B), id(A));
        arm(
            &shell,
            base.path(),
            &watchdog(&layout, &armed, &previous),
            1,
        );
        // A newer run took the lock and switched to C.
        fs::remove_file(d.join("current")).unwrap();
        std::os::unix::fs::symlink(format!("releases/{C}"), d.join("current")).unwrap();
        fs::write(d.join(".hoist/lock"), "{\"token\":\"newer\"}\n").unwrap();
        let at = shell.name;
        wait_for("the watchdog's end", Duration::from_secs(6), || {
            !d.join(format!(".hoist/deadman/{RUN}")).exists()
                && !d.join(format!(".hoist/deadman/{RUN}.reverting")).exists()
        });
        wait_for("the watchdog's end", Duration::from_secs(2), || {
            !watchdog_running(&d)
        });
        assert_eq!(
            fs::read_link(d.join("current")).unwrap(),
            Path::new(&format!("releases/{C}")),
            "{at}"
        );
        assert_eq!(journal(&d), "", "{at}");
        assert!(!d.join("after_rollback.ran").exists(), "{at}");
        assert!(d.join(".hoist/lock").exists(), "{at}");
    }
}

/// A 20 s timeout looks every 2 s: kept waiting by beats 3 s apart (more
/// than one look), it goes back no sooner than 20 s after the last beat,
/// and about two looks past that at the latest (a loaded machine's
/// `sleep` may run a little late).
#[test]
fn a_longer_timeout_looks_less_often_and_still_goes_back_in_time() {
    let shell = &shells()[0];
    let base = tempfile::tempdir().unwrap();
    let d = host(base.path());
    let layout = Layout::new(d.to_string_lossy());
    let (armed, previous) = (id(B), id(A));
    arm(
        shell,
        base.path(),
        &watchdog(&layout, &armed, &previous),
        20,
    );
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        let ran = shell.run(base.path(), &heartbeat(&layout, RUN), b"");
        assert_eq!(ran.text().trim(), "alive", "{}", ran.stderr);
    }
    let last_beat = Instant::now();
    wait_for("the switch back", Duration::from_secs(30), || {
        journal(&d).contains("self_reverted")
    });
    let after = last_beat.elapsed();
    assert!(
        after >= Duration::from_secs(20) && after <= Duration::from_secs(28),
        "went back {after:?} after the last beat"
    );
}
