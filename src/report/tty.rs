//! The live view on a terminal: the wave, a spinner line per active host,
//! an overall bar; finished hosts scroll above it. Draws on stderr at a
//! bounded rate, so 200 hosts cost little.

use super::style::{self, Paint, clean, duration_ms, fit, host_list, hosts_word, pad, wrap};
use super::table::{RowTables, summary_lines};
use super::{Event, Level, OutputStream, Phase, Reporter};
use console::{Key, Term};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Redraws per second, whatever the number of events.
const REFRESH_HZ: u8 = 10;
/// How often a spinner moves and elapsed times count up.
const TICK: Duration = Duration::from_millis(200);
/// At most this many host lines; the rest of the active hosts are counted on one line.
const MAX_HOST_LINES: usize = 20;
/// Lines of a host's diagnostics shown with its failure.
const DIAGNOSTIC_LINES: usize = 12;
/// A summary folds `ok` hosts beyond this many into one line.
const SUMMARY_OK_ROWS: usize = 20;
/// In a run of more hosts than this, a host that ends ok gets no line of
/// its own above the bars (the overall bar counts it): at 1,000 hosts those
/// lines would scroll every failure out of sight. Failures keep their lines.
const OK_LINES_UP_TO: usize = 50;

pub struct Tty {
    mp: MultiProgress,
    term: Term,
    paint: Paint,
    quiet: bool,
    styles: Styles,
    state: Mutex<State>,
    /// Lines printed above the bars so far.
    printed: std::sync::atomic::AtomicUsize,
}

struct Styles {
    phase: ProgressStyle,
    upload: ProgressStyle,
    upload_unsized: ProgressStyle,
    overall: ProgressStyle,
    text: ProgressStyle,
}

impl Styles {
    fn new() -> Self {
        let style =
            |template: &str| ProgressStyle::with_template(template).expect("a valid template");
        Styles {
            phase: style("{spinner:.green} {prefix} {wide_msg} {elapsed:>4}"),
            upload: style(
                "{spinner:.green} {prefix} upload {wide_bar:.cyan/blue} \
                 {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12}",
            )
            .progress_chars("=> "),
            upload_unsized: style(
                "{spinner:.green} {prefix} upload {binary_bytes:>10} {binary_bytes_per_sec:>12}",
            ),
            overall: style("[{elapsed_precise}] {wide_bar:.green/dim} {pos}/{len} {msg}")
                .progress_chars("=>-"),
            text: style("{wide_msg}"),
        }
    }
}

#[derive(Default)]
struct State {
    command: String,
    release: Option<String>,
    hosts_total: usize,
    host_width: usize,
    max_lines: usize,
    overall: Option<ProgressBar>,
    wave: Option<ProgressBar>,
    more: Option<ProgressBar>,
    active: HashMap<String, Active>,
    /// Active hosts that have no line (more than `max_lines`), oldest first.
    waiting: VecDeque<String>,
    /// Finished hosts: true when ok. A host finishes again after a rollback.
    results: HashMap<String, bool>,
    tables: RowTables,
    /// The last diagnostic lines of hosts whose failure is still to be shown.
    diagnostics: HashMap<String, Vec<String>>,
    /// The bake's countdown line, while the canary bakes.
    countdown: Option<ProgressBar>,
    /// Each analysis gate's last sample in this bake, shown on the countdown.
    gates: std::collections::BTreeMap<String, String>,
    /// `[traffic]`: the weight last set, shown on the countdown.
    weight: Option<u8>,
    /// Every analysis sample, listed with the summary.
    samples: style::GateSamples,
}

struct Active {
    phase: Phase,
    /// Retrying a refused connect (until its next phase).
    retrying: bool,
    upload: Option<(u64, Option<u64>)>,
    since: Instant,
    bar: Option<ProgressBar>,
}

