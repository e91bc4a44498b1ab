//! The probe: everything hoist needs to know about a host, read in one
//! round trip, and what it found.

use super::lock::{LOCK_FNS, LockState};
use super::mark::{CURRENT_LINES, JOURNAL_SIZE, Mark};
use super::{Layout, TOOLS};
use crate::release::ReleaseId;

impl Layout {
    /// Reads everything hoist needs to know about a host in one round trip,
    /// and writes nothing. See [`Probe::parse`] for the output.
    pub fn probe(&self) -> String {
        let tools = TOOLS.join(" ");
        format!(
            r#"{head}
{lock_fns}
echo "hoist-probe 1"
p=$D
while [ ! -e "$p" ]; do case $p in */*) p=${{p%/*}}; p=${{p:-/}} ;; *) p=. ;; esac; done
if [ -d "$p" ] && [ -w "$p" ]; then echo "writable 1"; else printf 'writable 0 %s\n' "$p"; fi
printf 'free_kb %s\n' "$(df -Pk -- "$p" 2>/dev/null | awk 'NR==2 {{print $4}}')"
for t in {tools}; do command -v "$t" >/dev/null 2>&1 || echo "missing $t"; done
for t in curl wget; do if command -v "$t" >/dev/null 2>&1; then echo "fetch $t"; break; fi; done
{current}
if [ -d "$D/releases" ]; then
  for r in "$D"/releases/*; do
    [ -d "$r" ] || continue
    id=${{r##*/}}
    case $id in *[!0-9A-Za-z-]*) continue ;; esac
    printf 'release %s %s\n' "$id" "$(head -c 128 "$H/sums/$id" 2>/dev/null | head -n 1)"
  done
fi
if lock_is_file && l=$(lock_line); then printf 'lock %s\n' "$l"
elif lock_exists; then printf 'lock-other %s\n' "$(lock_other)"; fi
{journal_size}
echo "journal"
if [ -f "$H/journal" ]; then tail -n 2000 "$H/journal" | cut -b 1-{line_cut}; fi
"#,
            head = self.head(),
            lock_fns = LOCK_FNS,
            current = CURRENT_LINES,
            journal_size = JOURNAL_SIZE,
            line_cut = JOURNAL_LINE_MAX + 1,
        )
    }
}

/// The longest journal line a probe takes: hoist writes lines of a few
/// hundred bytes, so a longer one was not written by hoist.
pub(super) const JOURNAL_LINE_MAX: usize = 64 * 1024;

/// The most of a probe's answer kept: 2000 journal lines of a normal size
/// take well under a megabyte.
pub const PROBE_MAX: usize = 16 * 1024 * 1024;

/// What [`Layout::probe`] found on a host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// `None` when writable; otherwise the path that is not.
    pub not_writable: Option<String>,
    pub free_kb: Option<u64>,
    pub missing_tools: Vec<String>,
    /// The tool that downloads an `artifact.url` (curl, else wget), if any.
    pub fetch: Option<String>,
    /// The release `current` points at; `None` when there is no `current`,
    /// or when it points at nothing (see `current_dangling`).
    pub current: Option<ReleaseId>,
    /// Where `current` points when that is not a directory (the release was
    /// deleted by hand): the host has no current release, and this says why.
    pub current_dangling: Option<String>,
    /// Releases present (whole) on the host, with their content sha256 when recorded.
    pub releases: Vec<(ReleaseId, Option<String>)>,
    /// Anything at the lock path: the lock file's first line or, when
    /// `lock_not_file`, a description of what is there instead. Either way
    /// the host is locked; [`Probe::lock_state`] tells them apart.
    pub lock: Option<String>,
    /// The lock path holds something that is not a lock file (a directory,
    /// a symlink, a fifo…): only `hoist unlock --force` removes it.
    pub lock_not_file: bool,
    /// Where `current` points and the journal's end, to compare with what
    /// taking the lock reads (see [`Mark`]).
    pub mark: Mark,
    pub journal: Vec<String>,
}

impl Probe {
    /// Output, a line each: `hoist-probe 1`, `writable 1` or `writable 0
    /// <path>`, `free_kb <n>`, `missing <tool>`, `current <target>` or
    /// `current-missing <target>`, `release <id> <sha>`, `lock <line>` or
    /// `lock-other <description>`, `journal-size <bytes>`, then
    /// `journal` and the journal's lines.
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
            probe.mark.read(line);
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "writable" => {
                    if let Some(path) = rest.strip_prefix("0 ") {
                        probe.not_writable = Some(path.to_string());
                    }
                }
                "free_kb" => probe.free_kb = rest.trim().parse().ok(),
                "missing" => probe.missing_tools.push(rest.to_string()),
                "fetch" => probe.fetch = Some(rest.to_string()),
                "current" => {
                    let target = rest.trim_end_matches('/');
                    probe.current = ReleaseId::parse(target.rsplit('/').next().unwrap_or(""));
                }
                "current-missing" => probe.current_dangling = Some(rest.to_string()),
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
                "lock-other" => {
                    probe.lock = Some(rest.to_string());
                    probe.lock_not_file = true;
                }
                "journal" => break,
                _ => {}
            }
        }
        probe.journal = lines.map(str::to_string).collect();
        if let Some(n) = probe
            .journal
            .iter()
            .position(|l| l.len() > JOURNAL_LINE_MAX)
        {
            let from_end = probe.journal.len() - n;
            return Err(format!(
                "its journal (.hoist/journal under deploy_to) has a line over {} KiB, line {from_end} from its end, which hoist never writes: not read; look at it and remove that line",
                JOURNAL_LINE_MAX / 1024
            ));
        }
        probe.releases.sort();
        Ok(probe)
    }

    pub fn has_release(&self, id: &ReleaseId) -> bool {
        self.releases.iter().any(|(r, _)| r == id)
    }

    /// The content sha256 recorded with release `id`, if it has one.
    pub fn sum_of(&self, id: &ReleaseId) -> Option<&str> {
        self.releases
            .iter()
            .find(|(r, _)| r == id)
            .and_then(|(_, sum)| sum.as_deref())
    }

    /// What is at the lock path, typed.
    pub fn lock_state(&self) -> Option<LockState> {
        self.lock.clone().map(|text| {
            if self.lock_not_file {
                LockState::Other(text)
            } else {
                LockState::File(text)
            }
        })
    }
}
