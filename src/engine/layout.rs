//! Every shell command hoist sends to a host is built here, with every value
//! quoted. Hosts need only POSIX sh, tar, gzip and coreutils (busybox will do).

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
    "grep",
    "dirname",
];

/// How an upload is compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    TarGz,
}

/// Commands for one host's `deploy_to` layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub deploy_to: String,
}

impl Layout {
    pub fn new(deploy_to: impl Into<String>) -> Layout {
        Layout {
            deploy_to: deploy_to.into(),
        }
    }

    pub fn release_path(&self, id: &ReleaseId) -> String {
        format!("{}/releases/{}", self.deploy_to.trim_end_matches('/'), id)
    }

    fn head(&self) -> String {
        format!(
            "set -u; umask 022; D={}; H=\"$D/.hoist\"",
            q(&self.deploy_to)
        )
    }

    /// Reads everything hoist needs to know about a host in one round trip,
    /// and writes nothing. See [`Probe::parse`] for the output.
    pub fn probe(&self) -> String {
        let tools = TOOLS.join(" ");
        format!(
            r#"{head}
echo "hoist-probe 1"
p="$D"; while [ ! -e "$p" ]; do p=$(dirname "$p"); done
if [ -d "$p" ] && [ -w "$p" ]; then echo "writable 1"; else echo "writable 0 $p"; fi
echo "free_kb $(df -Pk "$p" 2>/dev/null | awk 'NR==2 {{print $4}}')"
for t in {tools}; do command -v "$t" >/dev/null 2>&1 || echo "missing $t"; done
if [ -L "$D/current" ]; then echo "current $(readlink "$D/current")"; fi
if [ -d "$D/releases" ]; then
  for r in "$D"/releases/*; do
    [ -d "$r" ] || continue
    id=${{r##*/}}
    echo "release $id $(cat "$H/sums/$id" 2>/dev/null)"
  done
fi
if [ -f "$H/lock" ]; then echo "lock $(head -n 1 "$H/lock")"; fi
echo "journal"
if [ -f "$H/journal" ]; then tail -n 2000 "$H/journal"; fi
"#,
            head = self.head()
        )
    }

    /// Creates the layout and takes the lock atomically (a complete file is
    /// hard-linked into place, which fails if a lock exists). Prints
    /// `acquired`, or `held` followed by the current lock line.
    pub fn lock(&self, lock_line: &str, journal_line: &str) -> String {
        format!(
            r#"{head}
mkdir -p "$D/releases" "$H/tmp" "$H/sums" || exit 1
t="$H/tmp/lock.$$"
printf '%s\n' {lock} > "$t" || exit 1
if ln "$t" "$H/lock" 2>/dev/null; then
  rm -f "$t"; printf '%s\n' {journal} >> "$H/journal"; echo acquired
else
  rm -f "$t"; echo held; head -n 1 "$H/lock"
fi
"#,
            head = self.head(),
            lock = q(lock_line),
            journal = q(journal_line)
        )
    }

    /// Frees the lock if its line contains `must_contain` (whatever it holds,
    /// when `None`). Prints `freed`, `absent`, or `other` and the lock line.
    pub fn unlock(&self, must_contain: Option<&str>, journal_line: &str) -> String {
        let mine = match must_contain {
            Some(text) => format!("grep -qF {} \"$H/lock\"", q(text)),
            None => "true".to_string(),
        };
        format!(
            r#"{head}
if [ ! -f "$H/lock" ]; then echo absent; exit 0; fi
if {mine}; then
  rm -f "$H/lock" && printf '%s\n' {journal} >> "$H/journal" && echo freed
else
  echo other; head -n 1 "$H/lock"
fi
"#,
            head = self.head(),
            journal = q(journal_line)
        )
    }

    fn part(&self, id: &ReleaseId, token: &str) -> String {
        format!("\"$H/tmp/{}.{}\"", id, token)
    }

    /// Receives the upload on stdin into a temporary file, verifies its
    /// checksum, unpacks it under a temporary name and renames it to
    /// `releases/<id>` only when whole: one round trip, and nothing half
    /// written is ever left where a rollback could find it.
    pub fn receive(
        &self,
        id: &ReleaseId,
        token: &str,
        packing: Packing,
        transfer_sha: &str,
        content_sha: &str,
    ) -> String {
        let flags = match packing {
            Packing::TarGz => "-xzf",
        };
        format!(
            r#"{head}
P={part}
R="$D/releases/{id}"
trap 'rm -rf "$P.part" "$P.d"' EXIT
trap 'exit 130' HUP INT TERM
mkdir -p "$H/tmp" && cat > "$P.part" || exit 2
sum=$(sha256sum "$P.part" | awk '{{print $1}}')
if [ "$sum" != {transfer_sha} ]; then echo "checksum mismatch: expected {transfer_sha}, got $sum" >&2; exit 3; fi
if [ -e "$R" ]; then echo "$R already exists" >&2; exit 4; fi
mkdir "$P.d" && tar {flags} "$P.part" -C "$P.d" || exit 5
printf '%s\n' {content_sha} > "$H/sums/{id}" && mv "$P.d" "$R"
"#,
            head = self.head(),
            part = self.part(id, token),
            transfer_sha = q(transfer_sha),
            content_sha = q(content_sha),
        )
    }

    /// Makes `releases/<id>` from a release the host already holds, with no upload.
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
if [ -e "$R" ]; then echo "$R already exists" >&2; exit 4; fi
cp -a "$D/releases/{from}" "$P.d" && printf '%s\n' {content_sha} > "$H/sums/{id}" && mv "$P.d" "$R"
"#,
            head = self.head(),
            part = self.part(id, token),
            content_sha = q(content_sha),
        )
    }

    /// Removes what an abandoned upload left behind.
    pub fn discard(&self, id: &ReleaseId, token: &str) -> String {
        format!(
            "{head}\nrm -rf {part}.part {part}.d",
            head = self.head(),
            part = self.part(id, token)
        )
    }

    /// Runs one hook with `sh -c` in `dir`, with the given environment.
    pub fn hook(&self, dir: &str, env: &[(String, String)], command: &str) -> String {
        let mut script = format!("cd {} || exit 1\n", q(dir));
        for (name, value) in env {
            script.push_str(&format!("export {}={}\n", name, q(value)));
        }
        script.push_str(&format!("exec sh -c {}\n", q(command)));
        script
    }

    /// Points `current` at `releases/<id>` atomically: a new symlink made
    /// beside, then renamed over the old one (rename(2) never follows it).
    /// The journal line is written in the same round trip.
    pub fn switch(&self, id: &ReleaseId, journal_line: &str) -> String {
        format!(
            r#"{head}
[ -d "$D/releases/{id}" ] || {{ echo "release {id} is not on this host" >&2; exit 4; }}
S="$H/tmp/switch.$$"
rm -rf "$S" && mkdir -p "$S" && ln -s "releases/{id}" "$S/current" && mv "$S/current" "$D/" || {{ rm -rf "$S"; exit 1; }}
rmdir "$S"
printf '%s\n' {journal} >> "$H/journal"
echo "switched $(readlink "$D/current")"
"#,
            head = self.head(),
            journal = q(journal_line)
        )
    }

    /// Removes `current` (going back from a first deploy, when there is no
    /// earlier release to point at), with its journal line.
    pub fn unswitch(&self, journal_line: &str) -> String {
        format!(
            "{head}\nrm -f \"$D/current\" && printf '%s\\n' {journal} >> \"$H/journal\"",
            head = self.head(),
            journal = q(journal_line)
        )
    }

    /// Deletes the given releases (the caller chose them; never current nor
    /// the rollback target) and stale temporary files.
    pub fn prune(&self, ids: &[ReleaseId]) -> String {
        let mut script = self.head();
        script.push('\n');
        for id in ids {
            script.push_str(&format!("rm -rf \"$D/releases/{id}\" \"$H/sums/{id}\"\n"));
        }
        script
    }
}

