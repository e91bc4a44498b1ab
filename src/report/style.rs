//! How text looks: colours that are on or off by decision (never by
//! guessing inside a renderer), durations, truncation, host lists.

use crate::exit::Exit;
use console::Style;

/// Colours for one output stream. Off means not one escape code is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    color: bool,
}

impl Paint {
    pub fn new(color: bool) -> Self {
        Paint { color }
    }

    pub fn plain() -> Self {
        Paint::new(false)
    }

    pub fn is_color(self) -> bool {
        self.color
    }

    fn apply(self, style: Style, text: &str) -> String {
        if self.color {
            style.force_styling(true).apply_to(text).to_string()
        } else {
            text.to_string()
        }
    }

    pub fn green(self, text: &str) -> String {
        self.apply(Style::new().green(), text)
    }

    pub fn red(self, text: &str) -> String {
        self.apply(Style::new().red(), text)
    }

    pub fn red_bold(self, text: &str) -> String {
        self.apply(Style::new().red().bold(), text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.apply(Style::new().yellow(), text)
    }

    pub fn cyan(self, text: &str) -> String {
        self.apply(Style::new().cyan(), text)
    }

    pub fn bold(self, text: &str) -> String {
        self.apply(Style::new().bold(), text)
    }

    pub fn dim(self, text: &str) -> String {
        self.apply(Style::new().dim(), text)
    }
}

/// A byte count for people: `512 B`, `1.50 KiB`, `10.00 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// A duration for people: `850ms`, `3.2s`, `1m05s`, `2h03m`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// Text from a host or a hook, made safe to print: per line only what a
/// terminal would have left after a `\r`, no escape sequences (a remote
/// colour code or cursor movement must not reach a CI log or break the
/// live view), no other control characters.
pub fn clean(text: &str) -> String {
    let lines: Vec<String> = text
        .trim_end_matches(['\r', '\n'])
        .split('\n')
        .map(|line| {
            let line = line.trim_end_matches('\r');
            let visible = line.rsplit('\r').next().unwrap_or("");
            console::strip_ansi_codes(visible)
                .chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect()
        })
        .collect();
    lines.join("\n")
}

/// Cuts `text` to `width` terminal columns, ending in `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    console::truncate_str(text, width, "…").into_owned()
}

/// Breaks one line of text into lines of at most `width` columns, at
/// spaces where it can; lines after the first start with `indent`. For
/// text that must not be cut short on a terminal (errors, `exec` output).
pub fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let width = width.max(console::measure_text_width(indent) + 10);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    for word in text.split(' ') {
        let room = width - used;
        let word_width = console::measure_text_width(word);
        let sep = usize::from(used > 0);
        if used > 0 && sep + word_width > room {
            lines.push(std::mem::take(&mut line));
            line.push_str(indent);
            used = console::measure_text_width(indent);
        } else if used > 0 {
            line.push(' ');
            used += 1;
        }
        // A word wider than a whole line is cut into pieces.
        for c in word.chars() {
            let w = console::measure_text_width(c.encode_utf8(&mut [0; 4]));
            if used + w > width {
                lines.push(std::mem::take(&mut line));
                line.push_str(indent);
                used = console::measure_text_width(indent);
            }
            line.push(c);
            used += w;
        }
    }
    lines.push(line);
    lines
}

/// Pads (or cuts) `text` to exactly `width` columns.
pub fn pad(text: &str, width: usize) -> String {
    let cut = fit(text, width);
    let used = console::measure_text_width(&cut);
    format!("{cut}{}", " ".repeat(width.saturating_sub(used)))
}

/// `a, b, c (+17 more)`: at most `max` names.
pub fn host_list(hosts: &[String], max: usize) -> String {
    let shown = hosts
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match hosts.len().saturating_sub(max) {
        0 => shown,
        more => format!("{shown} (+{more} more)"),
    }
}

