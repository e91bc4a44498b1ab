//! Aligned tables, shared by the plain and the TTY renderers: the `Row`
//! tables of status/check/releases/exec, and the summary.

use super::style::{Paint, clean, duration_ms, exit_meaning, fit, hosts_word, pad};
use super::{HostResult, HostSummary, Row, Summary};
use serde_json::Value;

/// The colour of one cell; applied after padding so alignment never counts escape codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tint {
    None,
    Green,
    Red,
    Yellow,
    Dim,
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub tint: Tint,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            tint: Tint::None,
        }
    }

    pub fn tinted(text: impl Into<String>, tint: Tint) -> Self {
        Cell {
            text: text.into(),
            tint,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<(Vec<Cell>, bool)>,
}

impl Table {
    /// Lines of the table: a header, then one line per row; columns two
    /// spaces apart, no trailing spaces; a marked row ends in `*` (and is
    /// yellow with colour). Each line is cut to `max_width` when given.
    pub fn render(&self, paint: Paint, max_width: Option<usize>) -> Vec<String> {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for (cells, _) in &self.rows {
            for (i, cell) in cells.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(&cell.text));
            }
        }
        let any_marked = self.rows.iter().any(|(_, marked)| *marked);
        let cut = |line: String| match max_width {
            Some(w) => fit(&line, w),
            None => line,
        };

        let mut lines = Vec::with_capacity(self.rows.len() + 1);
        let header = join_padded(self.headers.iter().map(String::as_str), &widths, false);
        lines.push(paint.bold(&cut(header)));
        for (cells, marked) in &self.rows {
            if *marked {
                let texts = cells.iter().map(|c| c.text.as_str());
                let line = format!("{}  *", join_padded(texts, &widths, true));
                lines.push(paint.yellow(&cut(line)));
                continue;
            }
            // Pad the plain text, then tint: escape codes must not count as width.
            let mut line = String::new();
            let mut used = 0;
            for (i, cell) in cells.iter().enumerate().take(columns) {
                let last = i + 1 == columns;
                let text = if last && !any_marked {
                    cell.text.clone()
                } else {
                    pad(&cell.text, widths[i])
                };
                let sep = if i == 0 { "" } else { "  " };
                let room = max_width.map(|w| w.saturating_sub(used + sep.len()));
                let text = match room {
                    Some(0) => break,
                    Some(room) if width(&text) > room => fit(&text, room),
                    _ => text,
                };
                used += sep.len() + width(&text);
                line.push_str(sep);
                line.push_str(&tint(paint, cell.tint, &text));
            }
            lines.push(line.trim_end().to_string());
        }
        lines
    }
}

fn width(text: &str) -> usize {
    console::measure_text_width(text)
}

fn join_padded<'a>(
    texts: impl Iterator<Item = &'a str>,
    widths: &[usize],
    pad_last: bool,
) -> String {
    let texts: Vec<&str> = texts.take(widths.len()).collect();
    let mut out = String::new();
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        if i + 1 == widths.len() && !pad_last {
            out.push_str(text);
        } else {
            out.push_str(&pad(text, widths[i]));
        }
    }
    out
}

fn tint(paint: Paint, tint: Tint, text: &str) -> String {
    match tint {
        Tint::None => text.to_string(),
        Tint::Green => paint.green(text),
        Tint::Red => paint.red(text),
        Tint::Yellow => paint.yellow(text),
        Tint::Dim => paint.dim(text),
    }
}

/// How a JSON cell reads in a table.
pub fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::Bool(true) => "yes".to_string(),
        Value::Bool(false) => "no".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => clean(s).lines().next().unwrap_or("").to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(cell_text).collect::<Vec<_>>().join(","),
        Value::Object(_) => value.to_string(),
    }
}

/// `Row` events, collected per table until they can be printed aligned.
#[derive(Debug, Default)]
pub struct RowTables {
    tables: Vec<Pending>,
}

#[derive(Debug)]
struct Pending {
    name: &'static str,
    columns: Vec<&'static str>,
    rows: Vec<Row>,
}

