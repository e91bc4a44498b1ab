//! Issue 29, items 1 to 3, over real OpenSSH: with `[relay] fanout`, hosts
//! pass the release on to each other (hash-checked on every host), with a
//! key of the run's own behind a forced command, nothing of it left on
//! any host after, and every host the relay did not serve whole served
//! from here instead.

use std::path::{Path, PathBuf};

use crate::support::fleet::{FirstOnPath, Fleet};
use crate::support::project::{noise, printed, summary_host};

/// One wave of every host; the dead-man switch off (it adds sessions).
/// Each test sshd reads its authorized_keys from beside the host's root:
/// `<dir>/authorized_keys`, the deploy path being `<dir>/root/srv/app`.
const RELAY: &str = "[strategy]\ncanary = 0\nbatch = \"100%\"\ndeadman_timeout = \"0s\"\n[relay]\nfanout = 2\nauthorized_keys = \"../../../authorized_keys\"";

/// 3 MB of noise: what relays pass on, large enough to take a while.
const BIG: usize = 3 << 20;

fn with_big_artifact(f: Fleet) -> Fleet {
    std::fs::write(f.path().join("build/big.bin"), noise(29, BIG)).unwrap();
    f
}

pub(crate) fn hosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("web{i}")).collect()
}

/// Nothing of a relay is left on any host: no `$H/relay`, no line in
/// its authorized_keys.
pub(crate) fn assert_nothing_left(f: &Fleet, n: usize) {
    for host in hosts(n) {
        let relay = f.deploy_path(&host).join(".hoist/relay");
        assert!(!relay.exists(), "{host}: {} is left", relay.display());
        let keys = std::fs::read_to_string(authorized_keys(f, &host)).unwrap();
        assert!(!keys.contains("hoist-relay"), "{host}: {keys}");
    }
}

fn authorized_keys(f: &Fleet, host: &str) -> PathBuf {
    f.server(host).dir.path().join("authorized_keys")
}

/// The hosts NDJSON says were served by another host, with that host.
pub(crate) fn relayed(events: &[serde_json::Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "relayed")
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["via"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Bytes the summary says left this machine for the release.
fn sent_from_here(events: &[serde_json::Value], n: usize) -> u64 {
    let summary = events.last().unwrap();
    hosts(n)
        .iter()
        .map(|h| summary_host(summary, h)["sent_bytes"].as_u64().unwrap_or(0))
        .sum()
}

pub(crate) fn assert_every_host_exact(f: &Fleet) {
    let out = f.hoist(&["verify"]).output().unwrap();
    assert!(out.status.success(), "{}", printed(&out));
}

#[test]
fn seven_hosts_with_fanout_two_get_the_release_from_each_other() {
    let f = with_big_artifact(Fleet::ssh(7).toml(RELAY).write());
    let plan = f.hoist(&["plan"]).output().unwrap();
    assert!(
        printed(&plan).contains("relay: fanout 2;"),
        "{}",
        printed(&plan)
    );
    assert!(printed(&plan).contains("of 7 host(s), 2 from here"));
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let by = relayed(&events);
    // Two seeds fed from here; the five others from a host.
    assert_eq!(by.len(), 5, "{by:?}");
    for (host, via) in &by {
        assert_ne!(host, via);
        assert!(hosts(7).contains(via), "{via}");
    }
    let said = |text: &str| {
        events.iter().any(|e| {
            e["event"] == "message" && e["text"].as_str().is_some_and(|t| t.contains(text))
        })
    };
    assert!(said(
        "relay: 2 host(s) get the release from here and pass it on to 5 (fanout 2, 3 level(s))"
    ));
    assert!(said(
        "relay: 5 of 5 host(s) got the release from another host;"
    ));
    // What left this machine is the seeds' streams (the manifest, then
    // the artifact), one each: no manifest went from here to a relayed
    // host, which took it off its parent's stream.
    let seeds: Vec<String> = hosts(7)
        .into_iter()
        .filter(|h| by.iter().all(|(host, _)| host != h))
        .collect();
    for (host, _) in &by {
        assert_eq!(sent_to(&events, host), 0, "{host}: nothing from here");
    }
    let stream = sent_to(&events, &seeds[0]);
    assert_eq!(sent_to(&events, &seeds[1]), stream, "the same stream");
    assert!(stream > BIG as u64, "{stream}: the artifact went");
    let sent = sent_from_here(&events, 7);
    assert_eq!(sent, 2 * stream, "one stream per seed");
    assert!(
        sent < 3 * BIG as u64,
        "{sent} bytes left this machine for 7 hosts of a {BIG}-byte artifact"
    );
    let id = f.current("web1").unwrap();
    let manifest = |host: &str| {
        std::fs::read(f.deploy_path(host).join(".hoist/manifests").join(&id))
            .unwrap_or_else(|e| panic!("{host}: no manifest recorded: {e}"))
    };
    for host in hosts(7) {
        assert!(f.switched_to(&host, &id), "{host}");
        assert_eq!(manifest(&host), manifest(&seeds[0]), "{host}");
    }
    assert!(manifest("web1").starts_with(b"hoist-manifest 1\n"));
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 7);
}

/// An `ssh` first on every host's PATH: it records the key and command a
/// relay uses, tries that key for a command of its own (when `misuse`),
/// then does what the relay asked. `before` runs first (with the relay's arguments as `$@`).
fn spy_ssh(log: &Path, before: &str) -> FirstOnPath {
    spy(log, before, true)
}

fn spy(log: &Path, before: &str, misuse: bool) -> FirstOnPath {
    let misuse = if misuse {
        "/usr/bin/ssh -n \"$@\" \"; touch $log/owned\" < /dev/null > /dev/null 2>&1\necho \"tried=$?\" >> \"$log/calls\""
    } else {
        ""
    };
    let script = format!(
        r#"#!/bin/sh
# The relay's check of what this ssh takes (`ssh -G`) is no hop.
case " $* " in *" -G "*) exec /usr/bin/ssh "$@" ;; esac
log={log}
key=; prev=
for a in "$@"; do [ "$prev" = -i ] && key=$a; prev=$a; done
echo "relay $*" >> "$log/calls"
{misuse}
{before}
exec /usr/bin/ssh "$@"
"#,
        log = log.display()
    );
    FirstOnPath::new("ssh", &script)
}

