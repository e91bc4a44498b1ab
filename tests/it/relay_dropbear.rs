//! Issue 29, item 2, with dropbear's client: hosts whose only SSH client
//! is `dbclient` relay the release (over real OpenSSH sshd hosts), with
//! the run's key in dropbear's format, each child's host key pinned in a
//! home of the run's own, no agent; a child whose key is not the pinned
//! one is served from here. Skipped, saying why, without dbclient.

use std::path::{Path, PathBuf};

use crate::relay::{assert_every_host_exact, assert_nothing_left, hosts, relayed, said};
use crate::support::fleet::{Fleet, SshSetup};
use crate::support::project::noise;
use crate::support::sshd::SshdOptions;

const RELAY: &str = "[strategy]\ncanary = 0\nbatch = \"100%\"\ndeadman_timeout = \"0s\"\n[relay]\nfanout = 2\nauthorized_keys = \"../../../authorized_keys\"";

/// 3 MB of noise: past the relay's 64 KiB watchdog window many times.
const BIG: usize = 3 << 20;

fn dbclient() -> Option<PathBuf> {
    [
        "/usr/bin/dbclient",
        "/usr/local/bin/dbclient",
        "/bin/dbclient",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A directory standing for the hosts' PATH: every command of /usr/bin
/// but OpenSSH's `ssh`, and a `dbclient` that records how the relay runs
/// it (its arguments, whether an agent socket reached it, its home, its
/// key and known_hosts), runs `before`, then runs the real one with its
/// errors kept in `$log/err`.
struct HostPath {
    dir: tempfile::TempDir,
}

impl HostPath {
    fn new(real: &Path, log: &Path, before: &str) -> HostPath {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir("/usr/bin").unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name == "ssh" || name == "dbclient" {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), dir.path().join(&name)).unwrap();
        }
        let script = format!(
            r#"#!/bin/sh
log={log}
key=; prev=
for a in "$@"; do [ "$prev" = -i ] && key=$a; prev=$a; done
echo "relay $* agent=${{SSH_AUTH_SOCK-unset}} home=$HOME mode=$(stat -c %a "$key")" >> "$log/calls"
cp "$key" "$log/key"
cp "$HOME/.ssh/known_hosts" "$log/known_hosts"
{before}
exec {real} "$@" 2>> "$log/err"
"#,
            log = log.display(),
            real = real.display(),
        );
        let spy = dir.path().join("dbclient");
        std::fs::write(&spy, script).unwrap();
        std::fs::set_permissions(&spy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        HostPath { dir }
    }

    /// Sessions get this PATH only, and an agent socket of the
    /// deployer's (which the relay must not pass on).
    fn setup(&self, extra: &str) -> SshSetup<'static> {
        SshSetup {
            sshd: SshdOptions {
                extra_config: format!(
                    "SetEnv PATH={} SSH_AUTH_SOCK=/nonexistent/agent.sock\n{extra}",
                    self.dir.path().display()
                ),
                ..SshdOptions::default()
            },
            ..SshSetup::default()
        }
    }
}

fn fleet(n: usize, path: &HostPath) -> Fleet {
    fleet_with(n, path, "")
}

/// `n` hosts whose sshd_config ends with `extra`.
fn fleet_with(n: usize, path: &HostPath, extra: &str) -> Fleet {
    let f = Fleet::ssh_with(n, path.setup(extra)).toml(RELAY).write();
    std::fs::write(f.path().join("build/big.bin"), noise(29, BIG)).unwrap();
    f
}

#[test]
fn hosts_with_only_dbclient_relay_the_release() {
    let Some(real) = dbclient() else {
        eprintln!("skipping: dropbear's dbclient is not installed (Debian: dropbear-bin)");
        return;
    };
    let log = tempfile::tempdir().unwrap();
    let path = HostPath::new(&real, log.path(), "");
    let f = fleet(5, &path);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let by = relayed(&events);
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap_or_default();
    let err = std::fs::read_to_string(log.path().join("err")).unwrap_or_default();
    // 5 hosts, fanout 2: 2 seeds from here, 3 from a host over dbclient.
    assert_eq!(by.len(), 3, "{by:?}\n{calls}\n{err}");
    for (host, via) in &by {
        assert_ne!(host, via);
    }
    assert_eq!(calls.lines().count(), 3, "{calls}");
    for call in calls.lines() {
        // The run's key, keepalives, no agent, no forwarding, never `-y`.
        assert!(call.contains(" -i ") && call.contains(" -K 5 "), "{call}");
        assert!(call.contains(" -o StrictHostKeyChecking=yes "), "{call}");
        assert!(call.contains("agent=unset"), "{call}");
        assert!(
            call.ends_with(" mode=600"),
            "the key is its user's only: {call}"
        );
        assert!(
            call.contains("/.hoist/relay/"),
            "a home of the run's own: {call}"
        );
        for flag in [" -y", " -A", " -L", " -R", " -J"] {
            assert!(!call.contains(flag), "{flag}: {call}");
        }
    }
    // dropbear's own key format: type and 64 bytes, each an SSH string.
    let key = std::fs::read(log.path().join("key")).unwrap();
    assert_eq!(key.len(), 83);
    assert_eq!(&key[..15], b"\0\0\0\x0bssh-ed25519");
    // The child's key pinned under every type dbclient may be offered.
    let known = std::fs::read_to_string(log.path().join("known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 8, "{known}");
    assert!(
        known.lines().all(|l| l.starts_with("127.0.0.1 ")),
        "{known}"
    );
    for host in hosts(5) {
        assert!(f.switched_to(&host, &f.current("web1").unwrap()), "{host}");
    }
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 5);
}

/// Deploys to 5 hosts whose dbclient runs `before` (which ends by
/// logging `rewrote`) first; asserts no host was relayed to, dbclient said
/// `error`, and every host got the release from here, exact.
fn every_child_falls_back(before: &str, error: &str) {
    let Some(real) = dbclient() else {
        eprintln!("skipping: dropbear's dbclient is not installed (Debian: dropbear-bin)");
        return;
    };
    let log = tempfile::tempdir().unwrap();
    let path = HostPath::new(&real, log.path(), before);
    let f = fleet(5, &path);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    assert_eq!(relayed(&events), vec![], "no host was relayed to");
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap_or_default();
    let err = std::fs::read_to_string(log.path().join("err")).unwrap_or_default();
    assert!(calls.contains("relay "), "relays were tried: {calls}");
    assert!(calls.contains("rewrote"), "{calls}");
    assert!(err.contains(error), "{err}");
    assert!(said(&events, None, "did not get the release whole"));
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 5);
}