/// What [`Layout::probe`] found on a host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// `None` when writable; otherwise the path that is not.
    pub not_writable: Option<String>,
    pub free_kb: Option<u64>,
    pub missing_tools: Vec<String>,
    pub current: Option<ReleaseId>,
    /// Releases present (whole) on the host, with their content sha256 when recorded.
    pub releases: Vec<(ReleaseId, Option<String>)>,
    pub lock: Option<String>,
    pub journal: Vec<String>,
}

impl Probe {
    pub fn parse(output: &str) -> Result<Probe, String> {
        let mut lines = output.lines();
        if lines.next() != Some("hoist-probe 1") {
            return Err(format!(
                "unexpected answer from the host's shell: {}",
                output.lines().next().unwrap_or("(nothing)")
            ));
        }
        let mut probe = Probe::default();
        for line in lines.by_ref() {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "writable" => {
                    if let Some(path) = rest.strip_prefix("0 ") {
                        probe.not_writable = Some(path.to_string());
                    }
                }
                "free_kb" => probe.free_kb = rest.trim().parse().ok(),
                "missing" => probe.missing_tools.push(rest.to_string()),
                "current" => {
                    let target = rest.trim_end_matches('/');
                    probe.current = ReleaseId::parse(target.rsplit('/').next().unwrap_or(""));
                }
                "release" => {
                    let (id, sum) = rest.split_once(' ').unwrap_or((rest, ""));
                    if let Some(id) = ReleaseId::parse(id) {
                        let sum = sum.trim();
                        probe
                            .releases
                            .push((id, (!sum.is_empty()).then(|| sum.to_string())));
                    }
                }
                "lock" => probe.lock = Some(rest.to_string()),
                "journal" => break,
                _ => {}
            }
        }
        probe.journal = lines.map(str::to_string).collect();
        probe.releases.sort();
        Ok(probe)
    }

    pub fn has_release(&self, id: &ReleaseId) -> bool {
        self.releases.iter().any(|(r, _)| r == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
