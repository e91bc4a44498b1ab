//! Every shell command hoist sends to a host is built here, with every value
//! quoted. Hosts need only POSIX sh, tar, gzip and coreutils (busybox will do).

mod evidence;
mod lock;
mod mark;
mod probe;
pub(crate) mod relay_files;
mod relayed;

pub(crate) use lock::LOCK_FNS;
use lock::still_held;
pub use lock::{LOCK_LOST, LockAnswer, LockInfo, LockState, UnlockAnswer};
pub use mark::Mark;
pub use probe::{PROBE_MAX, Probe};
pub(crate) use relayed::{SPLIT_TOOL, WholeHop};

pub use crate::artifact::Packing;
use crate::release::ReleaseId;

/// Quotes one word for POSIX sh. Values reaching here are validated text;
/// a NUL byte (which no shell word can hold) is dropped rather than trusted.
pub fn q(value: &str) -> String {
    let clean: String = value.chars().filter(|&c| c != '\0').collect();
    shlex::try_quote(&clean)
        .expect("NUL bytes were removed")
        .into_owned()
}

/// Tools a host must have; `check` and preflight look for each.
pub const TOOLS: &[&str] = &[
    "sh",
    "tar",
    "gzip",
    "sha256sum",
    "mkdir",
    "mv",
    "ln",
    "rm",
    "cp",
    "readlink",
    "df",
    "awk",
    "cat",
    "head",
    "tail",
    "tee",
    "mkfifo",
    "grep",
    "dirname",
    "find",
    "stat",
    "sort",
    "cut",
    "wc",
];

/// Sets `HOIST_SHA` to a sha256 tool that prints `HASH  NAME` or `HASH
/// *NAME` for files (`stdin` for its input): `openssl dgst -sha256 -r` when
/// the host has it and it prints what is expected (it uses the CPU's SHA
/// instructions, about 4x faster than coreutils 9.1's `sha256sum`, which
/// does not), else `sha256sum`. Costs one `openssl` start.
pub(super) const PICK_SHA: &str = r#"HOIST_SHA=sha256sum
if command -v openssl >/dev/null 2>&1 && [ "$(printf '' | openssl dgst -sha256 -r 2>/dev/null)" = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 *stdin' ]; then HOIST_SHA='openssl dgst -sha256 -r'; fi"#;

/// Commands for one host's `deploy_to` layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub deploy_to: String,
    /// `artifact.allow_setuid`: a release keeps its files' setuid and
    /// setgid bits (see [`Layout::tame_fn`]).
    pub allow_setuid: bool,
}

/// The lines that unpack stdin into `dir` (`tar FLAGS`) while `tee`
/// passes it to `$P.fifo` (hashed by `$HOIST_SHA`) and to `fifos` (a
/// relay's children), then check it: `what`'s sha256 must be `sha`
/// (else exit [`ReceiveStep::Checksum`]), and the unpack must have
/// succeeded (else exit `unpack_code`). Leaves `set -f` on. Shared by the
/// receive of an artifact and of a relayed delta.
pub(crate) fn hashed_unpack(
    dir: &str,
    flags: &str,
    fifos: &str,
    (what, sha): (&str, &str),
    unpack_code: i32,
) -> String {
    format!(
        r#"r=$($HOIST_SHA < "$P.fifo" & h=$!
  tee "$P.fifo"{fifos} | (cd "{dir}" && tar {flags} - >&2; s=$?; cat > /dev/null; exit $s)
  echo "unpacked=$?"; wait "$h"; echo "hashed=$?")
set -f; sum=; unpacked=1; hashed=1
for w in $r; do case $w in unpacked=*) unpacked=${{w#*=}} ;; hashed=*) hashed=${{w#*=}} ;; -|'*stdin') ;; *) sum=$w ;; esac; done
[ "$hashed" = 0 ] || {{ echo "cannot hash the {what}" >&2; exit {checksum}; }}
if [ "$sum" != {sha} ]; then printf 'checksum mismatch: expected %s, got %s\n' {sha} "$sum" >&2; exit {checksum}; fi
[ "$unpacked" = 0 ] || exit {unpack_code}"#,
        sha = q(sha),
        checksum = ReceiveStep::Checksum.code(),
    )
}

impl Layout {
    pub fn new(deploy_to: impl Into<String>) -> Layout {
        Layout {
            deploy_to: deploy_to.into(),
            allow_setuid: false,
        }
    }