fn spied_fleet(n: usize, spy: &FirstOnPath) -> Fleet {
    with_big_artifact(Fleet::ssh_with(n, spy.setup()).toml(RELAY).write())
}

#[test]
fn the_relay_key_runs_only_the_receive_and_is_gone_after() {
    let log = tempfile::tempdir().unwrap();
    let spy = spy_ssh(log.path(), "cp \"$key\" \"$log/key\"");
    let f = spied_fleet(4, &spy);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert_eq!(relayed(&events).len(), 2, "4 hosts, 2 seeds");
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap();
    assert!(calls.contains("tried="), "{calls}");
    assert!(!log.path().join("owned").exists(), "{calls}");
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 4);
    // The key copied during the run opens nothing once it is over.
    let key = log.path().join("key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for server in f.servers() {
        let out = std::process::Command::new("/usr/bin/ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(&key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "IdentityAgent=none", "-p", &server.port.to_string()])
            .arg(format!(
                "{}@127.0.0.1",
                crate::support::sshd::current_user()
            ))
            .arg(format!("touch {}/owned-after", log.path().display()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}", printed(&out));
    }
    assert!(!log.path().join("owned-after").exists());
}

#[test]
fn hosts_whose_host_key_is_not_the_pinned_one_are_served_from_here() {
    // Every relay's known_hosts is replaced by another host's key before
    // it connects: no child is reachable as pinned.
    let log = tempfile::tempdir().unwrap();
    let other = crate::support::sshd::ClientKey::ed25519();
    let before = format!(
        "for a in \"$@\"; do case $a in UserKnownHostsFile=*) f=${{a#*=}}; sed 's| ssh-ed25519 .*| {}|' \"$f\" > \"$f.x\" && cat \"$f.x\" > \"$f\" && echo rewrote >> \"$log/calls\" ;; esac; done",
        other
            .public
            .trim()
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let spy = spy_ssh(log.path(), &before);
    let f = spied_fleet(5, &spy);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert_eq!(relayed(&events), vec![], "no host was relayed to");
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap();
    assert!(calls.contains("relay "), "relays were tried: {calls}");
    assert!(calls.contains("rewrote"), "with another host key: {calls}");
    // Each warning says why, in the relay's ssh's words.
    assert!(
        warned_why(&events, "Host key verification failed."),
        "{events:#?}"
    );
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 5);
}

#[test]
fn a_relay_cut_off_mid_stream_leaves_its_subtree_to_hoist() {
    // The first relay hop passes on 200 kB, then ends: the child (and all
    // below it) gets a cut stream, which its hash check refuses. (No
    // misuse tries here: the first hop is a real one.)
    let log = tempfile::tempdir().unwrap();
    let before = "if mkdir \"$log/cut\" 2>/dev/null; then head -c 200000 | /usr/bin/ssh \"$@\"; echo cut >> \"$log/calls\"; exit 255; fi";
    let spy = spy(log.path(), before, false);
    let f = spied_fleet(7, &spy);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap();
    assert!(calls.contains("cut"), "{calls}");
    let by = relayed(&events);
    assert!(by.len() < 5, "a subtree fell back: {by:?}");
    assert!(!by.is_empty(), "the rest was relayed: {by:?}");
    assert!(said(&events, None, "did not get the release whole"));
    // The child's receive refused the cut stream; its relay's ssh
    // passed on what it said.
    assert!(warned_why(&events, "checksum mismatch"), "{events:#?}");
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 7);
}