impl Tty {
    /// `paint` decides the colour of our own text; the bars follow
    /// `console::colors_enabled_stderr`, which the constructor sets to match.
    pub fn new(paint: Paint, quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(REFRESH_HZ)
        };
        Tty {
            mp: MultiProgress::with_draw_target(target),
            term: Term::stderr(),
            paint,
            quiet,
            styles: Styles::new(),
            printed: Default::default(),
            state: Mutex::new(State {
                host_width: 20,
                max_lines: MAX_HOST_LINES,
                ..State::default()
            }),
        }
    }

    /// Columns available to one printed line (one short of the edge, so no terminal wraps it).
    fn width(&self) -> usize {
        let cols = self
            .term
            .size_checked()
            .map_or(80, |(_, cols)| cols as usize);
        cols.saturating_sub(1).max(20)
    }

    /// Prints lines above the bars (or plainly, when there are none).
    fn above(&self, st: &State, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        self.printed
            .fetch_add(lines.len(), std::sync::atomic::Ordering::Relaxed);
        let has_bars = st.overall.is_some() || st.wave.is_some() || st.more.is_some();
        if has_bars || st.active.values().any(|a| a.bar.is_some()) {
            let _ = self.mp.println(lines.join("\n"));
        } else {
            for line in lines {
                let _ = self.term.write_line(line);
            }
        }
    }

    fn flush_tables(&self, st: &mut State) {
        if st.tables.is_empty() {
            return;
        }
        let width = self.width();
        let mut lines = Vec::new();
        for table in st.tables.take() {
            lines.extend(table.render(self.paint, Some(width)));
            lines.push(String::new());
        }
        lines.pop();
        self.above(st, &lines);
    }

    fn text_bar(&self, msg: String) -> ProgressBar {
        ProgressBar::hidden()
            .with_style(self.styles.text.clone())
            .with_message(msg)
    }

    /// Adds a line for a host, before the "more" line and the overall bar.
    fn host_bar(&self, st: &State, host: &str, active: &Active) -> ProgressBar {
        let bar = ProgressBar::hidden()
            .with_prefix(pad(host, st.host_width))
            .with_elapsed(active.since.elapsed());
        let bar = match st.more.as_ref().or(st.overall.as_ref()) {
            Some(next) => self.mp.insert_before(next, bar),
            None => self.mp.add(bar),
        };
        self.show_phase(&bar, active);
        bar.enable_steady_tick(TICK);
        bar
    }

    fn show_phase(&self, bar: &ProgressBar, active: &Active) {
        match active.upload {
            Some((bytes, Some(total))) if active.phase == Phase::Upload => {
                bar.set_style(self.styles.upload.clone());
                bar.set_length(total);
                bar.set_position(bytes);
            }
            Some((bytes, None)) if active.phase == Phase::Upload => {
                bar.set_style(self.styles.upload_unsized.clone());
                bar.set_position(bytes);
            }
            _ => {
                bar.set_style(self.styles.phase.clone());
                bar.set_message(self.paint.cyan(active.phase.as_str()));
            }
        }
    }

    /// Marks a host active in `phase`; gives it a line when there is room.
    fn activate(&self, st: &mut State, host: &str, phase: Phase) {
        if self.quiet {
            return;
        }
        if let Some(active) = st.active.get_mut(host) {
            let changed = active.phase != phase;
            active.phase = phase;
            if changed {
                active.retrying = false;
                if phase != Phase::Upload {
                    active.upload = None;
                }
                let unseen = active.bar.is_none();
                if let Some(bar) = &active.bar {
                    self.show_phase(bar, active);
                }
                // Counted on the "more" line, by phase.
                if unseen {
                    self.update_more(st);
                }
            }
            return;
        }
        let mut active = Active {
            phase,
            retrying: false,
            upload: None,
            since: Instant::now(),
            bar: None,
        };
        if st.active.values().filter(|a| a.bar.is_some()).count() < st.max_lines {
            active.bar = Some(self.host_bar(st, host, &active));
        } else {
            st.waiting.push_back(host.to_string());
        }
        st.active.insert(host.to_string(), active);
        self.update_more(st);
    }

    /// Drops a finished host's line and gives it to the longest-waiting host.
    fn deactivate(&self, st: &mut State, host: &str) {
        let Some(active) = st.active.remove(host) else {
            return;
        };
        match active.bar {
            Some(bar) => {
                bar.finish_and_clear();
                self.mp.remove(&bar);
            }
            None => st.waiting.retain(|h| h != host),
        }
        while st.active.values().filter(|a| a.bar.is_some()).count() < st.max_lines {
            let Some(next) = st.waiting.pop_front() else {
                break;
            };
            if let Some(active) = st.active.get(&next) {
                let bar = self.host_bar(st, &next, active);
                if let Some(active) = st.active.get_mut(&next) {
                    active.bar = Some(bar);
                }
            }
        }
        self.update_more(st);
    }

    fn update_more(&self, st: &mut State) {
        let text = || {
            let unseen = st.active.values().filter(|a| a.bar.is_none());
            self.paint
                .dim(&more_text(unseen.map(|a| (a.phase, a.retrying))))
        };
        match (st.waiting.len(), &st.more) {
            (0, None) => {}
            (0, Some(more)) => {
                more.finish_and_clear();
                self.mp.remove(more);
                st.more = None;
            }
            (_, Some(more)) => more.set_message(text()),
            (_, None) => {
                let more = self.text_bar(text());
                let more = match &st.overall {
                    Some(overall) => self.mp.insert_before(overall, more),
                    None => self.mp.add(more),
                };
                more.tick();
                st.more = Some(more);
            }
        }
    }

    fn update_overall(&self, st: &State) {
        let Some(overall) = &st.overall else {
            return;
        };
        let ok = st.results.values().filter(|ok| **ok).count();
        let failed = st.results.len() - ok;
        let left = st.hosts_total.saturating_sub(st.results.len());
        let failed = if failed > 0 {
            self.paint.red(&format!("{failed} failed"))
        } else {
            "0 failed".to_string()
        };
        overall.set_position(st.results.len() as u64);
        overall.set_message(format!("{ok} ok · {failed} · {left} left"));
    }

    fn clear_bars(&self, st: &mut State) {
        let bars = st
            .active
            .values_mut()
            .filter_map(|a| a.bar.take())
            .chain(st.more.take())
            .chain(st.wave.take())
            .chain(st.overall.take());
        for bar in bars {
            bar.finish_and_clear();
            self.mp.remove(&bar);
        }
        st.waiting.clear();
        let _ = self.mp.clear();
    }

    fn handle(&self, st: &mut State, event: &Event) {
        let paint = self.paint;
        let width = self.width();
        match event {
            // Said by a message too.
            Event::Relayed { .. } => {}
            Event::RunStarted {
                command,
                app,
                release,
                version,
                hosts,
            } => {
                st.command = command.clone();
                st.release = release.clone();
                st.hosts_total = hosts.len();
                let widest = hosts.iter().map(|h| console::measure_text_width(h)).max();
                st.host_width = widest.unwrap_or(4).clamp(4, (width / 4).max(10));
                // Lines given while connecting, before the names were known.
                for (host, active) in &st.active {
                    if let Some(bar) = &active.bar {
                        bar.set_prefix(pad(host, st.host_width));
                    }
                }
                let rows = self
                    .term
                    .size_checked()
                    .map_or(24, |(rows, _)| rows as usize);
                st.max_lines = rows.saturating_sub(6).clamp(1, MAX_HOST_LINES);
                if self.quiet {
                    return;
                }
                let mut header = format!("{command} {app}");
                if let Some(release) = release {
                    header.push_str(&format!(" {release}"));
                }
                if let Some(version) = version {
                    header.push_str(&format!(" ({version})"));
                }
                let overall = ProgressBar::with_draw_target(
                    Some(hosts.len() as u64),
                    ProgressDrawTarget::hidden(),
                )
                .with_style(self.styles.overall.clone());
                let overall = self.mp.add(overall);
                overall.enable_steady_tick(Duration::from_millis(500));
                st.overall = Some(overall);
                self.update_overall(st);
                // Printed above the bar just added, so it stays at the top of the run.
                header.push_str(&format!(" on {}", hosts_word(hosts.len())));
                self.above(st, &[paint.bold(&fit(&header, width))]);
            }
            Event::WaveStarted {
                wave,
                waves,
                kind,
                hosts,
                group,
                zone,
            } => {
                if self.quiet {
                    return;
                }
                // Hosts outside this wave are idle (locked, waiting their
                // turn): only hosts at work keep a line.
                let idle: Vec<String> = st
                    .active
                    .keys()
                    .filter(|h| !hosts.contains(h))
                    .cloned()
                    .collect();
                for host in idle {
                    self.deactivate(st, &host);
                }
                let stage: String = [group, zone]
                    .iter()
                    .filter_map(|name| name.as_ref().map(|n| format!(" {n}")))
                    .collect();
                let text = list_to_width(
                    &format!("wave {wave}/{waves} {kind}{stage}: "),
                    hosts,
                    width,
                );
                self.set_wave_line(st, paint.bold(&text));
            }
            Event::HostPhase { host, phase } => self.activate(st, host, *phase),
            Event::ConnectRetry {
                host,
                attempt,
                retries,
                error,
                ..
            } => {
                self.activate(st, host, Phase::Connect);
                let Some(active) = st.active.get_mut(host) else {
                    return;
                };
                let counted = !active.retrying && active.bar.is_none();
                active.retrying = true;
                if counted {
                    self.update_more(st);
                }
                if let Some(bar) = st.active.get(host).and_then(|a| a.bar.as_ref()) {
                    let text = format!(
                        "connect · retry {attempt}/{retries}: {}",
                        clean(error).replace('\n', " ")
                    );
                    bar.set_message(self.paint.yellow(&text));
                }
            }
            Event::UploadProgress { host, bytes, total } => {
                self.activate(st, host, Phase::Upload);
                if let Some(active) = st.active.get_mut(host) {
                    let first = active.upload.is_none();
                    active.upload = Some((*bytes, *total));
                    if let Some(bar) = &active.bar {
                        if first {
                            self.show_phase(bar, active);
                        } else {
                            bar.set_position(*bytes);
                        }
                    }
                }
            }
            Event::HostOutput { host, stream, line } => {
                let exec = st.command == "exec"
                    || st.active.get(host).map(|a| a.phase) == Some(Phase::Exec);
                if exec {
                    let indent = " ".repeat(st.host_width + 3);
                    let mut lines = Vec::new();
                    for line in clean(line).split('\n') {
                        let text = format!("{} | {line}", pad(host, st.host_width));
                        lines.extend(wrap(&text, width, &indent).into_iter().map(
                            |text| match stream {
                                OutputStream::Stdout => text,
                                OutputStream::Stderr => paint.yellow(&text),
                            },
                        ));
                    }
                    self.above(st, &lines);
                }
            }
            Event::HostDone {
                host,
                release,
                message,
                elapsed_ms,
                sent_bytes,
            } => {
                self.deactivate(st, host);
                st.results.insert(host.clone(), true);
                self.update_overall(st);
                if self.quiet || st.hosts_total > OK_LINES_UP_TO {
                    return;
                }
                let details = style::done_details(
                    release.as_ref(),
                    st.release.as_ref(),
                    *sent_bytes,
                    message.as_deref(),
                );
                let text = format!(
                    "{} ok in {}{details}",
                    pad(host, st.host_width),
                    duration_ms(*elapsed_ms)
                );
                let line = format!("{} {}", paint.green("✔"), fit(&text, width - 2));
                self.above(st, &[line]);
            }
            Event::HostFailed {
                host,
                phase,
                error,
                tail,
                elapsed_ms,
            } => {
                self.deactivate(st, host);
                st.results.insert(host.clone(), false);
                self.update_overall(st);
                // The error is wrapped, never cut; the tail is context, cut to fit.
                let error = clean(error).replace('\n', " ");
                let head = format!(
                    "{} {phase} failed after {}: {error}",
                    pad(host, st.host_width),
                    duration_ms(*elapsed_ms)
                );
                let mut lines = Vec::new();
                for (i, line) in wrap(&head, width - 2, "    ").into_iter().enumerate() {
                    let mark = if i == 0 { "✖" } else { " " };
                    lines.push(format!("{} {}", paint.red_bold(mark), paint.red(&line)));
                }
                for line in tail {
                    lines.push(paint.dim(&fit(&format!("    │ {}", clean(line)), width)));
                }
                if let Some(found) = st.diagnostics.remove(host.as_str()) {
                    lines.push(paint.dim("    diagnostics, last lines:"));
                    for line in found {
                        lines.push(paint.dim(&fit(&format!("    ┊ {}", clean(&line)), width)));
                    }
                }
                self.above(st, &lines);
            }
            Event::HostDiagnostics(found) => {
                let host = found.host.as_str();
                // Live, in a run: the last lines go with the host's failure.
                // Otherwise (status --last-failure) all of it is shown.
                let live = st.active.get(host).map(|a| a.phase) == Some(Phase::Diagnose);
                if live {
                    st.diagnostics
                        .insert(host.to_string(), found.last_lines(DIAGNOSTIC_LINES));
                    return;
                }
                let head = format!(
                    "{host}: diagnostics after the {} failure of {} ({}, by {}): {}",
                    found.phase,
                    found.release,
                    found.at,
                    found.by,
                    clean(&found.error).replace('\n', " ")
                );
                let mut lines: Vec<String> = wrap(&head, width, "  ")
                    .iter()
                    .map(|line| paint.yellow(line))
                    .collect();
                for line in found.lines() {
                    lines.extend(wrap(&format!("  │ {}", clean(&line)), width, "  │   "));
                }
                self.above(st, &lines);
            }
            Event::WaveDone {
                wave,
                ok,
                failed,
                skipped,
                interrupted,
            } => {
                if self.quiet {
                    return;
                }
                let text =
                    super::wave_done_text(&wave.to_string(), *ok, *failed, *skipped, *interrupted);
                self.above(st, &[paint.dim(&text)]);
            }
            Event::RollbackStarted { hosts, reason } => {
                let text = format!(
                    "↩ rolling back {} ({}): {}",
                    hosts_word(hosts.len()),
                    host_list(hosts, 5),
                    clean(reason).replace('\n', " ")
                );
                let lines: Vec<String> = wrap(&text, width, "  ")
                    .iter()
                    .map(|line| paint.yellow(line))
                    .collect();
                self.above(st, &lines);
                if !self.quiet {
                    let line = list_to_width("rollback: ", hosts, width);
                    self.set_wave_line(st, paint.yellow(&line));
                }
            }
            Event::BakeStarted {
                step,
                hosts,
                duration_ms: d,
                interval_ms,
            } => {
                if self.quiet {
                    return;
                }
                let text = style::bake_started(step, hosts, 5, *d, *interval_ms);
                self.above(st, &[text]);
                self.start_countdown(st, Duration::from_millis(*d));
            }
            Event::Analysis {
                gate,
                step,
                sample,
                count,
                value,
                verdict,
                dry_run,
                ..
            } => {
                st.samples.add(gate, step, value, verdict, *dry_run);
                st.gates
                    .insert(gate.clone(), format!("{gate} {value} {verdict}"));
                self.countdown_message(st);
                // Passing samples stay on the countdown line only.
                if verdict == "pass" {
                    return;
                }
                let text = style::analysis(gate, step, (*sample, *count), value, verdict, *dry_run);
                let text = match verdict.as_str() {
                    "fail" => paint.red(&text),
                    _ => paint.yellow(&text),
                };
                self.above(st, &[text]);
            }
            Event::BakeDone {
                step,
                healthy,
                interrupted,
                elapsed_ms,
                gate,
            } => {
                if let Some(bar) = st.countdown.take() {
                    bar.finish_and_clear();
                    self.mp.remove(&bar);
                }
                if self.quiet && *healthy {
                    return;
                }
                let text =
                    style::bake_done(step, *healthy, *interrupted, *elapsed_ms, gate.as_deref());
                let text = if *healthy {
                    paint.green(&text)
                } else if *interrupted {
                    paint.yellow(&text)
                } else {
                    paint.red(&text)
                };
                self.above(st, &[text]);
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
                st.weight = Some(*weight);
                self.countdown_message(st);
                let text = style::traffic_step(
                    (*step, *steps),
                    *weight,
                    canary,
                    color.as_deref(),
                    error.as_deref(),
                );
                let text = format!("⇄ {text}");
                let text = fit(&text, width);
                let text = match error {
                    None => paint.bold(&text),
                    Some(_) => paint.red(&text),
                };
                self.above(st, &[text]);
            }
            Event::Traffic {
                color,
                previous,
                reason,
            } => {
                let text = format!("⇄ {}", style::traffic(color, previous.as_deref(), reason));
                self.above(st, &[paint.bold(&fit(&text, width))]);
            }
            Event::HostSelfReverted {
                host,
                from,
                to,
                reason,
                at,
            } => {
                let text = style::self_reverted(from, to.as_deref(), reason, at.as_deref());
                self.above(st, &[paint.red(&fit(&format!("{host}: {text}"), width))]);
            }
            Event::Message { level, host, text } => {
                let label = match level {
                    Level::Info if self.quiet => return,
                    Level::Info => "",
                    Level::Warn => "warning: ",
                    Level::Error => "error: ",
                };
                let host = host.as_ref().map(|h| format!("{h}: ")).unwrap_or_default();
                let mut lines = Vec::new();
                for (i, line) in clean(text).split('\n').enumerate() {
                    let line = if i == 0 {
                        format!("{label}{host}{line}")
                    } else {
                        format!("  {line}")
                    };
                    lines.extend(
                        wrap(&line, width, "  ")
                            .into_iter()
                            .map(|line| match level {
                                Level::Info => line,
                                Level::Warn => paint.yellow(&line),
                                Level::Error => paint.red_bold(&line),
                            }),
                    );
                }
                self.above(st, &lines);
            }
            Event::Row(row) => st.tables.push(row),
            // Its rows and lines say it in text.
            Event::RolloutPlan(_) => {}
            Event::Summary(summary) => {
                self.clear_bars(st);
                self.flush_tables(st);
                let mut lines = vec![String::new()];
                let samples = st.samples.lines();
                lines.extend(samples.iter().map(|l| fit(l, width)));
                lines.extend(summary_lines(
                    summary,
                    paint,
                    Some(width),
                    Some(SUMMARY_OK_ROWS),
                ));
                self.above(st, &lines);
            }
        }
    }

    /// A line that counts the bake down to its end, redrawn on its own.
    fn start_countdown(&self, st: &mut State, length: Duration) {
        let end = Instant::now() + length;
        let left = move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let left = end.saturating_duration_since(Instant::now());
            let secs = left.as_secs() + u64::from(left.subsec_millis() > 0);
            let _ = write!(w, "{secs}s left");
        };
        st.gates.clear();
        let style = ProgressStyle::with_template("{spinner:.green} baking: {left}{msg}")
            .expect("a valid template")
            .with_key("left", left);
        let bar = self.mp.add(ProgressBar::new_spinner().with_style(style));
        bar.enable_steady_tick(TICK);
        st.countdown = Some(bar);
        self.countdown_message(st);
    }

    /// The countdown's tail: the traffic weight, each gate's last sample.
    fn countdown_message(&self, st: &State) {
        let Some(bar) = &st.countdown else {
            return;
        };
        let weight = st
            .weight
            .map(|w| format!(" · traffic {w}%"))
            .unwrap_or_default();
        let gates: Vec<&str> = st.gates.values().map(String::as_str).collect();
        let gates = match gates.as_slice() {
            [] => String::new(),
            gates => format!(" · gates: {}", gates.join(", ")),
        };
        bar.set_message(format!("{weight}{gates}"));
    }

    fn set_wave_line(&self, st: &mut State, text: String) {
        match &st.wave {
            Some(wave) => wave.set_message(text),
            None => {
                let wave = self.mp.insert(0, self.text_bar(text));
                wave.tick();
                st.wave = Some(wave);
            }
        }
    }
}