impl RowTables {
    pub fn push(&mut self, row: &Row) {
        let at = match self.tables.iter().position(|t| t.name == row.table) {
            Some(at) => at,
            None => {
                self.tables.push(Pending {
                    name: row.table,
                    columns: Vec::new(),
                    rows: Vec::new(),
                });
                self.tables.len() - 1
            }
        };
        let table = &mut self.tables[at];
        for (key, _) in &row.cells {
            if !table.columns.contains(key) {
                table.columns.push(key);
            }
        }
        table.rows.push(row.clone());
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The collected tables, in the order they first appeared; leaves none behind.
    pub fn take(&mut self) -> Vec<Table> {
        std::mem::take(&mut self.tables)
            .into_iter()
            .map(|pending| {
                let headers = pending.columns.iter().map(|c| c.to_uppercase()).collect();
                let rows = pending
                    .rows
                    .iter()
                    .map(|row| {
                        let cells = pending
                            .columns
                            .iter()
                            .map(|col| {
                                let value = row.cells.iter().find(|(k, _)| k == col);
                                Cell::new(value.map_or("-".to_string(), |(_, v)| cell_text(v)))
                            })
                            .collect();
                        (cells, row.marked)
                    })
                    .collect();
                Table { headers, rows }
            })
            .collect()
    }
}

/// The summary block: a host table (when there are hosts), the counts line,
/// and where the full log went. `max_rows` (on a terminal) puts the hosts
/// that failed first, every one of them, and folds each other result (ok,
/// rolled back, skipped) beyond that many rows into one line, so a
/// 1,000-host summary shows what matters.
pub fn summary_lines(
    summary: &Summary,
    paint: Paint,
    max_width: Option<usize>,
    max_rows: Option<usize>,
) -> Vec<String> {
    let mut lines = Vec::new();
    if !summary.hosts.is_empty() {
        let with_errors = summary.hosts.iter().any(|h| h.error.is_some());
        let with_sent = summary.hosts.iter().any(|h| h.sent_bytes.is_some());
        let mut headers = vec!["HOST", "RESULT", "RELEASE", "TIME"];
        if with_sent {
            headers.push("SENT");
        }
        if with_errors {
            headers.push("ERROR");
        }
        let mut table = Table {
            headers: headers.into_iter().map(String::from).collect(),
            rows: Vec::new(),
        };
        let rows = shown_rows(&summary.hosts, max_rows);
        for host in &rows.shown {
            let result_tint = match host.result {
                HostResult::Ok => Tint::Green,
                HostResult::Failed => Tint::Red,
                HostResult::RolledBack => Tint::Yellow,
                HostResult::Skipped => Tint::Dim,
                HostResult::Unreachable => Tint::Red,
            };
            let mut cells = vec![
                Cell::new(host.host.clone()),
                Cell::tinted(host.result.as_str(), result_tint),
                Cell::new(host.release.clone().unwrap_or_else(|| "-".into())),
                Cell::new(duration_ms(host.elapsed_ms)),
            ];
            if with_sent {
                cells.push(Cell::new(
                    host.sent_bytes
                        .map_or_else(|| "-".to_string(), super::style::bytes),
                ));
            }
            if with_errors {
                let error = clean(host.error.as_deref().unwrap_or(""));
                cells.push(Cell::new(error.lines().next().unwrap_or("")));
            }
            table.rows.push((cells, false));
        }
        lines.extend(table.render(paint, max_width));
        for (result, more) in rows.folded {
            let what = result.as_str().replace('_', " ");
            lines.push(paint.dim(&format!("… and {more} more {what}")));
        }
    }

    let cut = |line: String| match max_width {
        Some(w) => fit(&line, w),
        None => line,
    };
    // A run that reached no host (a bad file, a plan) has nothing to count.
    let reached_nothing = summary.hosts.is_empty() && summary.elapsed_ms == 0;
    let counts = cut(counts_line(summary));
    let exit = cut(format!(
        "exit {}: {}",
        summary.exit_code,
        exit_meaning(&summary.command, summary.exit_code)
    ));
    if summary.exit_code == 0 {
        if !reached_nothing {
            lines.push(paint.green(&counts));
        }
        lines.push(exit);
    } else {
        if !reached_nothing {
            lines.push(paint.red_bold(&counts));
        }
        lines.push(paint.red(&exit));
    }
    if let Some(log) = &summary.log_file {
        lines.push(format!("full log: {log}"));
    }
    lines
}

/// The summary's rows to show, and how many of each result were folded.
struct Shown<'a> {
    shown: Vec<&'a HostSummary>,
    folded: Vec<(HostResult, usize)>,
}

/// Every host in inventory order; or, with `max_rows`, the failed and
/// unreachable hosts first (all of them), then at most `max_rows` rolled
/// back, skipped and ok hosts each, the rest counted.
fn shown_rows(hosts: &[HostSummary], max_rows: Option<usize>) -> Shown<'_> {
    let Some(max) = max_rows else {
        return Shown {
            shown: hosts.iter().collect(),
            folded: Vec::new(),
        };
    };
    let mut shown = Vec::new();
    let mut folded = Vec::new();
    let order = [
        HostResult::Failed,
        HostResult::Unreachable,
        HostResult::RolledBack,
        HostResult::Skipped,
        HostResult::Ok,
    ];
    for result in order {
        let of: Vec<&HostSummary> = hosts.iter().filter(|h| h.result == result).collect();
        let keep = match result {
            HostResult::Failed | HostResult::Unreachable => of.len(),
            _ => of.len().min(max),
        };
        if of.len() > keep {
            folded.push((result, of.len() - keep));
        }
        shown.extend(of.into_iter().take(keep));
    }
    Shown { shown, folded }
}