/// Whether a host's warning that it did not get the release from its
/// relay says why, with `text` in its relay's ssh's last words:
/// `did not get the release whole from web1 (web1's ssh: …); sending it
/// from here`.
fn warned_why(events: &[serde_json::Value], text: &str) -> bool {
    events.iter().any(|e| {
        e["event"] == "message"
            && e["text"].as_str().is_some_and(|t| {
                let Some(rest) = t.strip_prefix("did not get the release whole from web") else {
                    return false;
                };
                let Some((_, why)) = rest.split_once("'s ssh: ") else {
                    return false;
                };
                why.contains(text) && why.ends_with("); sending it from here")
            })
    })
}

#[test]
fn a_hop_killed_mid_stream_costs_its_parent_nothing() {
    // The first hop's `ssh`, reading the parent's stream itself, is
    // killed mid-stream (as when the child dies: the connection breaks).
    // OpenSSH leaves its stdin non-blocking, and that stdin is the
    // parent's share of the stream: what drains it after must not end on
    // EAGAIN (the parent's `tee` would die, and the parent and all its
    // other children with it). Only the cut child's subtree falls back.
    let log = tempfile::tempdir().unwrap();
    let before = "if mkdir \"$log/cut\" 2>/dev/null; then /usr/bin/ssh \"$@\" <&0 & p=$!; sleep 0.3; kill -9 $p; echo cut >> \"$log/calls\"; exit 255; fi";
    let spy = spy(log.path(), before, false);
    let f = spied_fleet(7, &spy);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap();
    assert!(calls.contains("cut"), "{calls}");
    let failed_here: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            e["text"]
                .as_str()
                .is_some_and(|t| t.contains("did not end well here"))
        })
        .collect();
    assert!(
        failed_here.is_empty(),
        "a parent's own receive failed: {failed_here:?}"
    );
    let fell_back = events
        .iter()
        .filter(|e| {
            e["text"]
                .as_str()
                .is_some_and(|t| t.contains("did not get the release whole"))
        })
        .count();
    // 7 hosts, fanout 2: the cut child and at most one child of its own.
    assert!(
        (1..=2).contains(&fell_back),
        "{fell_back} fell back: {events:?}"
    );
    assert!(relayed(&events).len() >= 3, "{:?}", relayed(&events));
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 7);
}