#[cfg(test)]
impl Tty {
    /// A live view that draws nothing, for tests of its state.
    pub(crate) fn hidden() -> Tty {
        let tty = Tty::new(Paint::plain(), false);
        tty.mp.set_draw_target(ProgressDrawTarget::hidden());
        tty
    }

    /// Whether a host's diagnostic lines wait for its failure to be shown.
    pub(crate) fn has_diagnostics_for(&self, host: &str) -> bool {
        let st = self.state.lock().unwrap();
        st.diagnostics.contains_key(host)
    }
}

impl Drop for Tty {
    /// A run that ends without `finish` (an error, a panic) leaves no bars behind.
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.clear_bars(&mut st);
    }
}

/// The line under the host lines: how many more hosts are at work, those
/// retrying a connect first, then how many are in each phase (in the
/// order of a run), e.g. `  … 980 more active: 3 retrying connect · 420
/// connect · 557 upload`.
fn more_text(unseen: impl Iterator<Item = (Phase, bool)>) -> String {
    let mut retrying = 0;
    let mut by_phase: Vec<(Phase, usize)> = Vec::new();
    for (phase, retry) in unseen {
        if retry {
            retrying += 1;
            continue;
        }
        match by_phase.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, n)) => *n += 1,
            None => by_phase.push((phase, 1)),
        }
    }
    by_phase.sort_by_key(|(p, _)| *p as usize);
    let total = retrying + by_phase.iter().map(|(_, n)| n).sum::<usize>();
    let mut parts = Vec::new();
    if retrying > 0 {
        parts.push(format!("{retrying} retrying connect"));
    }
    parts.extend(by_phase.iter().map(|(p, n)| format!("{n} {p}")));
    format!("  … {total} more active: {}", parts.join(" · "))
}

