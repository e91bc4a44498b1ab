//! The dead-man switch's host commands, built from plain values: arm (start
//! the watchdog), heartbeat (push its deadline on), settle (confirm or
//! disarm: the watchdog exits), and the watchdog itself. Every value is
//! quoted; the host needs POSIX sh, `sleep`, `mv`, `readlink`, `ln`.
//!
//! On the host, one run's watchdog is the directory
//! `.hoist/deadman/<run>` (`beat`: a count each heartbeat moves on, `pid`); whoever
//! renames it first wins: the watchdog (to `<run>.reverting`, then it
//! reverts) or hoist settling it (to `<run>.settled`, then it is removed
//! and the watchdog stopped). A heartbeat only writes into it.

use crate::engine::layout::{LOCK_FNS, Layout, q};
use crate::release::ReleaseId;

/// The word in the watchdog's command line (`$0` of its `sh -c`) by which
/// it is told apart in `ps`.
pub const MARKER: &str = "hoist-deadman";

const WATCHDOG: &str = include_str!("watchdog.sh");

/// What one host's watchdog must do if its deadline passes.
pub struct Watchdog<'a> {
    pub layout: &'a Layout,
    /// The run that armed it: its lock token.
    pub run: &'a str,
    /// The release `current` points at after the switch.
    pub armed: &'a ReleaseId,
    /// Where it goes back to; `None` (a first deploy): `current` is removed.
    pub previous: Option<&'a ReleaseId>,
    /// Complete scripts (`sh -c`) of the after_rollback hooks, in order.
    pub after_rollback: Vec<String>,
    /// Journal lines as (before the time, after it): gone back, gone back
    /// with after_rollback failed, the lock freed.
    pub reverted: (String, String),
    pub reverted_hook_failed: (String, String),
    pub freed: (String, String),
    /// Seconds without a heartbeat before it goes back.
    pub timeout_secs: u64,
}

fn pair((before, after): &(String, String)) -> String {
    format!("{} {}", q(before), q(after))
}

impl Watchdog<'_> {
    /// The watchdog's own script (run detached by [`Watchdog::arm`]).
    pub fn script(&self) -> String {
        let switch_back = match self.previous {
            Some(p) => format!(
                r#"S="$H/tmp/deadman.$$"
  if rm -rf "$S" && mkdir -p "$S" && ln -s {link} "$S/current" && mv "$S/current" "$D/"; then rmdir "$S"; else rm -rf "$S" "$W.reverting"; exit 1; fi"#,
                link = q(&format!("releases/{p}"))
            ),
            None => r#"rm -f "$D/current" || { rm -rf "$W.reverting"; exit 1; }"#.to_string(),
        };
        let hooks: String = self
            .after_rollback
            .iter()
            .map(|h| {
                format!(
                    "\n  if [ \"$r\" = 0 ]; then sh -c {} </dev/null >/dev/null 2>&1 || r=$?; fi",
                    q(h)
                )
            })
            .collect();
        WATCHDOG
            .replace("@HEAD", &self.layout.head())
            .replace("@LOCK_FNS", LOCK_FNS)
            .replace("@RUN", &q(self.run))
            .replace("@TIMEOUT", &self.timeout_secs.to_string())
            .replace("@NEEDLE", &q(&format!("\"token\":\"{}\"", self.run)))
            .replace("@ARMED", &q(&format!("releases/{}", self.armed)))
            .replace("@SWITCH_BACK", &switch_back)
            .replace("\n  @AFTER_ROLLBACK", &hooks)
            .replace("@REVERTED_OK", &pair(&self.reverted))
            .replace("@REVERTED_HOOK_FAILED", &pair(&self.reverted_hook_failed))
            .replace("@FREED", &pair(&self.freed))
    }

    /// Starts the watchdog, detached from the session (`setsid` where the
    /// host has it, else `nohup`), its stdio closed. A watchdog of the same
    /// run is replaced.
    pub fn arm(&self) -> String {
        format!(
            r#"{head}
W="$H/deadman/"{run}
mkdir -p "$H/deadman" "$H/tmp" && rm -rf "$W" "$W.reverting" "$W.settled" && mkdir "$W" && echo 0 > "$W/beat" || exit 1
w={script}
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c "$w" {MARKER} {run} </dev/null >/dev/null 2>&1 &
else
  nohup sh -c "$w" {MARKER} {run} </dev/null >/dev/null 2>&1 &
fi
echo armed
"#,
            head = self.layout.head(),
            run = q(self.run),
            script = q(&self.script()),
        )
    }
}

/// Starts `run`'s watchdog counting again (a new `beat`). Prints `alive`,
/// or `gone` when the watchdog is no longer waiting (it went back, or is
/// going back, by itself).
pub fn heartbeat(layout: &Layout, run: &str) -> String {
    format!(
        r#"{head}
W="$H/deadman/"{run}
n=; read -r n < "$W/beat" 2>/dev/null; case $n in ''|*[!0-9]*) n=0 ;; esac
if [ -d "$W" ] && echo $((n + 1)) > "$W/beat.$$" 2>/dev/null && mv -f "$W/beat.$$" "$W/beat" 2>/dev/null && [ -d "$W" ]; then echo alive; else rm -f "$W/beat.$$" 2>/dev/null; echo gone; fi
"#,
        head = layout.head(),
        run = q(run),
    )
}

/// Ends `run`'s watchdog without it doing anything: prints `settled`,
/// once its process is stopped and its directory gone, or `gone` when it
/// had already started going back (or was never there).
pub fn settle(layout: &Layout, run: &str) -> String {
    format!(
        r#"{head}
W="$H/deadman/"{run}
if ! mv "$W" "$W.settled" 2>/dev/null; then echo gone; exit 0; fi
p=$(cat "$W.settled/pid" 2>/dev/null) || p=
case $p in ''|*[!0-9]*) ;; *)
  if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -q {marker}; then kill "$p" 2>/dev/null; fi ;;
esac
rm -rf "$W.settled"
echo settled
"#,
        head = layout.head(),
        run = q(run),
        marker = q(MARKER),
    )
}

/// What [`settle`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Settled,
    /// The watchdog had gone back (or was going back) by itself.
    Gone,
}

impl Settled {
    pub fn parse(out: &str) -> Option<Settled> {
        match out.lines().last()?.trim() {
            "settled" => Some(Settled::Settled),
            "gone" => Some(Settled::Gone),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