#[test]
fn a_later_run_removes_what_an_interrupted_relay_left() {
    // What a run killed mid-relay leaves: its directory (naming the
    // authorized_keys file) and its line. The next run, relay or not,
    // removes both, and keeps every other line.
    let f = Fleet::ssh(2)
        .toml("[strategy]\ncanary = 0\nbatch = \"100%\"\ndeadman_timeout = \"0s\"")
        .write();
    for host in hosts(2) {
        let dir = f
            .deploy_path(&host)
            .join(".hoist/relay/20260101T000000Z-dead");
        std::fs::create_dir_all(&dir).unwrap();
        let keys = authorized_keys(&f, &host);
        std::fs::write(dir.join("ak"), format!("{}\n", keys.display())).unwrap();
        std::fs::write(dir.join("key"), "secret").unwrap();
        let mut text = std::fs::read_to_string(&keys).unwrap();
        text += "restrict,command=\"sh /x/receive.sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFrN5vWjVh4sJ3vmy0QmbjHOkdMd1V0uKC0nAwXFPZ1Y hoist-relay 20260101T000000Z-dead\n";
        std::fs::write(&keys, text).unwrap();
    }
    f.hoist(&["deploy", "--yes"]).assert().success();
    assert_nothing_left(&f, 2);
    for host in hosts(2) {
        let keys = std::fs::read_to_string(authorized_keys(&f, &host)).unwrap();
        assert!(
            keys.contains(f.key().public.trim()),
            "{host}: its own key stays"
        );
    }
}

/// The next wave's hosts get their release ahead of their wave, during
/// the canary's pause, through the relay: the relay runs before the
/// second wave starts, and that wave's hosts only switch.
#[test]
fn uploads_ahead_of_a_wave_go_through_the_relay() {
    let toml = RELAY.replace(
        "canary = 0\nbatch = \"100%\"",
        "canary = 1\ncanary_pause = \"2s\"\nbatch = \"100%\"",
    );
    let f = with_big_artifact(Fleet::ssh(6).toml(&toml).write());
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("{events:#?}"))
    };
    let ahead = at(&|e| {
        e["text"].as_str().is_some_and(|t| {
            t.starts_with("relay: 2 host(s) get the release from here and pass it on to 3")
        })
    });
    let second = at(&|e| e["event"] == "wave_started" && e["wave"] == 2);
    assert!(ahead < second, "the relay ran in wave 2, not ahead of it");
    let by = relayed(&events);
    assert_eq!(by.len(), 3, "{by:?}");
    assert!(by.iter().all(|(host, _)| host != "web1"), "{by:?}");
    let sent = sent_from_here(&events, 6);
    assert!(
        sent < 4 * BIG as u64,
        "{sent} bytes left this machine: the canary's artifact and manifest, and two seeds' streams"
    );
    for host in hosts(6) {
        assert!(f.switched_to(&host, &f.current("web1").unwrap()), "{host}");
    }
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 6);
}

/// `build/` of 40 files of 32 KiB noise (1.25 MiB, which gzip cannot
/// shrink): a release each host of `f` takes whole, relayed.
fn on_a_first_release(n: usize) -> Fleet {
    let f = Fleet::ssh(n).toml(RELAY).write();
    for i in 0..40 {
        let path = f.path().join(format!("build/dir{}/file{i:02}", i % 4));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, noise(i, 32 << 10)).unwrap();
    }
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert_eq!(
        relayed(&events).len(),
        n - 2,
        "the first release, relayed whole"
    );
    f
}

/// Six of the 40 files changed: a delta of about 200 kB, the same for
/// every host on the first release.
fn change_six_files(f: &Fleet) {
    for i in [1u64, 7, 12, 20, 28, 35] {
        let path = f.path().join(format!("build/dir{}/file{i:02}", i % 4));
        std::fs::write(path, noise(1000 + i, 32 << 10)).unwrap();
    }
}

pub(crate) fn said(events: &[serde_json::Value], host: Option<&str>, text: &str) -> bool {
    events.iter().any(|e| {
        e["event"] == "message"
            && host.is_none_or(|h| e["host"] == h)
            && e["text"].as_str().is_some_and(|t| t.contains(text))
    })
}