/// `deploy: 1 ok, 1 failed, 1 rolled back of 3 hosts in 12.3s`
fn counts_line(summary: &Summary) -> String {
    let counts: Vec<String> = [
        (summary.ok, "ok"),
        (summary.failed, "failed"),
        (summary.rolled_back, "rolled back"),
        (summary.skipped, "skipped"),
        (summary.unreachable, "unreachable"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let total =
        summary.ok + summary.failed + summary.rolled_back + summary.skipped + summary.unreachable;
    if counts.is_empty() && summary.exit_code != 0 {
        // Stopped before any host had a result: not "done".
        return format!(
            "{}: ended after {}",
            summary.command,
            duration_ms(summary.elapsed_ms)
        );
    }
    if counts.is_empty() {
        // Read-only commands report through their table, not per-host results.
        return format!(
            "{}: done in {}",
            summary.command,
            duration_ms(summary.elapsed_ms)
        );
    }
    format!(
        "{}: {} of {} in {}",
        summary.command,
        counts.join(", "),
        hosts_word(total),
        duration_ms(summary.elapsed_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(host: &str, release: Value, marked: bool) -> Row {
        Row {
            table: "status",
            cells: vec![("host", json!(host)), ("release", release)],
            marked,
        }
    }

    /// A 1,000-host summary on a terminal: its 3 failed hosts first (the
    /// last of the inventory among them), 5 rows of each other result, the
    /// rest counted; the counts line has every host.
    #[test]
    fn a_thousand_host_summary_shows_failures_first_and_folds_the_rest() {
        let hosts: Vec<HostSummary> = (1..=1000)
            .map(|i| HostSummary {
                host: format!("web{i:04}"),
                result: match i {
                    7 | 500 | 1000 => HostResult::Failed,
                    _ if i % 100 == 1 => HostResult::Skipped,
                    _ => HostResult::Ok,
                },
                release: Some("r2".into()),
                error: (i % 100 == 0 || i == 7).then(|| format!("switch failed on web{i:04}")),
                elapsed_ms: 1_000,
                sent_bytes: None,
                tail: Vec::new(),
            })
            .collect();
        let summary = Summary::new("deploy", 1, Some("r2".into()), hosts, 60_000, None);
        let lines = summary_lines(&summary, Paint::plain(), Some(120), Some(5));
        let text = lines.join("\n");
        assert_eq!(lines.len(), 1 + 3 + 5 + 5 + 2 + 2, "{text}");
        assert!(lines[1].starts_with("web0007  failed"), "{text}");
        assert!(lines[2].starts_with("web0500  failed"), "{text}");
        assert!(lines[3].starts_with("web1000  failed"), "{text}");
        assert!(lines[4].starts_with("web0001  skipped"), "{text}");
        assert!(lines[9].starts_with("web0002  ok"), "{text}");
        assert_eq!(lines[14], "… and 5 more skipped");
        assert_eq!(lines[15], "… and 982 more ok");
        assert_eq!(
            lines[16],
            "deploy: 987 ok, 3 failed, 10 skipped of 1000 hosts in 1m00s"
        );
        // Off a terminal (plain), every host in inventory order.
        let all = summary_lines(&summary, Paint::plain(), None, None);
        assert_eq!(all.len(), 1 + 1000 + 2);
        assert!(all[1].starts_with("web0001"));
    }

    #[test]
    fn rows_become_an_aligned_table_with_a_marker() {
        let mut tables = RowTables::default();
        tables.push(&row(
            "web01.example.com",
            json!("20250301T120000Z-ab12cd34"),
            false,
        ));
        tables.push(&row("web2", json!(null), true));
        let lines = tables.take()[0].render(Paint::plain(), None);
        assert_eq!(
            lines,
            vec![
                "HOST               RELEASE",
                "web01.example.com  20250301T120000Z-ab12cd34",
                "web2               -                          *",
            ]
        );
        assert!(tables.is_empty());
    }

    #[test]
    fn a_column_missing_from_a_row_reads_as_a_dash() {
        let mut tables = RowTables::default();
        tables.push(&Row {
            table: "exec",
            cells: vec![("host", json!("a")), ("exit", json!(0))],
            marked: false,
        });
        tables.push(&Row {
            table: "exec",
            cells: vec![("host", json!("b")), ("error", json!("timeout"))],
            marked: false,
        });
        let lines = tables.take()[0].render(Paint::plain(), None);
        assert_eq!(
            lines,
            vec!["HOST  EXIT  ERROR", "a     0     -", "b     -     timeout"]
        );
    }

    #[test]
    fn tinted_cells_stay_aligned() {
        let table = Table {
            headers: vec!["A".into(), "B".into()],
            rows: vec![
                (vec![Cell::tinted("ok", Tint::Green), Cell::new("x")], false),
                (
                    vec![Cell::tinted("failed", Tint::Red), Cell::new("y")],
                    false,
                ),
            ],
        };
        let lines = table.render(Paint::new(true), None);
        let plain: Vec<String> = lines
            .iter()
            .map(|l| console::strip_ansi_codes(l).into_owned())
            .collect();
        assert_eq!(plain, vec!["A       B", "ok      x", "failed  y"]);
    }

    #[test]
    fn lines_are_cut_to_the_width() {
        let table = Table {
            headers: vec!["HOST".into(), "ERROR".into()],
            rows: vec![(vec![Cell::new("web1"), Cell::new("x".repeat(100))], false)],
        };
        for line in table.render(Paint::new(true), Some(40)) {
            assert!(console::measure_text_width(&line) <= 40, "{line}");
        }
    }
}
