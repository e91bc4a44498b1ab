//! A relay whose host has dropbear's client (`dbclient`) and no OpenSSH
//! `ssh`. dbclient has no option for a key file of known hosts, for a
//! host key alias or for a connect timeout, and 2022.83 none for batch
//! mode or strict host key checking (it ignores, with a warning, the
//! `-o BatchMode=yes -o StrictHostKeyChecking=yes` it is given, which later
//! releases honour); what stands for each:
//!
//! - Known hosts: dbclient reads `$HOME/.ssh/known_hosts` only, and looks
//!   a host up by the address it was given (the port plays no part). Each
//!   child gets a home of its own under the run's relay directory,
//!   `$X/<alias>/`, whose known_hosts pins the child's key and nothing
//!   else: one line per key type dbclient knows, the pinned key under its
//!   own type and, under every other, a key that cannot match. Whatever
//!   type the server offers, dbclient finds a line for it and either
//!   matches the pinned key or exits on the mismatch; it never reaches its
//!   question for an unknown host. (Were it to: it reads its answer from
//!   stdin with no terminal, and the stream's first byte is gzip's 0x1f,
//!   never `y`.)
//! - No agent, no forwarding, no other key: `SSH_AUTH_SOCK` is unset (it
//!   would offer the agent's keys), no `-A`, `-L`, `-R`, and the home holds
//!   no `id_dropbear`; only `-i` with the run's key.
//! - No prompt: the session has no terminal; a password prompt goes to an
//!   `SSH_ASKPASS` that fails (`SSH_ASKPASS_ALWAYS`), and `DROPBEAR_PASSWORD`
//!   is unset.
//! - Connect timeout: dbclient reads its stdin only once the child's
//!   forced command runs, so a watchdog ends it when, 10 s after the
//!   stream's first byte reached it, it has not taken more than a pipe's
//!   worth (64 KiB) of it. Once it streams, `-K 5` ends a child that stops
//!   answering (3 keepalives unanswered).

use super::child::Child;
use crate::engine::layout::q;

/// The host key types dropbear 2022.83 can be offered, by the name its
/// known_hosts lookup uses.
const KEY_TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "ssh-dss",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
];

/// Whether dbclient can be given `child` as it is: an address it takes as
/// a plain host (no `user@`, `/port`, `^port` or `,` hop list, not an
/// option) and a user `-l` passes as it is.
pub(crate) fn reaches(child: &Child) -> bool {
    let plain = |s: &str, extra: &[char]| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(&c))
    };
    plain(&child.address, &[':']) && plain(&child.user, &[])
}

/// The known_hosts of the home dbclient gets for a child at `address`
/// whose pinned key is `host_key` (`type base64`): the pinned key under
/// its type, a key that cannot match under every other type.
///
/// Every line holds the pinned key's blob, which names its type inside:
/// under another type it never equals what a server of that type sends.
pub(crate) fn known_hosts(address: &str, host_key: &str) -> String {
    let blob = host_key.split_whitespace().nth(1).unwrap_or("");
    KEY_TYPES
        .iter()
        .map(|t| format!("{address} {t} {blob}\n"))
        .collect()
}

/// The shell function a receive defines once when a child is reached
/// with dbclient: `hoist_dbclient ALIAS PORT USER ADDRESS`, stdin the
/// child's share of the stream. Its files are in the child's home under
/// the run's directory, which the relay's end (or a later run) removes.
pub(crate) const FUNCTION: &str = r#"hoist_dbclient() {
  y="$X/$1" f="$X/$1/in"
  mkfifo "$f" || return 1
  ( unset SSH_AUTH_SOCK DROPBEAR_PASSWORD DISPLAY
    HOME=$y SSH_ASKPASS=false SSH_ASKPASS_ALWAYS=1; export HOME SSH_ASKPASS SSH_ASKPASS_ALWAYS
    exec dbclient -T -o BatchMode=yes -o StrictHostKeyChecking=yes -i "$X/key" -K 5 -p "$2" -l "$3" "$4" hoist-relay ) < "$f" &
  d=$!
  { dd bs=1 count=1 2>/dev/null
    ( sleep 10; [ -e "$y/up" ] || kill "$d" ) < /dev/null > /dev/null 2>&1 &
    w=$!
    dd bs=1 count=70000 2>/dev/null && : > "$y/up"
    cat; } > "$f"
  wait "$d"; s=$?; kill "$w" 2>/dev/null; rm -f "$f"; return $s
}
"#;

