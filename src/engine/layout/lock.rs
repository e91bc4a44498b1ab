//! Taking and freeing a host's lock, and reading what a host answers
//! about it: the lock file's line, someone else's lock, a lock that is
//! not a file.

use serde::{Deserialize, Serialize};

use super::mark::{Mark, mark_lines};
use super::{Layout, append_journal, q};

impl Layout {
    /// Creates the layout and takes the lock atomically (a complete file is
    /// hard-linked into place, which fails if a lock exists). Prints
    /// `acquired` and the host's [`Mark`] as the probe prints it, read
    /// before the lock's journal line is written; or what
    /// [`LockAnswer::parse`] reads as held: anything at the lock path,
    /// whatever it is, blocks, and nothing is created in it.
    ///
    /// Once acquired, it clears `.hoist/tmp` of everything that is not this
    /// run's: uploads, copies and switches only happen under the lock, so
    /// no live run can own them. This run is the `"token"` of `lock_line`
    /// (a JSON object), the token its uploads carry in their names
    /// ([`Layout::receive`]); without a token, nothing is cleared.
    pub fn lock(&self, lock_line: &str, journal_line: &str) -> String {
        let sweep = match lock_token(lock_line) {
            Some(token) => format!(
                r#"for f in "$H"/tmp/* "$H"/tmp/.[!.]* "$H"/tmp/..?*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    case ${{f##*/}} in *.{token}.*) continue ;; esac
    rm -rf "$f" 2>/dev/null
  done
{relay}"#,
                token = q(&token),
                relay = super::relay_files::sweep(&token),
            ),
            None => ":".to_string(),
        };
        format!(
            r#"{head}
{lock_fns}
mkdir -p "$D/releases" "$H/tmp" "$H/sums" || exit 1
if lock_exists; then echo held; tell_lock; exit 0; fi
t="$H/tmp/lock.$$"
rm -f "$t" && printf '%s\n' {lock} > "$t" || exit 1
if ln "$t" "$L" 2>/dev/null; then
  if [ ! -d "$L" ]; then
    rm -f "$t"
  {sweep}
    echo acquired
{mark}
    {append}; exit 0
  fi
  rm -f "$L/${{t##*/}}"
fi
rm -f "$t"
if lock_exists; then echo held; tell_lock; else echo "could not take the lock $L" >&2; exit 1; fi
"#,
            head = self.head(),
            lock_fns = LOCK_FNS,
            lock = q(lock_line),
            mark = mark_lines(),
            append = append_journal(journal_line),
        )
    }

    /// Frees the lock if it is a lock file whose line contains `must_contain`;
    /// with `None` (force), removes whatever is at the lock path (never what
    /// a symlink there points to). Prints `freed`, `absent`, or what
    /// [`UnlockAnswer::parse`] reads as someone else's.
    pub fn unlock(&self, must_contain: Option<&str>, journal_line: &str) -> String {
        let mine = match must_contain {
            Some(text) => format!("lock_is_file && grep -qF -e {} \"$L\"", q(text)),
            None => "true".to_string(),
        };
        format!(
            r#"{head}
{lock_fns}
if ! lock_exists; then echo absent; exit 0; fi
if {mine}; then
  rm -rf "$L" || exit 1
  echo freed; {append}
else
  echo other; tell_lock
fi
"#,
            head = self.head(),
            lock_fns = LOCK_FNS,
            append = append_journal(journal_line),
        )
    }
}

/// Shell functions shared by the scripts that look at the lock, so probe,
/// lock and unlock tell what is there the same way. Anything at the lock
/// path is a lock; only a regular file (not a symlink) is a lock file, and
/// only a lock file is read (a fifo would block `head`).
/// A lock file's first line is read only up to 4096 bytes (hoist's are
/// a few hundred): a longer one makes it a lock that is not hoist's.
pub(crate) const LOCK_FNS: &str = r#"L="$H/lock"
lock_exists() { [ -e "$L" ] || [ -L "$L" ]; }
lock_is_file() { [ -f "$L" ] && [ ! -L "$L" ]; }
lock_line() {
  l=$(head -c 4097 "$L" | head -n 1)
  [ $(($(printf '%s' "$l" | wc -c))) -le 4096 ] && printf '%s\n' "$l"
}
lock_other() {
  if [ -L "$L" ]; then printf 'a symlink to %s\n' "$(readlink "$L" | head -n 1)"
  elif [ -d "$L" ]; then echo "a directory"
  elif [ -p "$L" ]; then echo "a fifo"
  elif [ -S "$L" ]; then echo "a socket"
  elif [ -b "$L" ] || [ -c "$L" ]; then echo "a device"
  elif [ -f "$L" ]; then echo "a file whose first line is over 4096 bytes"
  else echo "something that is not a file"; fi
}
tell_lock() {
  if lock_is_file && l=$(lock_line); then printf '%s\n' "$l"; else lock_other; echo "not-a-file"; fi
}"#;

/// The exit of [`Layout::switch`] when the lock no longer holds the run's token.
pub const LOCK_LOST: u32 = 75;

/// Stops a script unless the lock file still holds `token` (see
/// [`Layout::switch`]); nothing without one.
pub(super) fn still_held(token: Option<&str>) -> String {
    let Some(token) = token else {
        return String::new();
    };
    let needle = q(&format!("\"token\":\"{token}\""));
    format!(
        r#"{LOCK_FNS}
if ! {{ lock_is_file && case $(head -n 1 "$L") in *{needle}*) true ;; *) false ;; esac; }}; then
  if lock_exists; then tell_lock >&2; fi
  exit {LOCK_LOST}