/// What follows "ok in <time>" on a host's done line: the release it is on
/// when that is not the run's, the bytes sent, and its message.
pub fn done_details(
    release: Option<&String>,
    run_release: Option<&String>,
    sent: Option<u64>,
    message: Option<&str>,
) -> String {
    let mut text = String::new();
    if let Some(release) = release.filter(|r| Some(*r) != run_release) {
        text.push_str(&format!(", on {release}"));
    }
    if let Some(sent) = sent {
        text.push_str(&format!(", sent {}", bytes(sent)));
    }
    if let Some(message) = message {
        text.push_str(&format!(": {}", clean(message).replace('\n', " ")));
    }
    text
}

/// `1 host`, `3 hosts`.
pub fn hosts_word(n: usize) -> String {
    if n == 1 {
        "1 host".to_string()
    } else {
        format!("{n} hosts")
    }
}

/// What a bake holds, in words: "the canary", "wave 2", "zone a".
fn baked(step: &str) -> &str {
    match step.strip_suffix(" bake") {
        Some("canary") | None => "the canary",
        Some(what) => what,
    }
}

/// The words of a bake's start, the same in every renderer.
pub fn bake_started(
    step: &str,
    hosts: &[String],
    max: usize,
    duration: u64,
    interval: u64,
) -> String {
    format!(
        "baking {} ({}) for {}: health every {}",
        baked(step),
        host_list(hosts, max),
        duration_ms(duration),
        duration_ms(interval)
    )
}

/// One sample of an analysis gate.
pub fn analysis(
    gate: &str,
    step: &str,
    (sample, count): (u32, u32),
    value: &serde_json::Value,
    verdict: &str,
    dry_run: bool,
) -> String {
    let dry = if dry_run { " (dry run)" } else { "" };
    format!("gate {gate}{dry} [{step} {sample}/{count}]: {verdict}, value {value}")
}

/// The words of a bake's end.
pub fn bake_done(
    step: &str,
    healthy: bool,
    interrupted: bool,
    elapsed: u64,
    gate: Option<&str>,
) -> String {
    let what = baked(step);
    if let Some(reason) = gate {
        format!("bake stopped after {}: {reason}", duration_ms(elapsed))
    } else if healthy {
        format!(
            "bake over: {what} stayed healthy for {}",
            duration_ms(elapsed)
        )
    } else if interrupted {
        format!("bake stopped after {}: interrupted", duration_ms(elapsed))
    } else {
        format!(
            "bake stopped after {}: {what} turned unhealthy",
            duration_ms(elapsed)
        )
    }
}

/// The words of traffic moving to `color`.
pub fn traffic(color: &str, previous: Option<&str>, reason: &str) -> String {
    let from = previous.map(|p| format!(" (from {p})")).unwrap_or_default();
    format!("traffic -> {color}{from}: {}", clean(reason))
}

/// Every analysis sample of a run, for its summary: one line per gate per
/// step, in the order they first sampled.
#[derive(Debug, Default)]
pub struct GateSamples {
    rows: Vec<(String, String, bool, Vec<String>)>,
}

impl GateSamples {
    pub fn add(
        &mut self,
        gate: &str,
        step: &str,
        value: &serde_json::Value,
        verdict: &str,
        dry_run: bool,
    ) {
        let sample = format!("{value} {verdict}");
        match self
            .rows
            .iter_mut()
            .find(|(g, s, ..)| g == gate && s == step)
        {
            Some(row) => row.3.push(sample),
            None => self
                .rows
                .push((gate.to_string(), step.to_string(), dry_run, vec![sample])),
        }
    }

    /// `gate errors, traffic 10%: 0 pass, 0 pass`; none without samples.
    pub fn lines(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|(gate, step, dry_run, samples)| {
                let dry = if *dry_run { " (dry run)" } else { "" };
                format!("gate {gate}, {step}{dry}: {}", clean(&samples.join(", ")))
            })
            .collect()
    }
}

