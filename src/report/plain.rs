//! Plain lines, one per event, for CI logs, pipes and `--verbose`:
//! `HH:MM:SS host  text`. Never a carriage return or a cursor movement;
//! colour only when asked for.

use super::clock::Clock;
use super::style::{self, Paint, clean, duration_ms, host_list, hosts_word};
use super::table::{RowTables, summary_lines};
use super::workflow::{inert_line, inert_text};
use super::{Event, Level, OutputStream, Phase, Reporter};
use chrono::{DateTime, FixedOffset, SecondsFormat};
use indicatif::BinaryBytes;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// How much the plain renderer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Failures, warnings, errors, tables and the summary.
    Quiet,
    Normal,
    /// Also every line hooks print.
    Verbose,
}

/// What each line starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// `12:04:05`, local time.
    Time,
    /// `2025-03-01T12:04:05.123+01:00`, for log files.
    Full,
}

#[derive(Debug, Clone, Copy)]
pub struct PlainOptions {
    pub verbosity: Verbosity,
    pub paint: Paint,
    pub stamp: Stamp,
    /// Print the `Row` tables (off when they already go out as JSON).
    pub tables: bool,
}

/// Widest host column; longer names still print whole, just unaligned.
const MAX_HOST_WIDTH: usize = 30;
/// Hosts named on one run or wave line.
const LISTED_HOSTS: usize = 10;
/// Lines of a host's diagnostics shown with its failure (all of them go to the log).
const DIAGNOSTIC_LINES: usize = 12;
/// Without a known total, an upload line at most this often per host.
const UPLOAD_EVERY_MS: i64 = 5_000;

pub struct Plain {
    opts: PlainOptions,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// Under GitHub Actions: workflow commands in the log, and the summary
/// table for the job's page.
struct Github {
    /// `$GITHUB_STEP_SUMMARY`, appended to.
    summary: Option<Box<dyn Write + Send>>,
    /// A `::group::` is open.
    grouped: bool,
}

struct State {
    out: Box<dyn Write + Send>,
    host_width: usize,
    command: String,
    release: Option<String>,
    waves: usize,
    phases: HashMap<String, Phase>,
    uploads: HashMap<String, Upload>,
    tables: RowTables,
    printed: bool,
    /// The last diagnostic lines of hosts whose failure is still to be shown.
    diagnostics: HashMap<String, Vec<String>>,
    github: Option<Github>,
    /// Every analysis sample, listed with the summary.
    samples: style::GateSamples,
    /// The runner reads these lines for workflow commands: none may be one
    /// that hoist did not write as one (see `workflow`).
    inert: bool,
}

struct Upload {
    started: DateTime<FixedOffset>,
    printed: DateTime<FixedOffset>,
    quarter: u64,
}

impl Plain {
    pub fn new(out: Box<dyn Write + Send>, opts: PlainOptions, clock: Arc<dyn Clock>) -> Self {
        Plain {
            opts,
            clock,
            state: Mutex::new(State {
                out,
                host_width: 1,
                command: String::new(),
                release: None,
                waves: 0,
                phases: HashMap::new(),
                uploads: HashMap::new(),
                tables: RowTables::default(),
                printed: false,
                diagnostics: HashMap::new(),
                github: None,
                inert: false,
                samples: style::GateSamples::default(),
            }),
        }
    }

    /// GitHub Actions: each wave a collapsible group, each failed host an
    /// error annotation, and the summary table appended to `summary`
    /// (`$GITHUB_STEP_SUMMARY`) as Markdown.
    pub fn github(self, summary: Option<Box<dyn Write + Send>>) -> Self {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.github = Some(Github {
            summary,
            grouped: false,
        });
        st.inert = true;
        drop(st);
        self
    }

    /// Lines the GitHub runner reads (stderr under `--json`): no host text
    /// in them is taken for a workflow command.
    pub fn inert(self) -> Self {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.inert = true;
        drop(st);
        self
    }

    /// A run-level line that is no event (e.g. a question asked and its answer).
    pub fn note(&self, text: &str) {
        let now = self.clock.now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        flush_tables(self.opts.paint, &mut st);
        let line = self.line(&st, now, None, text);
        let line = if st.inert { inert_line(&line) } else { line };
        write_lines(&mut st, &[line]);
    }

