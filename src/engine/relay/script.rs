//! The host-side shell of a relay: what a host is given before the
//! stream (its key and the host keys of its children when it relays, its
//! forced command and the line that allows it when it is relayed to), the
//! fan-out its receive runs while it receives, and the cleanup after.
//!
//! Everything of run `<token>` lives in `$H/relay/<token>/`: `ak` (the
//! path of the authorized_keys file its line went into, written before
//! the line), `receive.sh` (the forced command), `key` and `known_hosts`.
//! A run's line in authorized_keys ends with `hoist-relay <token>`.

pub(crate) use super::child::Child;
use super::child::keep_last_words;
use super::dropbear;
use crate::engine::layout::relay_files::UNLIST_FN;
use crate::engine::layout::{Layout, ReceiveStep, SPLIT_TOOL, q};

/// The shell word for `relay.authorized_keys` on a host: `~/` is under
/// `$HOME`, a relative path under `deploy_to`.
fn authorized_keys(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("~/") {
        format!("\"$HOME\"/{}", q(rest))
    } else if path.starts_with('/') {
        q(path)
    } else {
        format!("\"$D\"/{}", q(path))
    }
}

/// Which SSH client the host has: `ssh` (OpenSSH's, preferred), `dbclient`
/// (dropbear's) or `none`; then, on the same line, `split` when it has
/// what a whole artifact's receive splits the manifest off with
/// ([`SPLIT_TOOL`]).
pub(crate) fn has_client() -> String {
    format!(
        "if command -v ssh >/dev/null 2>&1; then c=ssh; elif command -v dbclient >/dev/null 2>&1; then c=dbclient; else c=none; fi\nif command -v {SPLIT_TOOL} >/dev/null 2>&1; then echo \"$c split\"; else echo \"$c\"; fi"
    )
}

/// Whether [`has_client`]'s answer says the host can split a manifest off.
pub(crate) fn splits(answer: &str) -> bool {
    answer.split_whitespace().nth(1) == Some("split")
}

/// The SSH client a relaying host passes the stream on with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    /// OpenSSH's `ssh`.
    Ssh,
    /// Dropbear's `dbclient` ([`super::dropbear`]).
    Dbclient,
}

impl Client {
    /// The client's command, as [`has_client`] prints it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Client::Ssh => "ssh",
            Client::Dbclient => "dbclient",
        }
    }

    /// The client [`has_client`] printed, if any.
    pub(crate) fn from_answer(answer: &str) -> Option<Client> {
        let word = answer.split_whitespace().next().unwrap_or_default();
        [Client::Ssh, Client::Dbclient]
            .into_iter()
            .find(|c| c.name() == word)
    }
}

/// One child a relay pins: its alias, its address and its host key as
/// hoist accepted it (`type base64`).
pub(crate) struct Pinned {
    pub alias: String,
    pub address: String,
    pub host_key: String,
}

/// What one host is given before the stream.
pub(crate) struct Prepare<'a> {
    pub token: &'a str,
    /// `relay.authorized_keys`.
    pub authorized_keys: &'a str,
    /// It relays: with which client, and its children's host keys (its key
    /// comes on stdin, never in a script).
    pub known_hosts: Option<(Client, Vec<Pinned>)>,
    /// It is relayed to: its receive script and its parent's public key.
    pub receive: Option<(String, String)>,
}