#[test]
fn a_child_whose_host_key_is_not_the_pinned_one_is_served_from_here() {
    // Every pinned line of the child's home is made another key's before
    // dbclient runs.
    let other = crate::support::sshd::ClientKey::ed25519();
    let blob = other.public.split_whitespace().nth(1).unwrap().to_string();
    let before = format!(
        "k=\"$HOME/.ssh/known_hosts\"; awk '{{ $3 = \"{blob}\"; print }}' \"$k\" > \"$k.x\" && cat \"$k.x\" > \"$k\" && echo rewrote >> \"$log/calls\""
    );
    every_child_falls_back(&before, "host key mismatch");
}

#[test]
fn a_child_dbclient_would_ask_about_is_served_from_here() {
    // The line of the type the child offers is taken out: dbclient finds
    // the host unknown and asks, with no terminal, on its stdin, whose
    // first byte (gzip's) is not `y`.
    let before = "k=\"$HOME/.ssh/known_hosts\"; grep -v ' ssh-ed25519 ' \"$k\" > \"$k.x\"; cat \"$k.x\" > \"$k\" && echo rewrote >> \"$log/calls\"";
    every_child_falls_back(before, "Didn't validate host key");
}

#[test]
fn a_dbclient_hop_cut_off_mid_stream_leaves_its_child_to_hoist() {
    let Some(real) = dbclient() else {
        eprintln!("skipping: dropbear's dbclient is not installed (Debian: dropbear-bin)");
        return;
    };
    // The first hop passes on 200 kB, then ends: its child gets a cut
    // stream, which its hash check refuses.
    let log = tempfile::tempdir().unwrap();
    let before = format!(
        "if mkdir \"$log/cut\" 2>/dev/null; then head -c 200000 | {real} \"$@\" 2>> \"$log/err\"; echo cut >> \"$log/calls\"; exit 255; fi",
        real = real.display()
    );
    let path = HostPath::new(&real, log.path(), &before);
    let f = fleet(5, &path);
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap_or_default();
    assert!(calls.contains("cut"), "{calls}");
    let by = relayed(&events);
    assert_eq!(by.len(), 2, "the two other hops relayed: {by:?}\n{calls}");
    assert!(said(&events, None, "did not get the release whole"));
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 5);
}

#[test]
fn a_child_pinned_by_an_ecdsa_key_is_relayed_to_over_dbclient() {
    let Some(real) = dbclient() else {
        eprintln!("skipping: dropbear's dbclient is not installed (Debian: dropbear-bin)");
        return;
    };
    // Every host offers only an ECDSA host key: hoist pins it, and the
    // line dbclient matches is the ecdsa-sha2-nistp256 one.
    let keys = tempfile::tempdir().unwrap();
    let ecdsa = keys.path().join("ssh_host_ecdsa_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(&ecdsa)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(ecdsa.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    let log = tempfile::tempdir().unwrap();
    let path = HostPath::new(&real, log.path(), "");
    let extra = format!(
        "HostKey {}\nHostKeyAlgorithms ecdsa-sha2-nistp256\n",
        ecdsa.display()
    );
    let f = fleet_with(5, &path, &extra);
    let trusted: String = f
        .servers()
        .iter()
        .map(|s| format!("[127.0.0.1]:{} {}\n", s.port, public.join(" ")))
        .collect();
    std::fs::write(f.known_hosts(), trusted).unwrap();
    let events = f.events(&["deploy", "--yes", "--json"], 0);
    let calls = std::fs::read_to_string(log.path().join("calls")).unwrap_or_default();
    let err = std::fs::read_to_string(log.path().join("err")).unwrap_or_default();
    assert_eq!(relayed(&events).len(), 3, "{calls}\n{err}");
    let known = std::fs::read_to_string(log.path().join("known_hosts")).unwrap();
    assert!(
        known.contains(&format!("127.0.0.1 ecdsa-sha2-nistp256 {}\n", public[1])),
        "{known}"
    );
    assert_every_host_exact(&f);
    assert_nothing_left(&f, 5);
}