/// The bytes the summary says went from here to `host`.
fn sent_to(events: &[serde_json::Value], host: &str) -> u64 {
    summary_host(events.last().unwrap(), host)["sent_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn hosts_on_the_same_release_pass_the_delta_on_to_each_other() {
    let f = on_a_first_release(5);
    let first = f.current("web1").unwrap();
    change_six_files(&f);
    let plan = printed(&f.hoist(&["plan"]).output().unwrap());
    assert!(
        plan.contains("hosts that would get the same delta get it from each other"),
        "{plan}"
    );
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert!(
        said(
            &events,
            None,
            "relay: 2 host(s) get the delta from here and pass it on to 3 (fanout 2, 2 level(s))"
        ),
        "{events:?}"
    );
    assert!(
        said(
            &events,
            None,
            "relay: 3 of 3 host(s) got the delta from another host;"
        ),
        "{events:?}"
    );
    let by = relayed(&events);
    assert_eq!(by.len(), 3, "{by:?}");
    let seeds: Vec<String> = hosts(5)
        .into_iter()
        .filter(|h| by.iter().all(|(host, _)| host != h))
        .collect();
    for (host, via) in &by {
        assert!(said(
            &events,
            Some(host),
            &format!("made the release from the delta relayed by {via}")
        ));
        assert_eq!(sent_to(&events, host), 0, "{host}: nothing from here");
    }
    // Each seed got the one delta from here, and no more: a few of the
    // changed files' bytes, far from the artifact.
    let delta = sent_to(&events, &seeds[0]);
    assert_eq!(sent_to(&events, &seeds[1]), delta, "the same delta");
    assert!(delta > 6 * (32 << 10), "{delta}: the six files went");
    assert!(delta < 10 * (32 << 10), "{delta}: only a delta went");
    assert_eq!(sent_from_here(&events, 5), 2 * delta, "one delta per seed");
    let new = f.current("web1").unwrap();
    assert_ne!(new, first);
    for host in hosts(5) {
        assert!(f.switched_to(&host, &new), "{host}");
    }
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 5);
}

#[test]
fn hosts_whose_base_was_edited_by_hand_fall_back_and_end_exact() {
    let f = on_a_first_release(5);
    let first = f.current("web1").unwrap();
    // Their copies of the first release no longer hold what the manifest
    // lists: the relayed delta makes something else there, refused. web1
    // is a seed that relays to web3 and web4, web5 a leaf under web2.
    let edit = |host: &str| {
        let path = f
            .deploy_path(host)
            .join("releases")
            .join(&first)
            .join("dir1/file05");
        std::fs::write(&path, "edited by hand").unwrap();
        path
    };
    let edited = [edit("web1"), edit("web5")];
    change_six_files(&f);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert!(said(
        &events,
        None,
        "relay: 2 host(s) get the delta from here and pass it on to 3"
    ));
    // web1 passed the delta on before it applied it to its own base.
    let mut by = relayed(&events);
    by.sort();
    let via_web1 = |h: &str| (h.to_string(), "web1".to_string());
    assert_eq!(by, vec![via_web1("web3"), via_web1("web4")]);
    assert!(
        said(
            &events,
            Some("web1"),
            "did not make the release from the delta sent for the relay"
        ),
        "{events:?}"
    );
    assert!(said(
        &events,
        Some("web5"),
        "did not make the release from the delta relayed by web2"
    ));
    for host in ["web1", "web5"] {
        assert!(
            said(&events, Some(host), "dir1/file05"),
            "{host}: says what was edited"
        );
        assert!(
            said(&events, Some(host), "whole artifact"),
            "{host}: and that it went whole"
        );
    }
    assert!(said(&events, None, "to the 1 seed(s) it did not serve"));
    // web1's count holds the delta it relayed, then the whole artifact.
    let whole = 40 * (32 << 10);
    let delta = sent_to(&events, "web2");
    assert!(delta < 10 * (32 << 10), "{delta}");
    assert!(
        sent_to(&events, "web1") > whole + delta,
        "{}",
        sent_to(&events, "web1")
    );
    assert!(
        sent_to(&events, "web5") > whole,
        "{}",
        sent_to(&events, "web5")
    );
    let new = f.current("web1").unwrap();
    for host in hosts(5) {
        assert!(f.switched_to(&host, &new), "{host}");
    }
    assert_every_host_exact(&f);
    for path in &edited {
        assert_eq!(std::fs::read_to_string(path).unwrap(), "edited by hand");
    }
    assert_nothing_left(&f, 5);
}