impl Prepare<'_> {
    /// The script: prints `listed` once a relayed host's line is in
    /// authorized_keys, `ready` for a relay only, `unnamable` when the
    /// relay directory's path holds a character other than letters,
    /// digits and `/._+@%=,:-` (it could not go in a forced command).
    pub(crate) fn script(&self, layout: &Layout) -> String {
        let mut s = format!(
            "{head}\nX=\"$H/relay/\"{token}\numask 077\nmkdir -p \"$X\" && printf '%s\\n' {ak} > \"$X/ak\" || exit 1\n",
            head = layout.head(),
            token = q(self.token),
            ak = authorized_keys(self.authorized_keys),
        );
        if let Some((client, children)) = &self.known_hosts {
            s += "cat > \"$X/key\" || exit 1\n";
            s += &known_hosts(*client, children);
        }
        let Some((receive, parent_key)) = &self.receive else {
            s += "echo ready\n";
            return s;
        };
        s += &format!(
            r#"printf '%s' {receive} > "$X/receive.sh" || exit 1
x=$(cd "$X" && pwd -P) || exit 1
case $x in *[!A-Za-z0-9/._+@%=,:-]*) echo unnamable; exit 0 ;; esac
A=$(cat "$X/ak")
mkdir -p "${{A%/*}}" || exit 1
if [ -s "$A" ] && [ -n "$(tail -c 1 "$A")" ]; then echo >> "$A" || exit 1; fi
printf 'restrict,command="sh %s/receive.sh" %s hoist-relay %s\n' "$x" {key} {token} >> "$A" || exit 1
echo listed
"#,
            receive = q(receive),
            key = q(parent_key),
            token = q(self.token),
        );
        s
    }
}

/// After the stream: whether the host holds release `id` of content
/// `content_sha`, verified (`have` or `missing`), then the last words of
/// each of its hop clients that said any (`hop <alias> <bytes>` and the
/// bytes), then the host's line and files of run `token` removed. See
/// [`Finished::parse`].
pub(crate) fn finish(layout: &Layout, token: &str, id: &str, content_sha: &str) -> String {
    format!(
        r#"{head}
{UNLIST_FN}
X="$H/relay/"{token}
if [ -d "$D/releases/"{id} ] && [ "$(cat "$H/sums/"{id} 2>/dev/null)" = {sha} ]; then echo have; else echo missing; fi
for f in "$X"/hoist-relay-*.err; do
  [ -s "$f" ] || continue
  n=${{f##*/}}; printf 'hop %s %s\n' "${{n%.err}}" "$(wc -c < "$f")"; cat "$f"
done
if [ -f "$X/ak" ]; then hoist_relay_unlist "$(cat "$X/ak")" {token} || exit 1; fi
rm -rf "$X" && {{ rmdir "$H/relay" 2>/dev/null; true; }} || exit 1
"#,
        head = layout.head(),
        token = q(token),
        id = q(id),
        sha = q(content_sha),
    )
}

/// What a host answered to [`finish`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Finished {
    /// It holds the release, verified.
    pub have: bool,
    /// Each hop client's last lines, by the child's alias: cleaned of
    /// control characters, at most three lines, joined with `; `.
    pub last_words: Vec<(String, String)>,
}

impl Finished {
    pub(crate) fn parse(stdout: &[u8]) -> Finished {
        let mut lines = stdout.splitn(2, |&b| b == b'\n');
        let have = lines.next() == Some(b"have");
        let mut rest = lines.next().unwrap_or_default();
        let mut last_words = Vec::new();
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let head = String::from_utf8_lossy(&rest[..at]).into_owned();
            let mut words = head.split_whitespace();
            let (Some("hop"), Some(alias), Some(len)) = (words.next(), words.next(), words.next())
            else {
                break;
            };
            let Ok(len) = len.parse::<usize>() else { break };
            let body = &rest[at + 1..];
            let said = &body[..len.min(body.len())];
            rest = &body[said.len()..];
            let text = crate::report::style::clean(&String::from_utf8_lossy(said));
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let last = lines[lines.len().saturating_sub(3)..].join("; ");
            if !last.is_empty() {
                last_words.push((alias.to_string(), last));
            }
        }
        Finished { have, last_words }
    }
}