/// `[traffic]`: a weight set (or not).
pub fn traffic_step(
    (step, steps): (Option<usize>, usize),
    weight: u8,
    canary: &[String],
    color: Option<&str>,
    error: Option<&str>,
) -> String {
    let which = match (step, color) {
        (Some(n), _) => format!(" (step {n} of {steps})"),
        (None, _) if weight == 0 => " (the rollout stopped)".to_string(),
        (None, Some(_)) => String::new(),
        (None, None) => " (every host is on the new release)".to_string(),
    };
    // Blue-green: the weight is a colour's share, new release or old.
    let to = color.unwrap_or("the new release");
    let on = match canary {
        [] => "no host".to_string(),
        hosts => hosts.join(" "),
    };
    match error {
        None => format!("traffic {weight}% to {to}{which}: {on}"),
        Some(e) => format!(
            "traffic {weight}%{which}: set_local did not pass: {}",
            clean(e)
        ),
    }
}

/// A host's watchdog put it back by itself.
pub fn self_reverted(from: &str, to: Option<&str>, reason: &str, at: Option<&str>) -> String {
    let to = to.map_or_else(|| "no release".to_string(), str::to_string);
    let at = at.map(|a| format!(" at {a}")).unwrap_or_default();
    format!(
        "went back by itself{at}, from {from} to {to}: {}",
        clean(reason)
    )
}

/// What an exit code of `command` means, in the words of the contract.
/// `exec` changes no release: its failures are its command's.
pub fn exit_meaning(command: &str, code: i32) -> &'static str {
    match (command, Exit::of_code(code)) {
        ("exec", Some(Exit::Failed)) => {
            "the command failed on some hosts (or they were not reached)"
        }
        ("exec", Some(Exit::Interrupted)) => "interrupted; the command was stopped on every host",
        (_, Some(exit)) => exit.meaning(),
        (_, None) => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(3_240), "3.2s");
        assert_eq!(duration_ms(65_000), "1m05s");
        assert_eq!(duration_ms(7_380_000), "2h03m");
    }

    #[test]
    fn long_host_lists_are_cut() {
        let hosts: Vec<String> = (1..=12).map(|i| format!("web{i:02}")).collect();
        assert_eq!(host_list(&hosts[..2], 5), "web01, web02");
        assert_eq!(
            host_list(&hosts, 3),
            "web01, web02, web03 (+9 more)".to_string()
        );
    }

    #[test]
    fn fit_and_pad_count_columns() {
        assert_eq!(fit("web01.example.com", 8), "web01.e…");
        assert_eq!(pad("web1", 6), "web1  ");
        assert_eq!(pad("web01.example.com", 6), "web01…");
    }

    #[test]
    fn remote_text_loses_carriage_returns_and_escapes() {
        assert_eq!(clean("10%\r50%\r100%\r\n"), "100%");
        assert_eq!(clean("\x1b[31mred\x1b[0m \x1b[2Kdone\x07"), "red done");
        assert_eq!(clean("a\r\nb"), "a\nb");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_indents() {
        let lines = wrap(
            "error: cannot reach web01.example.com over ssh port 22",
            24,
            "  ",
        );
        assert_eq!(
            lines,
            vec![
                "error: cannot reach",
                "  web01.example.com over",
                "  ssh port 22"
            ]
        );
        for line in wrap(&"x".repeat(50), 20, "  ") {
            assert!(line.len() <= 20, "{line}");
        }
    }

    #[test]
    fn no_color_means_no_escape_codes() {
        assert_eq!(Paint::plain().red("x"), "x");
        assert!(Paint::new(true).red("x").contains('\x1b'));
    }
}

#[cfg(test)]
mod bake_words {
    use super::*;

    #[test]
    fn a_bake_says_what_it_holds() {
        let hosts = ["web2".to_string(), "web3".to_string()];
        assert!(
            bake_started("wave 2 bake", &hosts, 5, 30_000, 2_000)
                .starts_with("baking wave 2 (web2, web3) for 30")
        );
        assert!(
            bake_started("canary bake", &hosts[..1], 5, 30_000, 2_000)
                .starts_with("baking the canary (web2)")
        );
        assert!(
            bake_done("zone a bake", true, false, 1_000, None)
                .starts_with("bake over: zone a stayed healthy")
        );
        assert_eq!(
            bake_done(
                "wave 2 bake",
                false,
                false,
                1_000,
                Some("gate errors failed")
            ),
            format!(
                "bake stopped after {}: gate errors failed",
                duration_ms(1_000)
            )
        );
    }
}