fi"#
    )
}

/// The run token in a lock line (`{"token":"…",…}`), if it is a plain word.
pub(super) fn lock_token(lock_line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(lock_line).ok()?;
    let token = value.get("token")?.as_str()?;
    let plain = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| token.to_string())
}

/// What a lock file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub by: String,
    pub pid: u32,
    pub since: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The environment (`-e`) of the run holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Taken by `hoist lock`: held on purpose after the process that took
    /// it has ended, so never "a run that is no longer running".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hand: bool,
}

impl LockInfo {
    pub fn parse(line: &str) -> Option<LockInfo> {
        serde_json::from_str(line).ok()
    }

    /// "alice@laptop since 2026-11-22T03:00:00Z (pid 42): fixing the db"
    pub fn describe(line: &str) -> String {
        match LockInfo::parse(line) {
            Some(l) => {
                let mut s = if l.hand {
                    format!("{} since {} (by hand)", l.by, l.since)
                } else {
                    format!("{} since {} (pid {})", l.by, l.since, l.pid)
                };
                if let Some(env) = &l.env {
                    s.push_str(&format!(", environment {env}"));
                }
                if let Some(r) = &l.release {
                    s.push_str(&format!(", deploying {r}"));
                }
                if let Some(m) = &l.message {
                    s.push_str(&format!(": {m}"));
                }
                s
            }
            None => format!("an unreadable lock: {line}"),
        }
    }

    /// How the lock in `line` can be freed: plain `hoist unlock` by whoever
    /// took it (same user@machine), `--force` by anyone.
    pub fn how_to_free(line: &str) -> String {
        match LockInfo::parse(line) {
            Some(l) => format!(
                "`hoist unlock` frees it as {}, `hoist unlock --force` from anywhere",
                l.by
            ),
            None => "only `hoist unlock --force` clears it".to_string(),
        }
    }
}

/// What is at `<deploy_to>/.hoist/lock` when something is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// A lock file, with its first line (hoist writes one JSON line; a file
    /// made by hand may hold anything, or be empty).
    File(String),
    /// Anything else (a directory, a symlink, a fifo…), described on one
    /// line, e.g. `a directory` or `a symlink to /elsewhere`. It blocks like
    /// a lock; only a forced unlock removes it.
    Other(String),
}

impl LockState {
    /// Who holds the lock, or what is at its path instead (status, check).
    pub fn describe(&self) -> String {
        match self {
            LockState::File(line) => LockInfo::describe(line),
            LockState::Other(what) => format!(".hoist/lock is {what}, not a lock file"),
        }
    }

    /// The text the probe shows: the lock file's line, or the description.
    #[cfg(test)]
    pub(super) fn text(&self) -> &str {
        match self {
            LockState::File(line) | LockState::Other(line) => line,
        }
    }

    /// What a script that found the lock was not its own told on stderr
    /// (`tell_lock`); `None` when it told nothing (no lock was left).
    pub fn told(text: &str) -> Option<LockState> {
        let mut lines = text.lines().skip_while(|l| l.trim().is_empty()).peekable();
        lines.peek()?;
        Some(LockState::read(lines))
    }

    /// Reads what `tell_lock` prints: a line, then `not-a-file` for a non-file.
    fn read<'a>(mut lines: impl Iterator<Item = &'a str>) -> LockState {
        let text = lines.next().unwrap_or("").to_string();
        if lines.next() == Some("not-a-file") {
            LockState::Other(text)
        } else {
            LockState::File(text)
        }
    }
}

/// What the script of [`Layout::lock`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAnswer {
    /// Taken; with the host as it was just before (an answer without the
    /// mark's lines reads as a host that changed).
    Acquired(Mark),
    Held(LockState),
}

impl LockAnswer {
    /// Output: `acquired` and the [`Mark`]'s lines; or `held`, the lock
    /// line or a description, and `not-a-file` on a third line when the
    /// lock is not a lock file (so a caller that reads only two lines still
    /// sees a held lock).
    pub fn parse(output: &str) -> Result<LockAnswer, String> {
        let mut lines = output.lines();
        match lines.next() {
            Some("acquired") => {
                let mut mark = Mark::default();
                lines.for_each(|line| mark.read(line));
                Ok(LockAnswer::Acquired(mark))
            }
            Some("held") => Ok(LockAnswer::Held(LockState::read(lines))),
            other => Err(format!(
                "unexpected answer while locking: {}",
                other.unwrap_or("(nothing)")
            )),
        }
    }
}

/// What the script of [`Layout::unlock`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockAnswer {
    Freed,
    Absent,
    /// Not ours to free: someone else's lock file, or not a lock file at all.
    Other(LockState),
}

impl UnlockAnswer {
    /// Output: `freed`, `absent`, or `other` followed by the lines of
    /// [`LockAnswer::parse`]'s `held`.
    pub fn parse(output: &str) -> Result<UnlockAnswer, String> {
        let mut lines = output.lines();
        match lines.next() {
            Some("freed") => Ok(UnlockAnswer::Freed),
            Some("absent") => Ok(UnlockAnswer::Absent),
            Some("other") => Ok(UnlockAnswer::Other(LockState::read(lines))),
            other => Err(format!(
                "unexpected answer while unlocking: {}",
                other.unwrap_or("(nothing)")
            )),
        }
    }
}