/// What a relay's `ssh` offers first, for a hop's CPU on the relaying
/// host (measured with OpenSSH 9.2 on this project's bench machine):
/// `$HK`, curve25519 key exchange first where the client takes `^` in
/// KexAlgorithms (OpenSSH 9's default, sntrup761x25519, cost 85 ms of the
/// client's CPU per connection against 9 ms, and was most of the `ssh`
/// processes' share of a 50-host relay; the release is the one hoist's own
/// connections carry with curve25519); `$HC` (not `$C`: a delta's receive
/// names its base release so), AES-GCM first where the CPU has AES
/// instructions (0.14 s of client CPU for 300 MB against 0.26 s with
/// ChaCha20-Poly1305), ChaCha20-Poly1305 first elsewhere, AES-CTR last for
/// an older sshd.
const HOP_CRYPTO: &str = "HC=chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes128-ctr
grep -qw aes /proc/cpuinfo 2>/dev/null && HC=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr
HK=-oKexAlgorithms=^curve25519-sha256,curve25519-sha256@libssh.org
ssh -F /dev/null -G \"$HK\" hoist-relay > /dev/null 2>&1 || HK=-oLogLevel=ERROR";

/// The lines a receive runs before it reads its stdin so that it passes
/// the stream on to `children` as it arrives: one fifo each, read by an
/// `ssh` (with this run's key, only the pinned host keys, no agent, no
/// forwarding, no config file of the host's) whose end never stops the
/// stream (`cat` reads what it leaves). `ssh` reads a pipe, never the fifo
/// itself: OpenSSH makes its stdin non-blocking and, when its connection
/// breaks, exits leaving it so; on the fifo's shared descriptor the `cat`
/// after it would then end on the first empty read, and the parent's
/// `tee`, its last reader gone, with it (in the bench, a child killed
/// mid-stream cost its parent's own receive and every sibling's).
/// Returns the lines and the fifos for `tee`.
pub(crate) fn fan_out(token: &str, client: Client, children: &[Child]) -> (String, String) {
    let mut setup = format!("X=\"$H/relay/\"{}\nK=\n", q(token));
    if client == Client::Dbclient {
        setup += dropbear::FUNCTION;
    } else {
        setup += HOP_CRYPTO;
        setup += "\n";
    }
    let mut fifos = String::new();
    for (n, c) in children.iter().enumerate() {
        fifos += &format!(" \"$P.c{n}\"");
        if client == Client::Dbclient {
            setup += &format!(
                "mkfifo \"$P.c{n}\" || exit {write}\n{line}K=\"$K $!\"\n",
                write = ReceiveStep::Write.code(),
                line = dropbear::child_line(n, c)
            );
            continue;
        }
        setup += &format!(
            r#"mkfifo "$P.c{n}" || exit {write}
{{ cat | ssh -F /dev/null -T -i "$X/key" -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile="$X/known_hosts" -o GlobalKnownHostsFile=/dev/null -o HostKeyAlias={alias} -o StrictHostKeyChecking=yes -o BatchMode=yes -c "$HC" "$HK" -o ForwardAgent=no -o ForwardX11=no -o ClearAllForwardings=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o LogLevel=ERROR -p {port} -l {user} {address} hoist-relay 2>&1 > /dev/null | {keep}; cat > /dev/null; }} < "$P.c{n}" > /dev/null 2>&1 &
K="$K $!"
"#,
            alias = q(&c.alias),
            keep = keep_last_words(&c.alias),
            port = c.port,
            user = q(&c.user),
            address = q(&c.address),
            write = ReceiveStep::Write.code(),
        );
    }
    (setup, fifos)
}