/// `prefix` and as many host names as fit in `width`, then `(+N more)`.
fn list_to_width(prefix: &str, hosts: &[String], width: usize) -> String {
    for shown in (1..=hosts.len()).rev() {
        let text = format!("{prefix}{}", host_list(hosts, shown));
        if console::measure_text_width(&text) <= width {
            return text;
        }
    }
    fit(&format!("{prefix}{}", host_list(hosts, 0)), width)
}

/// y/N on the terminal. Any key but `y` means no; Ctrl-C means no and is
/// passed on as SIGINT, so the run is interrupted as anywhere else.
fn ask(term: &Term, paint: Paint, question: &str) -> Option<bool> {
    term.write_str(&format!("{} [y/N] ", paint.bold(question)))
        .ok()?;
    let answer = loop {
        match term.read_key() {
            Ok(Key::Char('y' | 'Y')) => break Some(true),
            Ok(Key::Char(_) | Key::Enter | Key::Escape | Key::CtrlC) => break Some(false),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => break Some(false),
            Err(_) => break None,
        }
    };
    let shown = match answer {
        Some(true) => "yes",
        Some(false) => "no",
        None => "",
    };
    let _ = term.write_line(shown);
    answer
}

impl Reporter for Tty {
    fn event(&self, event: &Event) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(event, Event::Row(_)) {
            self.flush_tables(&mut st);
        }
        self.handle(&mut st, event);
    }

    fn confirm(&self, question: &str) -> Option<bool> {
        if !self.term.is_term() {
            return None;
        }
        // Never while holding `state`: other tasks keep reporting, and wait on the bars.
        self.mp.suspend(|| ask(&self.term, self.paint, question))
    }

    fn ask_secret(&self, prompt: &str) -> Option<String> {
        if !self.term.is_term() {
            return None;
        }
        self.mp
            .suspend(|| rpassword::prompt_password(prompt).ok())
            .filter(|answer| !answer.is_empty())
    }

    fn finish(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.clear_bars(&mut st);
        self.flush_tables(&mut st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("web{i:02}.example.com")).collect()
    }

    #[test]
    fn wave_lists_fit_the_width() {
        let text = list_to_width("wave 2/4 batch: ", &names(50), 80);
        assert!(console::measure_text_width(&text) <= 80, "{text}");
        assert!(text.ends_with("more)"), "{text}");
        assert_eq!(
            list_to_width("w: ", &names(2), 80),
            "w: web01.example.com, web02.example.com"
        );
    }

    #[test]
    fn the_bake_has_a_countdown_line_until_it_ends() {
        let tty = Tty::new(Paint::plain(), false);
        tty.mp.set_draw_target(ProgressDrawTarget::hidden());
        tty.event(&Event::BakeStarted {
            step: "canary bake".into(),
            hosts: vec!["web1".into()],
            duration_ms: 6_000,
            interval_ms: 2_000,
        });
        let line = tty
            .state
            .lock()
            .unwrap()
            .countdown
            .clone()
            .expect("a countdown");
        assert!(!line.is_finished(), "it counts down until the bake ends");
        for (gate, value) in [("errors", 1), ("latency", 0), ("errors", 0)] {
            tty.event(&Event::Analysis {
                gate: gate.into(),
                step: "canary bake".into(),
                sample: 1,
                count: 3,
                value: serde_json::json!(value),
                verdict: "pass".into(),
                dry_run: false,
                error: None,
            });
        }
        assert_eq!(
            line.message(),
            " · gates: errors 0 pass, latency 0 pass",
            "each gate's last value"
        );
        tty.event(&Event::BakeDone {
            step: "canary bake".into(),
            gate: None,
            healthy: false,
            interrupted: false,
            elapsed_ms: 2_100,
        });
        assert!(tty.state.lock().unwrap().countdown.is_none());
        assert!(line.is_finished());
    }

    /// 1,000 hosts: 20 host lines, the rest counted by phase on one line
    /// (hosts retrying a connect first); no line per host that ends ok, a
    /// line for each that fails.
    #[test]
    fn a_thousand_host_run_shows_counts_not_a_thousand_lines() {
        let tty = Tty::hidden();
        let hosts = names(1000);
        for host in &hosts {
            tty.event(&Event::HostPhase {
                host: host.clone(),
                phase: Phase::Connect,
            });
        }
        for host in &hosts[..3] {
            tty.event(&Event::ConnectRetry {
                host: host.clone(),
                attempt: 1,
                retries: 2,
                error: "connection refused".into(),
                delay_ms: 1_000,
            });
        }
        for host in &hosts[990..] {
            tty.event(&Event::ConnectRetry {
                host: host.clone(),
                attempt: 1,
                retries: 2,
                error: "connection refused".into(),
                delay_ms: 1_000,
            });
        }
        tty.event(&Event::RunStarted {
            command: "deploy".into(),
            app: "shop".into(),
            release: Some("r1".into()),
            version: None,
            hosts: hosts.clone(),
        });
        for host in &hosts[..600] {
            tty.event(&Event::HostPhase {
                host: host.clone(),
                phase: Phase::Upload,
            });
        }
        let more = |tty: &Tty| {
            let st = tty.state.lock().unwrap();
            st.more.as_ref().map(|m| m.message()).unwrap_or_default()
        };
        // Hosts 21..=1000 have no line: 580 of them upload, the other
        // 400 connect, 10 of those retrying.
        assert_eq!(
            more(&tty),
            "  … 980 more active: 10 retrying connect · 390 connect · 580 upload"
        );
        let printed = tty.printed.load(std::sync::atomic::Ordering::Relaxed);
        for host in &hosts[..998] {
            tty.event(&Event::HostDone {
                host: host.clone(),
                release: Some("r1".into()),
                message: None,
                elapsed_ms: 5,
                sent_bytes: Some(1 << 20),
            });
        }
        for host in &hosts[998..] {
            tty.event(&Event::HostFailed {
                host: host.clone(),
                phase: Phase::Connect,
                error: "connection refused".into(),
                tail: Vec::new(),
                elapsed_ms: 5,
            });
        }
        assert_eq!(
            tty.printed.load(std::sync::atomic::Ordering::Relaxed) - printed,
            2,
            "a line for each failure, none for the 998 ok"
        );
        let st = tty.state.lock().unwrap();
        assert!(st.active.is_empty() && st.more.is_none());
        assert_eq!(st.overall.as_ref().unwrap().position(), 1000);
    }

    /// The bars are hidden off a terminal; this drives every path of the
    /// live view (line cap, promotion, rollback, summary) without drawing.
    #[test]
    fn a_large_run_keeps_at_most_max_lines_host_lines() {
        let tty = Tty::new(Paint::plain(), false);
        tty.mp.set_draw_target(ProgressDrawTarget::hidden());
        let hosts = names(60);
        tty.event(&Event::RunStarted {
            command: "deploy".into(),
            app: "shop".into(),
            release: Some("r1".into()),
            version: None,
            hosts: hosts.clone(),
        });
        for host in &hosts {
            tty.event(&Event::HostPhase {
                host: host.clone(),
                phase: Phase::Upload,
            });
            tty.event(&Event::UploadProgress {
                host: host.clone(),
                bytes: 10,
                total: Some(100),
            });
        }
        {
            let st = tty.state.lock().unwrap();
            let lines = st.active.values().filter(|a| a.bar.is_some()).count();
            assert!(lines <= MAX_HOST_LINES);
            assert_eq!(lines + st.waiting.len(), 60);
            assert!(st.more.is_some());
        }
        for host in &hosts[..50] {
            tty.event(&Event::HostDone {
                host: host.clone(),
                release: None,
                message: None,
                elapsed_ms: 5,
                sent_bytes: None,
            });
        }
        {
            let st = tty.state.lock().unwrap();
            assert_eq!(st.active.len(), 10);
            assert!(st.waiting.is_empty());
            assert!(st.more.is_none());
            assert_eq!(st.overall.as_ref().unwrap().position(), 50);
        }
        tty.finish();
        assert!(tty.state.lock().unwrap().overall.is_none());
    }
}