/// The line that passes the stream of fifo `$P.c<n>` on to `child`.
pub(crate) fn child_line(n: usize, child: &Child) -> String {
    format!(
        "{{ hoist_dbclient {alias} {port} {user} {address} 2>&1 > /dev/null | {keep}; cat > /dev/null; }} < \"$P.c{n}\" > /dev/null 2>&1 &\n",
        alias = q(&child.alias),
        keep = super::child::keep_last_words(&child.alias),
        port = child.port,
        user = q(&child.user),
        address = q(&child.address),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Runs [`FUNCTION`] on `bytes` bytes with `fake` as `dbclient`;
    /// returns what the shell printed and how long it took.
    fn run(fake: &str, bytes: usize) -> (String, Duration, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(bin.join("../x/child")).unwrap();
        std::fs::write(bin.join("dbclient"), format!("#!/bin/sh\n{fake}\n")).unwrap();
        std::fs::set_permissions(
            bin.join("dbclient"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let script = format!(
            "X={d}/x P={d}/p\n{FUNCTION}head -c {bytes} /dev/zero | {{ hoist_dbclient child 22 u h; echo status=$?; cat > /dev/null; }}\n",
            d = dir.path().display()
        );
        let start = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        (said, start.elapsed(), dir)
    }

    #[test]
    fn a_client_that_streams_gets_every_byte() {
        let (said, _, dir) = run("cat > \"$HOME/../got\"", 300_000);
        assert!(said.contains("status=0"), "{said}");
        let got = std::fs::metadata(dir.path().join("x/got")).unwrap().len();
        assert_eq!(got, 300_000);
        assert!(dir.path().join("x/child/up").exists());
        assert!(
            !dir.path().join("x/child/in").exists(),
            "its fifo is removed"
        );
    }

    #[test]
    fn a_client_that_never_connects_is_ended_by_the_watchdog() {
        // Stands for a connect that hangs: it never reads its stdin.
        let (said, took, dir) = run("exec sleep 600", 300_000);
        assert!(!said.contains("status=0"), "{said}");
        assert!(took >= Duration::from_secs(9), "{took:?}");
        assert!(took < Duration::from_secs(120), "{took:?}");
        assert!(!dir.path().join("x/child/up").exists());
    }

    #[test]
    fn the_pinned_key_is_under_every_type() {
        let lines = known_hosts("10.0.0.7", "ssh-ed25519 AAAAC3Nz x");
        assert_eq!(lines.lines().count(), KEY_TYPES.len());
        assert!(lines.contains("10.0.0.7 ssh-ed25519 AAAAC3Nz\n"));
        assert!(lines.contains("10.0.0.7 ssh-rsa AAAAC3Nz\n"));
    }

    #[test]
    fn only_plain_addresses_and_users_go_to_dbclient() {
        let child = |address: &str, user: &str| Child {
            alias: "a".into(),
            user: user.into(),
            address: address.into(),
            port: 22,
        };
        assert!(reaches(&child("10.0.0.7", "deploy")));
        assert!(reaches(&child("fd00::7", "deploy")));
        assert!(reaches(&child("web-1.example", "app_user")));
        for (address, user) in [
            ("a,b", "u"),
            ("h/2222", "u"),
            ("u@h", "u"),
            ("-oProxy", "u"),
            ("h", "a,b@c"),
            ("h", ""),
        ] {
            assert!(!reaches(&child(address, user)), "{address} {user}");
        }
    }
}