    fn line(
        &self,
        st: &State,
        now: DateTime<FixedOffset>,
        host: Option<&str>,
        text: &str,
    ) -> String {
        let stamp = match self.opts.stamp {
            Stamp::Time => now.format("%H:%M:%S").to_string(),
            Stamp::Full => now.to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        let host = host.unwrap_or("-");
        let width = st.host_width;
        format!("{} {host:<width$}  {text}", self.opts.paint.dim(&stamp))
    }

    /// Whether this verbosity shows the event at all.
    fn shows(&self, st: &State, event: &Event) -> bool {
        let quiet = self.opts.verbosity == Verbosity::Quiet;
        match event {
            Event::HostFailed { .. }
            | Event::HostDiagnostics(_)
            | Event::RollbackStarted { .. }
            | Event::Summary(_) => true,
            Event::Row(_) => self.opts.tables,
            // Its rows and lines say it in text.
            Event::RolloutPlan(_) => false,
            Event::Message { level, .. } => !quiet || *level != Level::Info,
            // The output of `exec` is what the user asked for, at any verbosity.
            Event::HostOutput { host, .. } => {
                self.opts.verbosity == Verbosity::Verbose
                    || st.command == "exec"
                    || st.phases.get(host) == Some(&Phase::Exec)
            }
            // Reaching and locking every host is routine: a line each only with -v.
            Event::ConnectRetry { .. } => self.opts.verbosity == Verbosity::Verbose,
            Event::HostPhase {
                phase: Phase::Connect | Phase::Preflight | Phase::Lock | Phase::Unlock | Phase::Exec,
                ..
            } => self.opts.verbosity == Verbosity::Verbose,
            _ => !quiet,
        }
    }

    fn render(&self, st: &mut State, now: DateTime<FixedOffset>, event: &Event) -> Vec<String> {
        let paint = self.opts.paint;
        let host_line = |st: &State, host: &str, text: &str| self.line(st, now, Some(host), text);
        match event {
            Event::RolloutPlan(_) => Vec::new(),
            // Said by a message too.
            Event::Relayed { .. } => Vec::new(),
            Event::RunStarted {
                command,
                app,
                release,
                version,
                hosts,
            } => {
                let mut text = format!("{command} {app}");
                if let Some(release) = release {
                    text.push_str(&format!(" {release}"));
                }
                if let Some(version) = version {
                    text.push_str(&format!(" ({version})"));
                }
                text.push_str(&format!(
                    " on {}: {}",
                    hosts_word(hosts.len()),
                    host_list(hosts, LISTED_HOSTS)
                ));
                vec![self.line(st, now, None, &text)]
            }
            Event::WaveStarted {
                wave,
                waves,
                kind,
                hosts,
                group,
                zone,
            } => {
                let text = format!(
                    "wave {wave}/{waves} ({kind}{}): {}",
                    stage(group, zone),
                    host_list(hosts, LISTED_HOSTS)
                );
                vec![self.line(st, now, None, &paint.bold(&text))]
            }
            Event::HostPhase { host, phase } => {
                vec![host_line(st, host, &paint.cyan(phase.as_str()))]
            }
            Event::ConnectRetry {
                host,
                attempt,
                retries,
                error,
                delay_ms,
            } => {
                let text = format!(
                    "connect retry {attempt}/{retries} in {}: {}",
                    duration_ms(*delay_ms),
                    clean(error).replace('\n', " ")
                );
                vec![host_line(st, host, &paint.yellow(&text))]
            }
            Event::UploadProgress { host, bytes, total } => {
                match upload_text(st, now, host, *bytes, *total) {
                    Some(text) => vec![host_line(st, host, &text)],
                    None => vec![],
                }
            }
            Event::HostOutput { host, stream, line } => {
                let mark = match stream {
                    OutputStream::Stdout => "|",
                    OutputStream::Stderr => "!",
                };
                clean(line)
                    .split('\n')
                    .map(|line| host_line(st, host, &format!("{mark} {line}")))
                    .collect()
            }
            Event::HostDone {
                host,
                release,
                message,
                elapsed_ms,
                sent_bytes,
            } => {
                let details = style::done_details(
                    release.as_ref(),
                    st.release.as_ref(),
                    *sent_bytes,
                    message.as_deref(),
                );
                let text = format!(
                    "{} in {}{details}",
                    paint.green("ok"),
                    duration_ms(*elapsed_ms)
                );
                vec![host_line(st, host, &text)]
            }
            Event::HostFailed {
                host,
                phase,
                error,
                tail,
                elapsed_ms,
            } => {
                let error = clean(error);
                let mut error_lines = error.lines();
                let first = error_lines.next().unwrap_or("");
                let head = format!(
                    "failed in {phase} after {}: {first}",
                    duration_ms(*elapsed_ms)
                );
                let mut lines = vec![host_line(st, host, &paint.red(&head))];
                let tail = tail.iter().map(|line| clean(line));
                for more in error_lines.map(String::from).chain(tail) {
                    lines.push(host_line(st, host, &paint.dim(&format!("    | {more}"))));
                }
                if let Some(found) = st.diagnostics.remove(host.as_str()) {
                    lines.push(host_line(st, host, "    diagnostics, last lines:"));
                    for line in found {
                        let text = format!("    | {}", clean(&line));
                        lines.push(host_line(st, host, &paint.dim(&text)));
                    }
                }
                lines
            }
            Event::HostDiagnostics(found) => {
                let host = found.host.as_str();
                // Live, in a run: its last lines go with the host's failure
                // (all of them with -v and in the log). Otherwise (status
                // --last-failure) the whole record is what was asked for.
                let live = st.phases.get(host) == Some(&Phase::Diagnose);
                if live && self.opts.verbosity != Verbosity::Verbose {
                    st.diagnostics
                        .insert(host.to_string(), found.last_lines(DIAGNOSTIC_LINES));
                    return vec![];
                }
                let head = format!(
                    "diagnostics after the {} failure of {} ({}, by {}): {}",
                    found.phase,
                    found.release,
                    found.at,
                    found.by,
                    clean(&found.error).replace('\n', " ")
                );
                let mut lines = vec![host_line(st, host, &paint.yellow(&head))];
                for line in found.lines() {
                    lines.push(host_line(st, host, &format!("    | {}", clean(&line))));
                }
                lines
            }
            Event::WaveDone {
                wave,
                ok,
                failed,
                skipped,
                interrupted,
            } => {
                let text = super::wave_done_text(
                    &format!("{wave}/{}", st.waves),
                    *ok,
                    *failed,
                    *skipped,
                    *interrupted,
                );
                vec![self.line(st, now, None, &text)]
            }
            Event::RollbackStarted { hosts, reason } => {
                let text = format!(
                    "rolling back {} ({}): {}",
                    hosts_word(hosts.len()),
                    host_list(hosts, LISTED_HOSTS),
                    clean(reason).replace('\n', " ")
                );
                vec![self.line(st, now, None, &paint.yellow(&text))]
            }
            Event::BakeStarted {
                step,
                hosts,
                duration_ms: d,
                interval_ms,
            } => {
                let text = style::bake_started(step, hosts, LISTED_HOSTS, *d, *interval_ms);
                vec![self.line(st, now, None, &text)]
            }
            Event::Analysis {
                gate,
                step,
                sample,
                count,
                value,
                verdict,
                dry_run,
                error,
            } => {
                let mut text =
                    style::analysis(gate, step, (*sample, *count), value, verdict, *dry_run);
                if let Some(e) = error {
                    text.push_str(&format!(" ({})", clean(e)));
                }
                let text = match verdict.as_str() {
                    "pass" => text,
                    "fail" => paint.red(&text),
                    _ => paint.yellow(&text),
                };
                vec![self.line(st, now, None, &text)]
            }
            Event::BakeDone {
                step,
                healthy,
                interrupted,
                elapsed_ms,
                gate,
            } => {
                let text =
                    style::bake_done(step, *healthy, *interrupted, *elapsed_ms, gate.as_deref());
                let text = match (healthy, interrupted) {
                    (true, _) => text,
                    (false, true) => paint.yellow(&text),
                    (false, false) => paint.red(&text),
                };
                vec![self.line(st, now, None, &text)]
            }
            Event::TrafficStep {
                step,
                steps,
                weight,
                canary,
                color,
                error,
                ..
            } => {
                let text = style::traffic_step(
                    (*step, *steps),
                    *weight,
                    canary,
                    color.as_deref(),
                    error.as_deref(),
                );
                let text = match error {
                    None => paint.bold(&text),
                    Some(_) => paint.red(&text),
                };
                vec![self.line(st, now, None, &text)]
            }
            Event::Traffic {
                color,
                previous,
                reason,
            } => {
                let text = style::traffic(color, previous.as_deref(), reason);
                vec![self.line(st, now, None, &paint.bold(&text))]
            }
            Event::HostSelfReverted {
                host,
                from,
                to,
                reason,
                at,
            } => {
                let text = style::self_reverted(from, to.as_deref(), reason, at.as_deref());
                vec![self.line(st, now, Some(host), &paint.red(&text))]
            }
            Event::Message { level, host, text } => {
                let label = match level {
                    Level::Info => "",
                    Level::Warn => "warning: ",
                    Level::Error => "error: ",
                };
                let text = clean(text);
                let mut lines = text.split('\n');
                let first = format!("{label}{}", lines.next().unwrap_or(""));
                let more = lines.map(|line| format!("  {line}"));
                std::iter::once(first)
                    .chain(more)
                    .map(|text| {
                        let text = match level {
                            Level::Info => text,
                            Level::Warn => paint.yellow(&text),
                            Level::Error => paint.red(&text),
                        };
                        self.line(st, now, host.as_deref(), &text)
                    })
                    .collect()
            }
            Event::Row(row) => {
                st.tables.push(row);
                vec![]
            }
            Event::Summary(summary) => {
                let mut lines = Vec::new();
                if st.printed {
                    lines.push(String::new());
                }
                lines.extend(st.samples.lines());
                lines.extend(summary_lines(summary, paint, None, None));
                lines
            }
        }
    }

    /// Remembers what later lines depend on: host width, run release, phases.
    fn track(st: &mut State, now: DateTime<FixedOffset>, event: &Event) {
        match event {
            Event::RunStarted {
                command,
                release,
                hosts,
                ..
            } => {
                st.command = command.clone();
                st.release = release.clone();
                let widest = hosts.iter().map(|h| console::measure_text_width(h)).max();
                st.host_width = widest.unwrap_or(1).clamp(1, MAX_HOST_WIDTH);
            }
            Event::WaveStarted { waves, .. } => st.waves = *waves,
            Event::Analysis {
                gate,
                step,
                value,
                verdict,
                dry_run,
                ..
            } => st.samples.add(gate, step, value, verdict, *dry_run),
            Event::HostPhase { host, phase } => {
                st.phases.insert(host.clone(), *phase);
                if *phase == Phase::Upload {
                    st.uploads.insert(
                        host.clone(),
                        Upload {
                            started: now,
                            printed: now,
                            quarter: 0,
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

/// The upload line, when one is due: at each quarter of a known total,
/// otherwise every few seconds; so a CI log gets a handful per host.
fn upload_text(
    st: &mut State,
    now: DateTime<FixedOffset>,
    host: &str,
    bytes: u64,
    total: Option<u64>,
) -> Option<String> {
    let upload = st.uploads.entry(host.to_string()).or_insert(Upload {
        started: now,
        printed: now,
        quarter: 0,
    });
    let due = match total {
        Some(total) => {
            let quarter = (u128::from(bytes) * 4 / u128::from(total.max(1))).min(4) as u64;
            let due = quarter > upload.quarter;
            upload.quarter = upload.quarter.max(quarter);
            due
        }
        None => (now - upload.printed).num_milliseconds() >= UPLOAD_EVERY_MS,
    };
    if !due {
        return None;
    }
    upload.printed = now;
    let mut text = match total {
        Some(total) => format!(
            "upload {} / {} ({}%)",
            BinaryBytes(bytes),
            BinaryBytes(total),
            u128::from(bytes) * 100 / u128::from(total.max(1))
        ),
        None => format!("upload {}", BinaryBytes(bytes)),
    };
    let ms = (now - upload.started).num_milliseconds();
    if ms > 0 {
        let rate = u128::from(bytes) * 1000 / ms as u128;
        text.push_str(&format!(", {}/s", BinaryBytes(rate as u64)));
    }
    Some(text)
}

/// The lines of one event under GitHub Actions: the plain lines, inside a
/// `::group::` per wave, an `::error::` annotation per failed host; the
/// summary also goes to the step summary as Markdown.
fn github_lines(st: &mut State, event: &Event, lines: Vec<String>) -> Vec<String> {
    let github = st.github.as_mut().expect("under GitHub Actions");
    let mut out = Vec::new();
    let close = |github: &mut Github, out: &mut Vec<String>| {
        if std::mem::take(&mut github.grouped) {
            out.push("::endgroup::".to_string());
        }
    };
    match event {
        Event::WaveStarted {
            wave,
            waves,
            kind,
            hosts,
            group,
            zone,
        } => {
            close(github, &mut out);
            out.push(format!(
                "::group::wave {wave}/{waves} ({kind}{}): {}",
                escape_data(&inert_text(&stage(group, zone))),
                escape_data(&inert_text(&host_list(hosts, LISTED_HOSTS)))
            ));
            github.grouped = true;
            out.extend(lines);
        }
        Event::WaveDone { .. } => {
            out.extend(lines);
            close(github, &mut out);
        }
        Event::RollbackStarted { .. } | Event::BakeStarted { .. } | Event::Traffic { .. } => {
            close(github, &mut out);
            out.extend(lines);
        }
        Event::HostFailed {
            host, phase, error, ..
        } => {
            out.extend(lines);
            let first = clean(error);
            let first = first.lines().next().unwrap_or("");
            out.push(format!(
                "::error title={}::{}",
                escape_property(&inert_text(host)),
                escape_data(&inert_text(&format!("{phase}: {first}")))
            ));
        }
        Event::Summary(summary) => {
            close(github, &mut out);
            out.extend(lines);
            if let Some(file) = github.summary.as_mut() {
                // The job page must not stop a deploy.
                let _ = file.write_all(markdown_summary(summary).as_bytes());
                let _ = file.flush();
            }
        }
        _ => out.extend(lines),
    }
    out
}

/// A workflow command's message: `%`, CR and LF escaped (as GitHub's toolkit does).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: also `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// The run's summary as Markdown for `$GITHUB_STEP_SUMMARY`.
fn markdown_summary(summary: &super::Summary) -> String {
    let outcome = match summary.exit_code {
        0 => "done",
        1 => "failed",
        2 => "usage or configuration error",
        3 => "preflight failed",
        4 => "locked by someone else",
        5 => "failed and rolled back",
        130 => "interrupted",
        _ => "ended",
    };
    let cell = |text: &str| clean(text).replace('\n', " ").replace('|', "\\|");
    let mut md = format!(
        "### hoist {}: {outcome} (exit {})\n\n",
        summary.command, summary.exit_code
    );
    if let Some(release) = &summary.release {
        md.push_str(&format!("Release `{release}`. "));
    }
    md.push_str(&format!(
        "{} ok, {} failed, {} rolled back, {} skipped in {}.\n\n",
        summary.ok,
        summary.failed,
        summary.rolled_back,
        summary.skipped,
        duration_ms(summary.elapsed_ms)
    ));
    if !summary.hosts.is_empty() {
        md.push_str(
            "| host | result | release | time | error |\n| --- | --- | --- | --- | --- |\n",
        );
        for h in &summary.hosts {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                cell(&h.host),
                h.result.as_str(),
                h.release
                    .as_deref()
                    .map(|r| format!("`{r}`"))
                    .unwrap_or_default(),
                duration_ms(h.elapsed_ms),
                h.error.as_deref().map(cell).unwrap_or_default()
            ));
        }
        md.push('\n');
        for h in summary.hosts.iter().filter(|h| !h.tail.is_empty()) {
            // A line cannot end the fence: backticks are kept apart.
            let lines: Vec<String> = h.tail.iter().map(|l| l.replace('`', "\u{2035}")).collect();
            md.push_str(&format!(
                "<details><summary>{}: last lines</summary>\n\n```\n{}\n```\n\n</details>\n\n",
                cell(&h.host),
                lines.join("\n")
            ));
        }
    }
    md
}

fn flush_tables(paint: Paint, st: &mut State) {
    if st.tables.is_empty() {
        return;
    }
    let mut lines = Vec::new();
    for table in st.tables.take() {
        if st.printed || !lines.is_empty() {
            lines.push(String::new());
        }
        lines.extend(table.render(paint, None));
    }
    if st.inert {
        lines = lines.iter().map(|l| inert_line(l)).collect();
    }
    write_lines(st, &lines);
}

fn write_lines(st: &mut State, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut buf = String::new();
    for line in lines {
        buf.push_str(line);
        buf.push('\n');
    }
    // A closed pipe or a full disk must not stop a deploy; the engine carries on.
    let _ = st.out.write_all(buf.as_bytes());
    let _ = st.out.flush();
    st.printed = true;
}

impl Reporter for Plain {
    fn event(&self, event: &Event) {
        let now = self.clock.now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(event, Event::Row(_)) {
            flush_tables(self.opts.paint, &mut st);
        }
        Self::track(&mut st, now, event);
        if !self.shows(&st, event) {
            return;
        }
        let mut lines = self.render(&mut st, now, event);
        if st.inert {
            lines = lines.iter().map(|l| inert_line(l)).collect();
        }
        let lines = match st.github.is_some() {
            true => github_lines(&mut st, event, lines),
            false => lines,
        };
        write_lines(&mut st, &lines);
    }

    fn finish(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        flush_tables(self.opts.paint, &mut st);
        let _ = st.out.flush();
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        // Rows that no later event pushed out are still printed.
        let paint = self.opts.paint;
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        flush_tables(paint, st);
    }
}

/// ", group web, zone az-a" for a wave of an ordered group in a zone.
fn stage(group: &Option<String>, zone: &Option<String>) -> String {
    [("group", group), ("zone", zone)]
        .iter()
        .filter_map(|(what, name)| name.as_ref().map(|n| format!(", {what} {n}")))
        .collect()
}