/// The lines that write a relay's known hosts: for `ssh` one file of
/// `alias key` lines (`HostKeyAlias`), for `dbclient` one home per child
/// ([`dropbear::known_hosts`]).
fn known_hosts(client: Client, children: &[Pinned]) -> String {
    match client {
        Client::Ssh => {
            let lines: String = children
                .iter()
                .map(|c| format!("{} {}\n", c.alias, c.host_key))
                .collect();
            format!(
                "printf '%s' {} > \"$X/known_hosts\" || exit 1\n",
                q(&lines)
            )
        }
        Client::Dbclient => children
            .iter()
            .map(|c| {
                format!(
                    "mkdir -p \"$X/\"{alias}/.ssh && printf '%s' {lines} > \"$X/\"{alias}/.ssh/known_hosts || exit 1\n",
                    alias = q(&c.alias),
                    lines = q(&dropbear::known_hosts(&c.address, &c.host_key)),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`has_client`] answers with only `names` on the PATH.
    fn asked(names: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(has_client())
            .env("PATH", dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn answer(names: &[&str]) -> Option<Client> {
        Client::from_answer(&asked(names))
    }

    #[test]
    fn openssh_is_preferred_then_dbclient() {
        assert_eq!(answer(&["ssh", "dbclient"]), Some(Client::Ssh));
        assert_eq!(answer(&["ssh"]), Some(Client::Ssh));
        assert_eq!(answer(&["dbclient"]), Some(Client::Dbclient));
        assert_eq!(answer(&["scp"]), None);
        assert_eq!(answer(&["ssh", "dd"]), Some(Client::Ssh));
    }

    /// A host without `dd` cannot take a whole artifact's manifest off
    /// the stream: the relay leaves it out (it is served from here).
    #[test]
    fn a_host_splits_the_manifest_off_only_with_dd() {
        assert!(splits(&asked(&["ssh", "dd"])));
        assert!(splits(&asked(&["dd"])));
        assert!(!splits(&asked(&["ssh"])));
        assert!(!splits(&asked(&["dbclient"])));
    }

    /// A hop client's stderr is kept to its last bytes however much it
    /// says, and the relay's end reads back its last lines, cleaned,
    /// before it removes the run's directory: under sh and busybox.
    #[test]
    fn a_hop_s_last_words_are_kept_bounded_and_read_back_clean() {
        let id = "20260102T000000Z-bbbbbbbb";
        for shell in crate::host_shells::shells() {
            let base = tempfile::tempdir().unwrap();
            let layout = Layout::new(base.path().join("app").to_str().unwrap());
            let x = base.path().join("app/.hoist/relay/tok");
            std::fs::create_dir_all(&x).unwrap();
            let noise = "x".repeat(2000);
            let said = format!(
                "set -u; X={x}\n{{ printf '%s\\n' {noise} one two; printf 'three \\033[31mred\\033[0m\\n'; printf 'Connection closed by 127.0.0.1 port 1234\\r\\n'; }} | {keep}\n",
                x = q(x.to_str().unwrap()),
                keep = keep_last_words("hoist-relay-3"),
            );
            let ran = shell.run(base.path(), &said, b"");
            assert_eq!(ran.code, 0, "{}: {}", shell.name, ran.stderr);
            let kept = std::fs::read(x.join("hoist-relay-3.err")).unwrap();
            assert_eq!(
                kept.len(),
                super::super::child::LAST_WORDS,
                "{}",
                shell.name
            );
            let ran = shell.run(base.path(), &finish(&layout, "tok", id, "c0ffee"), b"");
            assert_eq!(ran.code, 0, "{}: {}", shell.name, ran.stderr);
            assert_eq!(
                Finished::parse(&ran.stdout),
                Finished {
                    have: false,
                    last_words: vec![(
                        "hoist-relay-3".to_string(),
                        "two; three red; Connection closed by 127.0.0.1 port 1234".to_string()
                    )],
                },
                "{}",
                shell.name
            );
            assert!(!x.exists(), "{}", shell.name);
        }
    }

    #[test]
    fn a_finish_answer_without_last_words_or_cut_short_still_parses() {
        assert_eq!(
            Finished::parse(b"have\n"),
            Finished {
                have: true,
                last_words: vec![]
            }
        );
        let cut = Finished::parse(b"missing\nhop hoist-relay-1 40\nshort");
        assert!(!cut.have);
        assert_eq!(
            cut.last_words,
            vec![("hoist-relay-1".into(), "short".into())]
        );
        assert_eq!(Finished::parse(b"junk"), Finished::default());
    }
}