    /// The shell function `hoist_tame DIR`, run on a release unpacked under
    /// its temporary name before it is listed or renamed into place: a
    /// release never holds a device, FIFO or socket (it fails, naming up
    /// to three), never keeps an owner from the artifact (as root, every
    /// entry not root's becomes root's, as with GNU tar's
    /// `--no-same-owner`, which busybox's tar lacks; chown clears setuid
    /// bits), and, unless `allow_setuid`, holds no setuid or setgid file.
    pub(super) fn tame_fn(&self) -> String {
        let strip = if self.allow_setuid {
            ""
        } else {
            "\n  find . -type f \\( -perm -4000 -o -perm -2000 \\) -exec chmod ug-s {} + || return 1"
        };
        format!(
            r#"hoist_tame() (
  cd "$1" || return 1
  s=$(find . \( -type b -o -type c -o -type p -o -type s \) -print 2>/dev/null | head -n 3 | tr '\n' ' ')
  if [ -n "$s" ]; then printf 'the artifact holds special files (devices, FIFOs or sockets), which a release never holds: %s\n' "$s" >&2; return 1; fi
  if [ "$(id -u)" = 0 ]; then find . \( ! -user 0 -o ! -group 0 \) -exec chown -h 0:0 {{}} + || return 1; fi{strip}
)"#
        )
    }

    pub fn release_path(&self, id: &ReleaseId) -> String {
        format!("{}/releases/{}", self.deploy_to.trim_end_matches('/'), id)
    }

    pub(crate) fn head(&self) -> String {
        format!(
            "set -u; umask 022; D={}; H=\"$D/.hoist\"",
            q(&self.deploy_to)
        )
    }

    /// A run's temporary name in `.hoist/tmp`, as a shell word that expands
    /// to its full path: `<id>.<token>`, to which `.d`, `.fifo` or `.sum` is added.
    /// The token names the run that owns the file (see [`Layout::lock`]).
    pub(super) fn part(&self, id: &ReleaseId, token: &str) -> String {
        format!("\"$H/tmp/\"{}", q(&format!("{id}.{token}")))
    }

    /// Receives the upload on stdin, hashing it while it is unpacked under
    /// a temporary name (`tee` into a fifo that `sha256sum` reads: no copy
    /// of the upload, not even its hash, is ever written, so a disk that
    /// fills fails the unpack, not the hash), and renames it to `releases/<id>` only
    /// when the hash matches; else the unpacked tree is removed. One round
    /// trip, and nothing half written is ever left where a rollback could
    /// find it. Exits with a [`ReceiveStep`] code when a step fails. Reads
    /// its stdin to the end whatever happens (tar may stop before the
    /// archive's padding; a failed tar leaves the rest to `cat`).
    ///
    /// No path reaches a tool as an argument it could reinterpret: the hash
    /// is read from stdin (`sha256sum FILE` escapes a name holding `\` or a
    /// newline, and its hash with it), tar reads stdin in the target
    /// directory (GNU tar unescapes `-C` names: `a\b` is a backspace), and
    /// `tee` gets an absolute path.
    pub fn receive(
        &self,
        id: &ReleaseId,
        token: &str,
        packing: Packing,
        transfer_sha: &str,
        content_sha: &str,
    ) -> String {
        self.receive_fanning(id, token, packing, transfer_sha, content_sha, None)
    }

    /// [`Layout::receive`] as a host of a relay tree runs it
    /// ([`WholeHop`]): passing the stream on as it arrives when `hop.fan`
    /// is given (lines run before the stream, starting one reader per
    /// fifo, each adding its pid to `$K`, and the fifos `tee` also writes
    /// to; the script then waits for its readers before it ends, and a
    /// halt kills them), and taking the release's manifest off the
    /// stream's head, checked, when `hop.manifest` is given (it becomes
    /// the release's with it). Without `hop`, the script is `receive`'s
    /// exactly.
    pub(crate) fn receive_fanning(
        &self,
        id: &ReleaseId,
        token: &str,
        packing: Packing,
        transfer_sha: &str,
        content_sha: &str,
        hop: Option<WholeHop>,
    ) -> String {
        // The release must hold the artifact's modes: GNU tar applies the
        // umask unless told to preserve them, which TAR_OPTIONS does without
        // an option busybox's tar would refuse (busybox reads no TAR_OPTIONS).
        let flags = match packing {
            Packing::TarGz => "-xzf",
        };
        let hop = hop.unwrap_or_default();
        let fifos = hop.fan.map_or("", |(_, fifos)| fifos);
        // The archive's hashed unpack; it passes the stream on itself
        // unless the manifest's split, ahead of it, does.
        let unpack = |fifos: &str| {
            hashed_unpack(
                "$P.d",
                flags,
                fifos,
                ("upload", transfer_sha),
                ReceiveStep::Unpack.code(),
            )
        };
        let (unpacked, (split, dir), keep) = match hop.manifest {
            None => (unpack(fifos), ("", ""), String::new()),
            Some(manifest) => (
                relayed::manifest_first(manifest, fifos, &unpack("")),
                (relayed::SPLIT_FILES, relayed::SPLIT_DIR),
                relayed::keep_manifest(id.as_str()),
            ),
        };
        format!(
            r#"{head}
{pick_sha}
P={part}
R="$D/releases/{id}"
TAR_OPTIONS='--preserve-permissions --no-same-owner'; export TAR_OPTIONS
{tame_fn}
{traps}
if [ -e "$R" ]; then printf '%s already exists\n' "$R" >&2; exit {exists}; fi
mkdir -p "$D/releases" "$H/tmp" "$H/sums"{dir} && rm -rf "$P.d" "$P.fifo"{split} && mkdir "$P.d" && mkfifo "$P.fifo" || exit {write}
{fan_setup}{unpacked}
hoist_tame "$P.d" || exit {unpack}
{keep}printf '%s\n' {content_sha} > "$H/sums/{id}" && mv "$P.d" "$R" || exit {finish}
"#,
            head = self.head(),
            pick_sha = PICK_SHA,
            tame_fn = self.tame_fn(),
            part = self.part(id, token),
            traps = match hop.fan {
                None => format!(
                    "trap 'rm -rf \"$P.d\" \"$P.fifo\"{split}' EXIT\ntrap 'exit 130' HUP INT TERM"
                ),
                Some((_, fifos)) => format!(
                    "K=\ntrap 'wait; rm -rf \"$P.d\" \"$P.fifo\"{split}{fifos}' EXIT\ntrap '[ -z \"$K\" ] || kill $K 2>/dev/null; exit 130' HUP INT TERM"
                ),
            },
            fan_setup = hop.fan.map_or("", |(setup, _)| setup),
            content_sha = q(content_sha),
            write = ReceiveStep::Write.code(),
            exists = ReceiveStep::Exists.code(),
            unpack = ReceiveStep::Unpack.code(),
            finish = ReceiveStep::Finish.code(),
        )
    }

    /// Makes `releases/<id>` from a release the host already holds, with no
    /// upload (a copy of its contents, never of the link when `from` is a
    /// symlink to a release moved elsewhere), and its manifest when it has one (hoist may have none to send:
    /// an `artifact.url`). Exits with the [`ReceiveStep`] codes of the steps
    /// it shares with [`Layout::receive`] (the copy is `Unpack`).
    pub fn copy_release(
        &self,
        from: &ReleaseId,
        id: &ReleaseId,
        token: &str,
        content_sha: &str,
    ) -> String {
        format!(
            r#"{head}
P={part}
R="$D/releases/{id}"
trap 'rm -rf "$P.d"' EXIT
trap 'exit 130' HUP INT TERM
if [ -e "$R" ]; then printf '%s already exists\n' "$R" >&2; exit {exists}; fi
rm -rf "$P.d" && mkdir "$P.d" && cp -a "$D/releases/{from}/." "$P.d/" || exit {unpack}
if [ -f "$H/manifests/{from}" ]; then mkdir -p "$H/manifests" && cp "$H/manifests/{from}" "$H/manifests/{id}" || exit {finish}; fi
printf '%s\n' {content_sha} > "$H/sums/{id}" && mv "$P.d" "$R" || exit {finish}
"#,
            head = self.head(),
            part = self.part(id, token),
            content_sha = q(content_sha),
            exists = ReceiveStep::Exists.code(),
            unpack = ReceiveStep::Unpack.code(),
            finish = ReceiveStep::Finish.code(),
        )
    }

    /// Runs one hook with `sh -c` in `dir`, with the given environment;
    /// it ends when the hook's command does (see [`until_it_exits`]).
    pub fn hook(&self, dir: &str, env: &[(String, String)], command: &str) -> String {
        let mut script = format!("cd {} || exit 1\n", q(dir));
        for (name, value) in env {
            script.push_str(&format!("export {}={}\n", name, q(value)));
        }
        script.push_str(&until_it_exits(command));
        script
    }

    /// Points `current` at `releases/<id>` atomically: a new symlink made
    /// beside, then renamed over the old one (rename(2) never follows it).
    /// The journal line is written in the same round trip. With `held`
    /// (the run's token), nothing is switched unless the lock still holds
    /// it: the script exits [`LOCK_LOST`] with [`Layout::lock`]'s `held`
    /// lines on stderr (none when no lock is left).
    pub fn switch(&self, id: &ReleaseId, held: Option<&str>, journal_line: &str) -> String {
        format!(
            r#"{head}
{still_held}
[ -d "$D/releases/{id}" ] || {{ echo "release {id} is not on this host" >&2; exit 4; }}
S="$H/tmp/switch.$$"
rm -rf "$S" && mkdir -p "$S" && ln -s "releases/{id}" "$S/current" && mv "$S/current" "$D/" || {{ rm -rf "$S"; exit 1; }}
rmdir "$S"
printf 'switched %s\n' "$(readlink "$D/current")"
{append}
"#,
            head = self.head(),
            still_held = still_held(held),
            append = append_journal(journal_line),
        )
    }

    /// Removes `current` (going back from a first deploy, when there is no
    /// earlier release to point at), with its journal line; `held` as in
    /// [`Layout::switch`].
    pub fn unswitch(&self, held: Option<&str>, journal_line: &str) -> String {
        format!(
            "{head}\n{still_held}\nrm -f \"$D/current\" || exit 1\n{append}\n",
            head = self.head(),
            still_held = still_held(held),
            append = append_journal(journal_line),
        )
    }

    /// Appends one line to the journal and changes nothing else (blue-green
    /// traffic, a release waiting for promotion, its end).
    pub fn record(&self, journal_line: &str) -> String {
        format!(
            "{head}\nmkdir -p \"$H\" && printf '%s\\n' {journal} >> \"$H/journal\"",
            head = self.head(),
            journal = q(journal_line)
        )
    }

    /// Deletes the given releases (the caller chose them; never current nor
    /// the rollback target). Stale temporary files go when a run takes the
    /// lock ([`Layout::lock`]).
    pub fn prune(&self, ids: &[ReleaseId]) -> String {
        let mut script = self.head();
        script.push('\n');
        for id in ids {
            script.push_str(&format!(
                "rm -rf \"$D/releases/{id}\" \"$H/sums/{id}\" \"$H/manifests/{id}\" \"$H/diagnostics/{id}\"\n"
            ));
        }
        script
    }
}

