//! What shows whether another run changed a host between two readings of
//! it: the probe prints it, and so does taking the lock.

/// Prints where `current` points: `current <target>`, or
/// `current-missing <target>` when that is not a directory; nothing
/// without a `current`. The probe and the lock print it alike (see [`Mark`]).
pub(super) const CURRENT_LINES: &str = r#"if [ -L "$D/current" ]; then
  c=$(readlink "$D/current" | head -n 1)
  if [ -d "$D/current" ]; then printf 'current %s\n' "$c"; else printf 'current-missing %s\n' "$c"; fi
fi"#;

/// Prints `journal-size <bytes>` (0 without a journal; `-` when it cannot
/// be measured). The probe and the lock print it alike (see [`Mark`]).
pub(super) const JOURNAL_SIZE: &str = r#"if [ -f "$H/journal" ]; then
  j=$(wc -c 2>/dev/null < "$H/journal") && j=$((j)) || j=-
  echo "journal-size $j"
else echo "journal-size 0"; fi"#;

/// The lines that show whether a host changed between two readings of it
/// (see [`Mark`]), as a script prints them.
pub(super) fn mark_lines() -> String {
    format!("{CURRENT_LINES}\n{JOURNAL_SIZE}")
}

/// What shows whether another run changed a host since it was read: where
/// `current` points and the size of its journal. Every run that changes a
/// host first takes its lock, which appends a line to its journal, and
/// nothing rewrites a journal, so the same size means no run came between
/// (`current` is there for a run whose journal lines could not be written).
/// The probe reads it, and so does taking the lock, before its own line.
/// Three processes (`readlink`, `head`, `wc`) where the last line's text
/// would cost two more on every host, for nothing an append misses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    /// The `current` or `current-missing` line, as the host printed it.
    pub current: Option<String>,
    /// The journal's size in bytes; `None` when the answer had no readable
    /// `journal-size` line (an answer in the older form, or a journal that
    /// could not be measured).
    pub journal_size: Option<u64>,
}

impl Mark {
    /// Takes in one line of an answer if it is one of the mark's.
    pub(super) fn read(&mut self, line: &str) {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "current" | "current-missing" => self.current = Some(line.to_string()),
            "journal-size" => self.journal_size = rest.trim().parse().ok(),
            _ => {}
        }
    }

    /// Whether `now` shows the host as it was when this was read. A mark
    /// without the journal's size never does: the host must be read again.
    pub fn unchanged(&self, now: &Mark) -> bool {
        self.journal_size.is_some() && self == now
    }
}