#[test]
fn a_forged_delta_from_a_relay_is_refused_before_it_is_used() {
    // The first relay hop sends, instead of the delta, one of its own that
    // would delete a file beside the releases (`remove` holds a path out
    // of the release). The child checks the delta's hash first: nothing of
    // it is used, and it gets the release as without the relay.
    let log = tempfile::tempdir().unwrap();
    let forged = crate::support::archive::tar_gz(&[
        ("remove", b"../../../victim\n"),
        ("keep", b""),
        ("dirs", b""),
        ("paths", b""),
    ]);
    std::fs::write(log.path().join("forged"), forged).unwrap();
    let before = "if mkdir \"$log/sent\" 2>/dev/null; then /usr/bin/ssh \"$@\" < \"$log/forged\"; echo forged >> \"$log/calls\"; exit 0; fi";
    let spy = spy(log.path(), before, false);
    let f = Fleet::ssh_with(5, spy.setup()).toml(RELAY).write();
    for i in 0..40 {
        let path = f.path().join(format!("build/dir{}/file{i:02}", i % 4));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, noise(i, 32 << 10)).unwrap();
    }
    f.hoist(&["deploy", "--yes"]).assert().success();
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap();
    assert!(
        calls.contains("forged"),
        "the first deploy's relay used: {calls}"
    );
    // Forge again on the delta's relay.
    std::fs::remove_dir(log.path().join("sent")).unwrap();
    for host in hosts(5) {
        std::fs::write(f.deploy_path(&host).join("victim"), "still here").unwrap();
    }
    change_six_files(&f);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert!(said(
        &events,
        None,
        "relay: 2 host(s) get the delta from here"
    ));
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap();
    assert_eq!(calls.matches("forged").count(), 2, "{calls}");
    assert_eq!(relayed(&events).len(), 2, "one child refused what it got");
    assert!(said(
        &events,
        None,
        "relay: 2 of 3 host(s) got the delta from another host"
    ));
    for host in hosts(5) {
        let victim = f.deploy_path(&host).join("victim");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "still here",
            "{host}"
        );
    }
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 5);
}

#[test]
fn fresh_hosts_and_hosts_on_a_release_are_relayed_in_two_trees_at_once() {
    // web1 to web4 on a first release, web5 to web7 on none: one wave
    // holds a tree of the whole artifact and a tree of the delta.
    let f = Fleet::ssh(7).toml(RELAY).write();
    for i in 0..40 {
        let path = f.path().join(format!("build/dir{}/file{i:02}", i % 4));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, noise(i, 32 << 10)).unwrap();
    }
    f.hoist(&["deploy", "--yes", "--limit", "web1,web2,web3,web4"])
        .assert()
        .success();
    change_six_files(&f);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert!(said(
        &events,
        None,
        "relay: 2 host(s) get the release from here and pass it on to 1 (fanout 2, 2 level(s))"
    ));
    assert!(said(
        &events,
        None,
        "relay: 2 host(s) get the delta from here and pass it on to 2 (fanout 2, 2 level(s))"
    ));
    let by = relayed(&events);
    assert_eq!(by.len(), 3, "{by:?}");
    let on_a = ["web1", "web2", "web3", "web4"];
    for (host, via) in &by {
        // Each from a host of its own tree.
        assert_eq!(
            on_a.contains(&host.as_str()),
            on_a.contains(&via.as_str()),
            "{host} via {via}"
        );
        let what = if on_a.contains(&host.as_str()) {
            format!("made the release from the delta relayed by {via}")
        } else {
            format!("got the release from {via}")
        };
        assert!(said(&events, Some(host), &what), "{host}: {what}");
    }
    let whole = 40 * (32 << 10);
    let sent = sent_from_here(&events, 7);
    assert!(sent > 2 * whole, "{sent}: two seeds got the artifact");
    assert!(sent < 3 * whole, "{sent}: and two the delta, no more");
    let new = f.current("web1").unwrap();
    for host in hosts(7) {
        assert!(f.switched_to(&host, &new), "{host}");
    }
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 7);
}