/// Runs `command` with `sh -c`, its output passed on, and ends once the
/// command has ended: not once every process it started has closed the
/// output it inherited. A daemon a hook starts with `&` (`nohup ./server &`)
/// keeps that output open for its whole life, which would hold the hook,
/// and the deploy, until it exits. So the command writes into two FIFOs,
/// relayed by two `cat`s; once the command has exited, the relays have one
/// second to pass on what is still coming, then two new readers take over
/// the FIFOs and throw away whatever the daemon writes later (so it never
/// gets SIGPIPE), and the relays are stopped. Without `mktemp` or `mkfifo`
/// (or a writable temporary directory) the command runs as it is.
pub fn until_it_exits(command: &str) -> String {
    UNTIL_IT_EXITS.replace("@COMMAND", &q(command))
}

/// See [`until_it_exits`]. The takeover opens each FIFO read-write first
/// (its own writer), so that opening it to read never blocks when the
/// command left nothing holding it, and the new readers get the FIFOs from
/// it before the relays stop: never a moment without a reader.
const UNTIL_IT_EXITS: &str = r#"c=@COMMAND
t=$(mktemp -d "${TMPDIR:-/tmp}/hoist-hook.XXXXXXXX" 2>/dev/null) && mkfifo "$t/o" "$t/e" 2>/dev/null || { [ -n "${t:-}" ] && rm -rf "$t"; exec sh -c "$c"; }
cat "$t/o" & o=$!
cat "$t/e" >&2 & e=$!
sh -c "$c" >"$t/o" 2>"$t/e"
r=$?
( sleep 1
  exec 8<>"$t/o" 9<>"$t/e" 6<"$t/o" 7<"$t/e" || exit 0
  cat <&6 >/dev/null 2>&1 6<&- 7<&- 8<&- 9<&- &
  cat <&7 >/dev/null 2>&1 6<&- 7<&- 8<&- 9<&- &
  kill -s PIPE $o $e ) </dev/null >/dev/null 2>&1 &
w=$!
wait $o $e
kill $w 2>/dev/null
rm -rf "$t"
exit $r
"#;

/// Appends one journal line; when that fails, prints `unrecorded` and why
/// on stdout (see [`unrecorded`]) and goes on: what was done stays done.
fn append_journal(journal_line: &str) -> String {
    format!(
        r#"if ! e=$({{ printf '%s\n' {journal} >> "$H/journal"; }} 2>&1); then printf 'unrecorded %s\n' "$(printf '%s\n' "$e" | head -n 1)"; fi"#,
        journal = q(journal_line)
    )
}

/// Why a script's journal line was not written, if it was not
/// ([`append_journal`]'s `unrecorded` line).
pub fn unrecorded(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        let why = l.strip_prefix("unrecorded")?;
        Some(match why.trim() {
            "" => "the append failed".to_string(),
            why => why.to_string(),
        })
    })
}

/// The steps of [`Layout::receive`] that can fail, by the exit code its
/// script ends with. Any other code (1, 130 when interrupted, or what the
/// transport reports for a cut connection) is not one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveStep {
    /// Making room for the upload in `.hoist/tmp` (a temporary directory
    /// and the fifo its hash is read from).
    Write = 2,
    /// Hashing the upload, or its sha256 differs from the artifact's.
    Checksum = 3,
    /// `releases/<id>` already exists.
    Exists = 4,
    /// Unpacking (or copying) under a temporary name: a corrupt archive, or
    /// the disk full while unpacking.
    Unpack = 5,
    /// Recording the content checksum, or renaming into `releases/<id>`.
    Finish = 6,
}

/// Which phase of an upload a [`ReceiveStep`] belongs to, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveStage {
    /// Bytes on their way to the host.
    Upload,
    /// The whole upload is there; its checksum is checked.
    Verify,
    /// Making `releases/<id>` from the verified upload.
    Unpack,
}

impl ReceiveStep {
    pub fn from_exit(code: i32) -> Option<ReceiveStep> {
        [
            ReceiveStep::Write,
            ReceiveStep::Checksum,
            ReceiveStep::Exists,
            ReceiveStep::Unpack,
            ReceiveStep::Finish,
        ]
        .into_iter()
        .find(|step| step.code() == code)
    }

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn stage(self) -> ReceiveStage {
        match self {
            ReceiveStep::Write => ReceiveStage::Upload,
            ReceiveStep::Checksum => ReceiveStage::Verify,
            ReceiveStep::Exists | ReceiveStep::Unpack | ReceiveStep::Finish => ReceiveStage::Unpack,
        }
    }

    /// What failed, for an error message.
    pub fn what(self) -> &'static str {
        match self {
            ReceiveStep::Write => "making room for the upload",
            ReceiveStep::Checksum => "verifying the upload's checksum",
            ReceiveStep::Exists => "the release already exists",
            ReceiveStep::Unpack => "unpacking the release",
            ReceiveStep::Finish => "moving the release into place",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lock::lock_token;
    use super::*;
    use crate::host_shells::shells;

    #[test]
    fn quoting_neutralises_shell_syntax() {
        assert_eq!(q("plain"), "plain");
        assert_eq!(q("a b"), "'a b'");
        assert_eq!(q("it's"), "\"it's\"");
        let evil = "$(touch /tmp/pwned); `id` && rm -rf / ; 'x'";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", q(evil)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), evil);
    }

    #[test]
    fn quoting_drops_nul() {
        assert_eq!(q("a\0b"), "ab");
    }

    #[test]
    fn hook_env_values_cannot_inject() {
        let layout = Layout::new("/srv/app");
        let script = layout.hook(
            "/tmp",
            &[("HOIST_VAR_X".into(), "$(echo injected)".into())],
            "printf %s \"$HOIST_VAR_X\"",
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "$(echo injected)");
    }

    #[test]
    fn probe_parses_every_field() {
        let out = "hoist-probe 1\nwritable 0 /srv\nfree_kb 1234\nmissing gzip\ncurrent releases/20260101T000000Z-aaaaaaaa\nrelease 20260101T000000Z-aaaaaaaa abc\nrelease 20250101T000000Z-bbbbbbbb \nrelease junk x\nlock {\"by\":\"x\"}\njournal\n{\"a\":1}\n{\"b\":2}\n";
        let p = Probe::parse(out).unwrap();
        assert_eq!(p.not_writable.as_deref(), Some("/srv"));
        assert_eq!(p.free_kb, Some(1234));
        assert_eq!(p.missing_tools, vec!["gzip"]);
        assert_eq!(p.current.unwrap().as_str(), "20260101T000000Z-aaaaaaaa");
        assert_eq!(p.releases.len(), 2);
        assert_eq!(p.releases[0].1, None);
        assert_eq!(p.releases[1].1.as_deref(), Some("abc"));
        assert_eq!(p.lock.as_deref(), Some("{\"by\":\"x\"}"));
        assert_eq!(p.journal, vec!["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn probe_rejects_foreign_output() {
        assert!(Probe::parse("Welcome to the banner\n").is_err());
    }

    // The scripts run here as they would on a host: `sh -c` with a temporary
    // directory as deploy_to, under dash and, when installed, busybox (its
    // shell and its tools only).

    use std::collections::BTreeSet;
    use std::fs;

    use std::path::Path;
    use std::process::Command;

    const ID: &str = "20260101T000000Z-aaaaaaaa";
    const TOKEN: &str = "0123456789ab";
    const LOCK_LINE: &str =
        r#"{"by":"me@here","pid":1,"since":"2026-01-01T00:00:00Z","token":"0123456789ab"}"#;

    fn id() -> ReleaseId {
        ReleaseId::parse(ID).unwrap()
    }

    /// The lock script's answer says it took the lock.
    fn acquired(answer: &str) -> bool {
        matches!(LockAnswer::parse(answer), Ok(LockAnswer::Acquired(_)))
    }

    fn layout(deploy_to: &Path) -> Layout {
        Layout::new(deploy_to.to_str().unwrap())
    }

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut builder = tar::Builder::new(gz);
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn sha(bytes: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(bytes)[..])
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    /// Valid absolute paths that shell tools like to misread.
    const AWKWARD: &[&str] = &[
        "back\\slash",
        "new\nline",
        "-rf",
        "a\\b/-n/c d",
        "with space",
        "it's \"quoted\"",
        "$(touch pwned)",
        "`touch pwned`",
        "glob*?[x",
    ];

    #[test]
    fn receive_works_under_awkward_deploy_paths() {
        let upload = tar_gz(&[("bin/app", b"hello\n")]);
        for shell in shells() {
            for name in AWKWARD {
                let base = tempfile::tempdir().unwrap();
                let deploy_to = base.path().join(name);
                let layout = layout(&deploy_to);
                let at = format!("{} {name:?}", shell.name);
                let ran = shell.run(base.path(), &layout.lock(LOCK_LINE, "{}"), b"");
                assert!(acquired(&ran.text()), "{at}: {}", ran.stderr);
                let script = layout.receive(&id(), TOKEN, Packing::TarGz, &sha(&upload), "c0ffee");
                let ran = shell.run(base.path(), &script, &upload);
                assert_eq!(ran.code, 0, "{at}: {}", ran.stderr);
                let release = deploy_to.join("releases").join(ID);
                assert_eq!(
                    fs::read(release.join("bin/app")).unwrap(),
                    b"hello\n",
                    "{at}"
                );
                assert!(names(&deploy_to.join(".hoist/tmp")).is_empty(), "{at}");
                let ran = shell.run(base.path(), &layout.switch(&id(), None, "{}"), b"");
                assert_eq!(ran.code, 0, "{at}: {}", ran.stderr);
                let probe = Probe::parse(&shell.run(base.path(), &layout.probe(), b"").text());
                let probe = probe.unwrap();
                assert_eq!(probe.not_writable, None, "{at}");
                assert_eq!(probe.current, Some(id()), "{at}");
                assert_eq!(probe.releases, vec![(id(), Some("c0ffee".into()))], "{at}");
                assert_eq!(probe.lock.as_deref(), Some(LOCK_LINE), "{at}");
                let ran = shell.run(base.path(), &layout.unlock(Some(TOKEN), "{}"), b"");
                assert_eq!(
                    UnlockAnswer::parse(&ran.text()),
                    Ok(UnlockAnswer::Freed),
                    "{at}"
                );
                assert!(!base.path().join("pwned").exists(), "{at}");
                assert!(!deploy_to.join("pwned").exists(), "{at}");
            }
        }
    }

    #[test]
    fn receive_quotes_the_run_token() {
        let upload = tar_gz(&[("f", b"x")]);
        for shell in shells() {
            let base = tempfile::tempdir().unwrap();
            let layout = layout(&base.path().join("app"));
            let token = "t'$(touch pwned)\"";
            let script = layout.receive(&id(), token, Packing::TarGz, &sha(&upload), "c");
            let ran = shell.run(base.path(), &script, &upload);
            assert_eq!(ran.code, 0, "{}: {}", shell.name, ran.stderr);
            assert!(!base.path().join("pwned").exists(), "{}", shell.name);
        }
    }

    #[test]
    fn receive_exit_codes_name_the_failing_step() {
        let upload = tar_gz(&[("f", b"x")]);
        let mut corrupt = upload.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle..].fill(0x55);
        for shell in shells() {
            let at = shell.name;
            let base = tempfile::tempdir().unwrap();
            let deploy_to = base.path().join("app");
            let layout = layout(&deploy_to);
            let receive = |bytes: &[u8], sum: &str| {
                let script = layout.receive(&id(), TOKEN, Packing::TarGz, sum, "c");
                shell.run(base.path(), &script, bytes).code
            };
            let step = |code| ReceiveStep::from_exit(code);

            // A corrupt archive whose checksum matches: the unpack fails, not the upload.
            let code = receive(&corrupt, &sha(&corrupt));
            assert_eq!(step(code), Some(ReceiveStep::Unpack), "{at}");
            assert_eq!(step(code).unwrap().stage(), ReceiveStage::Unpack, "{at}");
            assert!(!deploy_to.join("releases").join(ID).exists(), "{at}");
            assert!(names(&deploy_to.join(".hoist/tmp")).is_empty(), "{at}");

            // Unpacked whole, then removed: the hash decides, not tar.
            let code = receive(&upload, &sha(b"something else"));
            assert_eq!(step(code), Some(ReceiveStep::Checksum), "{at}");
            assert_eq!(step(code).unwrap().stage(), ReceiveStage::Verify, "{at}");
            assert!(!deploy_to.join("releases").join(ID).exists(), "{at}");
            assert!(names(&deploy_to.join(".hoist/tmp")).is_empty(), "{at}");

            // The content checksum cannot be recorded: the last step, not the upload.
            fs::create_dir_all(deploy_to.join(".hoist/sums").join(ID)).unwrap();
            let code = receive(&upload, &sha(&upload));
            assert_eq!(step(code), Some(ReceiveStep::Finish), "{at}");
            fs::remove_dir(deploy_to.join(".hoist/sums").join(ID)).unwrap();

            assert_eq!(receive(&upload, &sha(&upload)), 0, "{at}");
            let code = receive(&upload, &sha(&upload));
            assert_eq!(step(code), Some(ReceiveStep::Exists), "{at}");

            // Nowhere to store the upload.
            let full = base.path().join("full");
            fs::create_dir_all(full.join(".hoist")).unwrap();
            fs::write(full.join(".hoist/tmp"), "").unwrap();
            let script = Layout::new(full.to_str().unwrap()).receive(
                &id(),
                TOKEN,
                Packing::TarGz,
                &sha(&upload),
                "c",
            );
            let code = shell.run(base.path(), &script, &upload).code;
            assert_eq!(step(code), Some(ReceiveStep::Write), "{at}");
            assert_eq!(step(code).unwrap().stage(), ReceiveStage::Upload, "{at}");
        }
        assert_eq!(ReceiveStep::from_exit(1), None);
        assert_eq!(ReceiveStep::from_exit(130), None);
    }

    /// Puts something at `<deploy_to>/.hoist/lock`; returns what it should read as.
    fn plant_lock(deploy_to: &Path, kind: &str) -> LockState {
        let hoist = deploy_to.join(".hoist");
        fs::create_dir_all(&hoist).unwrap();
        let lock = hoist.join("lock");
        let elsewhere = deploy_to.join("elsewhere");
        let link = |to: &Path| std::os::unix::fs::symlink(to, &lock).unwrap();
        let other = |what: String| LockState::Other(what);
        match kind {
            "directory" => {
                fs::create_dir(&lock).unwrap();
                other("a directory".into())
            }
            "symlink to a directory" => {
                fs::create_dir(&elsewhere).unwrap();
                fs::write(elsewhere.join("keep"), "").unwrap();
                link(&elsewhere);
                other(format!("a symlink to {}", elsewhere.display()))
            }
            "dangling symlink" => {
                link(Path::new("nowhere"));
                other("a symlink to nowhere".into())
            }
            "symlink to a lock file" => {
                fs::write(&elsewhere, format!("{LOCK_LINE}\n")).unwrap();
                link(&elsewhere);
                other(format!("a symlink to {}", elsewhere.display()))
            }
            "fifo" => {
                let made = Command::new("mkfifo").arg(&lock).status().unwrap();
                assert!(made.success());
                other("a fifo".into())
            }
            "empty file" => {
                fs::write(&lock, "").unwrap();
                LockState::File(String::new())
            }
            "garbage" => {
                fs::write(&lock, "garbage\nmore").unwrap();
                LockState::File("garbage".into())
            }
            _ => unreachable!(),
        }
    }

    const PLANTED: &[&str] = &[
        "directory",
        "symlink to a directory",
        "dangling symlink",
        "symlink to a lock file",
        "fifo",
        "empty file",
        "garbage",
    ];

    #[test]
    fn anything_at_the_lock_path_blocks_and_only_force_removes_it() {
        for shell in shells() {
            for kind in PLANTED {
                let at = format!("{} {kind}", shell.name);
                let base = tempfile::tempdir().unwrap();
                let deploy_to = base.path().join("app");
                let layout = layout(&deploy_to);
                let lock = deploy_to.join(".hoist/lock");
                let expected = plant_lock(&deploy_to, kind);

                let probe = shell.run(base.path(), &layout.probe(), b"");
                let probe = Probe::parse(&probe.text()).unwrap();
                assert_eq!(probe.lock_state(), Some(expected.clone()), "{at}");
                assert_eq!(probe.lock.as_deref(), Some(expected.text()), "{at}");

                let ran = shell.run(base.path(), &layout.lock(LOCK_LINE, "{}"), b"");
                let held = LockAnswer::Held(expected.clone());
                assert_eq!(
                    LockAnswer::parse(&ran.text()),
                    Ok(held),
                    "{at}: {}",
                    ran.stderr
                );
                assert!(!deploy_to.join(".hoist/journal").exists(), "{at}");
                if lock.is_dir() {
                    let inside: Vec<_> = names(&lock).into_iter().collect();
                    assert!(inside.is_empty() || inside == ["keep"], "{at}: {inside:?}");
                }

                let ran = shell.run(base.path(), &layout.unlock(Some(TOKEN), "{}"), b"");
                let other = UnlockAnswer::Other(expected.clone());
                assert_eq!(UnlockAnswer::parse(&ran.text()), Ok(other), "{at}");
                assert!(fs::symlink_metadata(&lock).is_ok(), "{at}");

                let ran = shell.run(base.path(), &layout.unlock(None, "{}"), b"");
                assert_eq!(
                    UnlockAnswer::parse(&ran.text()),
                    Ok(UnlockAnswer::Freed),
                    "{at}"
                );
                assert!(fs::symlink_metadata(&lock).is_err(), "{at}");
                let elsewhere = deploy_to.join("elsewhere");
                if elsewhere.is_dir() {
                    assert!(
                        elsewhere.join("keep").exists(),
                        "{at}: followed the symlink"
                    );
                } else if kind.contains("lock file") {
                    assert!(elsewhere.exists(), "{at}: followed the symlink");
                }

                let ran = shell.run(base.path(), &layout.lock(LOCK_LINE, "{}"), b"");
                assert!(acquired(&ran.text()), "{at}");
            }
        }
    }

    #[test]
    fn unlock_matches_text_that_looks_like_an_option() {
        for shell in shells() {
            let base = tempfile::tempdir().unwrap();
            let layout = layout(&base.path().join("app"));
            shell.run(base.path(), &layout.lock(LOCK_LINE, "{}"), b"");
            let ran = shell.run(base.path(), &layout.unlock(Some("--version"), "{}"), b"");
            let theirs = UnlockAnswer::Other(LockState::File(LOCK_LINE.into()));
            assert_eq!(
                UnlockAnswer::parse(&ran.text()),
                Ok(theirs),
                "{}",
                shell.name
            );
        }
    }

    #[test]
    fn probe_keeps_backslashes_in_the_lock_line() {
        let line = r#"{"by":"me","message":"C:\\new\\temp \\c"}"#;
        for shell in shells() {
            let base = tempfile::tempdir().unwrap();
            let layout = layout(&base.path().join("app"));
            let ran = shell.run(base.path(), &layout.lock(line, "{}"), b"");
            assert!(acquired(&ran.text()), "{}", shell.name);
            let probe = Probe::parse(&shell.run(base.path(), &layout.probe(), b"").text());
            assert_eq!(probe.unwrap().lock.as_deref(), Some(line), "{}", shell.name);
            let ran = shell.run(base.path(), &layout.lock(line, "{}"), b"");
            let held = LockAnswer::Held(LockState::File(line.into()));
            assert_eq!(LockAnswer::parse(&ran.text()), Ok(held), "{}", shell.name);
        }
    }

    #[test]
    fn probe_reports_a_current_release_that_is_gone() {
        let upload = tar_gz(&[("f", b"x")]);
        for shell in shells() {
            let base = tempfile::tempdir().unwrap();
            let deploy_to = base.path().join("app");
            let layout = layout(&deploy_to);
            let script = layout.receive(&id(), TOKEN, Packing::TarGz, &sha(&upload), "c");
            assert_eq!(shell.run(base.path(), &script, &upload).code, 0);
            assert_eq!(
                shell
                    .run(base.path(), &layout.switch(&id(), None, "{}"), b"")
                    .code,
                0
            );
            fs::remove_dir_all(deploy_to.join("releases").join(ID)).unwrap();
            let probe = Probe::parse(&shell.run(base.path(), &layout.probe(), b"").text());
            let probe = probe.unwrap();
            assert_eq!(probe.current, None, "{}", shell.name);
            let target = format!("releases/{ID}");
            assert_eq!(probe.current_dangling, Some(target), "{}", shell.name);
            assert!(probe.releases.is_empty(), "{}", shell.name);
        }
    }

    #[test]
    fn a_switch_happens_only_while_the_lock_holds_the_runs_token() {
        let upload = tar_gz(&[("f", b"x")]);
        for shell in shells() {
            let base = tempfile::tempdir().unwrap();
            let deploy_to = base.path().join("app");
            let layout = layout(&deploy_to);
            let at = shell.name;
            let ran = shell.run(base.path(), &layout.lock(LOCK_LINE, "{}"), b"");
            assert!(acquired(&ran.text()), "{at}: {}", ran.stderr);
            let script = layout.receive(&id(), TOKEN, Packing::TarGz, &sha(&upload), "c");
            assert_eq!(shell.run(base.path(), &script, &upload).code, 0, "{at}");
            let switch = layout.switch(&id(), Some(TOKEN), "{}");
            let ran = shell.run(base.path(), &switch, b"");
            assert_eq!(ran.code, 0, "{at}: {}", ran.stderr);
            assert_eq!(unrecorded(&ran.text()), None, "{at}");
            fs::remove_file(deploy_to.join("current")).unwrap();

            // Forced open: no lock at all.
            fs::remove_file(deploy_to.join(".hoist/lock")).unwrap();
            let ran = shell.run(base.path(), &switch, b"");
            assert_eq!(ran.code as u32, LOCK_LOST, "{at}: {}", ran.stderr);
            assert_eq!(LockState::told(&ran.stderr), None, "{at}");
            assert!(!deploy_to.join("current").exists(), "{at}");
            // Taken by another run since: its line is told.
            let theirs = LOCK_LINE.replace(TOKEN, "deadbeef0000");
            fs::write(deploy_to.join(".hoist/lock"), format!("{theirs}\n")).unwrap();
            let ran = shell.run(base.path(), &switch, b"");
            assert_eq!(ran.code as u32, LOCK_LOST, "{at}: {}", ran.stderr);
            assert_eq!(
                LockState::told(&ran.stderr),
                Some(LockState::File(theirs)),
                "{at}"
            );
            let ran = shell.run(base.path(), &layout.unswitch(Some(TOKEN), "{}"), b"");
            assert_eq!(ran.code as u32, LOCK_LOST, "{at}: {}", ran.stderr);
            assert!(!deploy_to.join("current").exists(), "{at}");
        }
    }

    #[test]
    fn a_journal_line_that_cannot_be_written_is_said_and_the_switch_stands() {
        let upload = tar_gz(&[("f", b"x")]);
        for shell in shells() {
            let base = tempfile::tempdir().unwrap();
            let deploy_to = base.path().join("app");
            let layout = layout(&deploy_to);
            let at = shell.name;
            let ran = shell.run(base.path(), &layout.lock(LOCK_LINE, "{}"), b"");
            assert!(acquired(&ran.text()), "{at}: {}", ran.stderr);
            let script = layout.receive(&id(), TOKEN, Packing::TarGz, &sha(&upload), "c");
            assert_eq!(shell.run(base.path(), &script, &upload).code, 0, "{at}");
            // Something no line can be appended to, whoever runs this.
            let journal = deploy_to.join(".hoist/journal");
            fs::remove_file(&journal).unwrap();
            fs::create_dir(&journal).unwrap();
            let ran = shell.run(base.path(), &layout.switch(&id(), Some(TOKEN), "{}"), b"");
            assert_eq!(ran.code, 0, "{at}: {}", ran.stderr);
            assert!(unrecorded(&ran.text()).is_some(), "{at}: {}", ran.text());
            assert!(deploy_to.join("current").exists(), "{at}");
            let ran = shell.run(base.path(), &layout.unlock(Some(TOKEN), "{}"), b"");
            assert_eq!(
                UnlockAnswer::parse(&ran.text()),
                Ok(UnlockAnswer::Freed),
                "{at}"
            );
            assert!(unrecorded(&ran.text()).is_some(), "{at}: {}", ran.text());
        }
    }

    #[test]
    fn taking_the_lock_clears_what_other_runs_left_in_tmp() {
        for shell in shells() {
            let base = tempfile::tempdir().unwrap();
            let deploy_to = base.path().join("app");
            let layout = layout(&deploy_to);
            let tmp = deploy_to.join(".hoist/tmp");
            let plant = || {
                fs::create_dir_all(tmp.join(format!("{ID}.deadbeef0000.d/bin"))).unwrap();
                fs::write(tmp.join(format!("{ID}.deadbeef0000.part")), "cut").unwrap();
                fs::create_dir_all(tmp.join("switch.123")).unwrap();
                std::os::unix::fs::symlink("releases/x", tmp.join("switch.123/current")).unwrap();
                fs::write(tmp.join("lock.99"), "{}").unwrap();
                fs::write(tmp.join(".hidden"), "").unwrap();
                std::os::unix::fs::symlink(&deploy_to, tmp.join("link")).unwrap();
                fs::create_dir_all(tmp.join(format!("{ID}.{TOKEN}.d"))).unwrap();
                fs::write(tmp.join(format!("{ID}.{TOKEN}.part")), "mine").unwrap();
            };
            plant();
            let ran = shell.run(base.path(), &layout.lock(LOCK_LINE, "{}"), b"");
            assert!(acquired(&ran.text()), "{}: {}", shell.name, ran.stderr);
            let mine: BTreeSet<String> = [format!("{ID}.{TOKEN}.d"), format!("{ID}.{TOKEN}.part")]
                .into_iter()
                .collect();
            assert_eq!(names(&tmp), mine, "{}", shell.name);
            assert!(deploy_to.join("releases").is_dir(), "{}", shell.name);

            // Held by someone else: nothing of theirs is touched.
            let theirs = LOCK_LINE.replace(TOKEN, "deadbeef0000");
            plant();
            let before = names(&tmp);
            let ran = shell.run(base.path(), &layout.lock(&theirs, "{}"), b"");
            assert!(ran.text().starts_with("held\n"), "{}", shell.name);
            assert_eq!(names(&tmp), before, "{}", shell.name);
        }
    }

    #[test]
    fn the_lock_reads_the_host_as_the_probe_does_and_sees_another_runs_change() {
        let upload = tar_gz(&[("f", b"x")]);
        let theirs = LOCK_LINE.replace(TOKEN, "deadbeef0000");
        for shell in shells() {
            let at = shell.name;
            let base = tempfile::tempdir().unwrap();
            let deploy_to = base.path().join("app");
            let layout = layout(&deploy_to);
            let run = |script: &str| shell.run(base.path(), script, b"").text();
            let probe = || Probe::parse(&run(&layout.probe())).unwrap().mark;
            // Takes the lock (its own journal line written after the mark
            // is read), then frees it: the mark the lock read, and the
            // probe's afterwards.
            let lock_and_free = |line: &str| {
                let Ok(LockAnswer::Acquired(mark)) =
                    LockAnswer::parse(&run(&layout.lock(line, line)))
                else {
                    panic!("{at}: not acquired");
                };
                run(&layout.unlock(None, "{\"unlock\":1}"));
                mark
            };
            // No journal yet, nothing deployed.
            let read = probe();
            assert_eq!(read.journal_size, Some(0), "{at}");
            let mark = lock_and_free(LOCK_LINE);
            assert!(read.unchanged(&mark), "{at}: {read:?} / {mark:?}");
            // Another run deployed since the host was read: its lock,
            // switch and unlock lines, and `current`.
            let read = probe();
            assert!(read.journal_size.is_some_and(|n| n > 0), "{at}");
            let receive = layout.receive(&id(), TOKEN, Packing::TarGz, &sha(&upload), "c");
            assert_eq!(shell.run(base.path(), &receive, &upload).code, 0, "{at}");
            run(&layout.switch(&id(), None, "{\"switch\":1}"));
            let mark = lock_and_free(&theirs);
            assert!(!read.unchanged(&mark), "{at}: {read:?} / {mark:?}");
            assert_eq!(mark.current, Some(format!("current releases/{ID}")), "{at}");
            // Read again: unchanged until another line is appended.
            let read = probe();
            assert_eq!(read.current, mark.current, "{at}");
            let mark = lock_and_free(LOCK_LINE);
            assert!(read.unchanged(&mark), "{at}: {read:?} / {mark:?}");
            let read = probe();
            run(&layout.record("{\"traffic\":1}"));
            let mark = lock_and_free(LOCK_LINE);
            assert!(!read.unchanged(&mark), "{at}: journal appended");
            // `current` moved by hand, nothing journaled: still seen.
            let read = probe();
            fs::remove_file(deploy_to.join("current")).unwrap();
            let mark = lock_and_free(LOCK_LINE);
            assert!(!read.unchanged(&mark), "{at}: current gone");
            assert_eq!(mark.current, None, "{at}");
        }
    }

    #[test]
    fn lock_token_is_read_from_the_lock_line() {
        assert_eq!(lock_token(LOCK_LINE).as_deref(), Some(TOKEN));
        assert_eq!(lock_token(r#"{"by":"x"}"#), None);
        assert_eq!(lock_token(r#"{"token":"a b*"}"#), None);
        assert_eq!(lock_token("not json"), None);
    }

    #[test]
    fn probe_parses_a_dangling_current_and_a_lock_that_is_not_a_file() {
        let out = "hoist-probe 1\ncurrent-missing releases/20260101T000000Z-aaaaaaaa\nlock-other a directory\njournal\n";
        let p = Probe::parse(out).unwrap();
        assert_eq!(p.current, None);
        assert_eq!(
            p.current_dangling.as_deref(),
            Some("releases/20260101T000000Z-aaaaaaaa")
        );
        assert_eq!(p.lock.as_deref(), Some("a directory"));
        assert_eq!(p.lock_state(), Some(LockState::Other("a directory".into())));
    }

    #[test]
    fn lock_answers_parse() {
        // The older answer, without the host's mark: a host that changed.
        let old = LockAnswer::Acquired(Mark::default());
        assert_eq!(LockAnswer::parse("acquired\n"), Ok(old));
        let new = format!("acquired\ncurrent releases/{ID}\njournal-size 42\n");
        let Ok(LockAnswer::Acquired(mark)) = LockAnswer::parse(&new) else {
            panic!("not acquired");
        };
        assert_eq!(mark.current, Some(format!("current releases/{ID}")));
        assert_eq!(mark.journal_size, Some(42));
        let probe = format!(
            "hoist-probe 1\ncurrent releases/{ID}\njournal-size 42\njournal\n{{\"a\":1}}\n"
        );
        let probe = Probe::parse(&probe).unwrap();
        assert!(probe.mark.unchanged(&mark));
        assert!(!probe.mark.unchanged(&Mark::default()), "the older answer");
        let unmeasured = "acquired\ncurrent releases/x\njournal-size -\n";
        let Ok(LockAnswer::Acquired(unmeasured)) = LockAnswer::parse(unmeasured) else {
            panic!("not acquired");
        };
        assert_eq!(unmeasured.journal_size, None);
        assert!(
            !unmeasured.unchanged(&unmeasured.clone()),
            "never unchanged"
        );
        assert_eq!(
            LockAnswer::parse("held\n{\"by\":\"x\"}\n"),
            Ok(LockAnswer::Held(LockState::File("{\"by\":\"x\"}".into())))
        );
        assert_eq!(
            LockAnswer::parse("held\na fifo\nnot-a-file\n"),
            Ok(LockAnswer::Held(LockState::Other("a fifo".into())))
        );
        assert!(LockAnswer::parse("").is_err());
        assert_eq!(UnlockAnswer::parse("absent\n"), Ok(UnlockAnswer::Absent));
    }

    /// A relay tree's receive of the whole artifact ([`WholeHop`]): the
    /// manifest at the stream's head is kept with the release only when
    /// its sha256 is the one hoist gave, and the release made only when
    /// the archive after it is whole; a relay that sends another manifest
    /// (same length) or a corrupt archive is refused, nothing of it kept.
    /// Either way the children get every byte, and `.hoist/tmp` is left
    /// empty. With and without children to pass it on to.
    #[test]
    fn a_relayed_manifest_is_kept_only_when_its_hash_matches() {
        let upload = tar_gz(&[("bin/app", b"hello\n")]);
        let listing = b"hoist-manifest 1\nbin\td\t755\n".to_vec();
        let gz = |text: &[u8]| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(text).unwrap();
            e.finish().unwrap()
        };
        let manifest = gz(&listing);
        let forged = gz(b"hoist-manifest 1\nbin\td\t777\n");
        assert_eq!(forged.len(), manifest.len());
        let mut corrupt = upload.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle..].fill(0x55);
        let cases: [(&str, &[u8], &[u8], i32); 3] = [
            ("whole", &manifest, &upload, 0),
            (
                "forged manifest",
                &forged,
                &upload,
                ReceiveStep::Checksum.code(),
            ),
            (
                "corrupt archive",
                &manifest,
                &corrupt,
                ReceiveStep::Checksum.code(),
            ),
        ];
        for shell in shells() {
            for (case, head, archive, want) in cases {
                for children in [false, true] {
                    let at = format!("{} {case} (children: {children})", shell.name);
                    let base = tempfile::tempdir().unwrap();
                    let deploy_to = base.path().join("app");
                    let copy = base.path().join("copy");
                    let setup = format!(
                        "mkfifo \"$P.c0\" || exit 3\n{{ cat > {}; }} < \"$P.c0\" &\nK=\"$K $!\"\n",
                        q(copy.to_str().unwrap())
                    );
                    let hop = WholeHop {
                        manifest: Some((manifest.len() as u64, &sha(&manifest))),
                        fan: children.then_some((setup.as_str(), " \"$P.c0\"")),
                    };
                    let script = layout(&deploy_to).receive_fanning(
                        &id(),
                        TOKEN,
                        Packing::TarGz,
                        &sha(&upload),
                        "c0ffee",
                        Some(hop),
                    );
                    let stream = [head, archive].concat();
                    let ran = shell.run(base.path(), &script, &stream);
                    assert_eq!(ran.code, want, "{at}: {}", ran.stderr);
                    let release = deploy_to.join("releases").join(ID);
                    let recorded = deploy_to.join(".hoist/manifests").join(ID);
                    if want == 0 {
                        assert_eq!(
                            fs::read(release.join("bin/app")).unwrap(),
                            b"hello\n",
                            "{at}"
                        );
                        assert_eq!(fs::read(&recorded).unwrap(), listing, "{at}");
                    } else {
                        assert!(!release.exists(), "{at}");
                        assert!(!recorded.exists(), "{at}");
                        assert!(
                            ran.stderr.contains("checksum mismatch"),
                            "{at}: {}",
                            ran.stderr
                        );
                    }
                    if children {
                        assert_eq!(fs::read(&copy).unwrap(), stream, "{at}: passed on whole");
                    }
                    assert!(names(&deploy_to.join(".hoist/tmp")).is_empty(), "{at}");
                }
            }
        }
    }
}
