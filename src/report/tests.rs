//! The renderers fed the same scripted runs: what a CI log, a pipe and a
//! JSON reader get.

use super::*;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A writer the test can read back after the renderer wrote to it.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const RELEASE: &str = "20250301T120000Z-ab12cd34";
const PREVIOUS: &str = "20250228T090000Z-99aa00bb";

fn s(text: &str) -> String {
    text.to_string()
}

fn phase(host: &str, phase: Phase) -> Event {
    Event::HostPhase {
        host: s(host),
        phase,
    }
}

fn upload(host: &str, bytes: u64, total: Option<u64>) -> Event {
    Event::UploadProgress {
        host: s(host),
        bytes,
        total,
    }
}

fn done(host: &str, release: &str, message: Option<&str>, elapsed_ms: u64) -> Event {
    Event::HostDone {
        host: s(host),
        release: Some(s(release)),
        message: message.map(s),
        elapsed_ms,
        sent_bytes: None,
    }
}

fn host_summary(host: &str, result: HostResult, error: Option<&str>, ms: u64) -> HostSummary {
    HostSummary {
        host: s(host),
        result,
        release: Some(s(PREVIOUS)),
        error: error.map(s),
        elapsed_ms: ms,
        sent_bytes: None,
        tail: Vec::new(),
    }
}

/// A 3-host deploy: the canary passes, web2's before_switch hook fails,
/// and the two switched hosts are rolled back. Each step: ms since the last, event.
fn deploy_with_one_failure() -> Vec<(i64, Event)> {
    const MIB: u64 = 1024 * 1024;
    let web3 = "web3.example.com";
    vec![
        (
            0,
            Event::RunStarted {
                command: s("deploy"),
                app: s("shop-api"),
                release: Some(s(RELEASE)),
                version: Some(s("1.4.2")),
                hosts: vec![s("web1"), s("web2"), s(web3)],
            },
        ),
        (
            5,
            Event::Message {
                level: Level::Warn,
                host: None,
                text: s("host_key_checking = off: host keys are not verified"),
            },
        ),
        (
            10,
            Event::WaveStarted {
                wave: 1,
                waves: 2,
                kind: s("canary"),
                hosts: vec![s("web1")],
                group: None,
                zone: None,
            },
        ),
        (0, phase("web1", Phase::Connect)),
        (120, phase("web1", Phase::Upload)),
        (0, upload("web1", 0, Some(8 * MIB))),
        (250, upload("web1", MIB, Some(8 * MIB))),
        (250, upload("web1", 2 * MIB, Some(8 * MIB))),
        (250, upload("web1", 3 * MIB, Some(8 * MIB))),
        (250, upload("web1", 5 * MIB, Some(8 * MIB))),
        (250, upload("web1", 7 * MIB, Some(8 * MIB))),
        (250, upload("web1", 8 * MIB, Some(8 * MIB))),
        (50, phase("web1", Phase::Unpack)),
        (300, phase("web1", Phase::BeforeSwitch)),
        (
            200,
            Event::HostOutput {
                host: s("web1"),
                stream: OutputStream::Stdout,
                line: s("migrations: up to date"),
            },
        ),
        (10, phase("web1", Phase::Switch)),
        (20, phase("web1", Phase::AfterSwitch)),
        (400, phase("web1", Phase::Health)),
        (
            1200,
            Event::HostDone {
                host: s("web1"),
                release: Some(s(RELEASE)),
                message: None,
                elapsed_ms: 3_110,
                sent_bytes: Some(8 * MIB),
            },
        ),
        (
            0,
            Event::WaveDone {
                wave: 1,
                ok: 1,
                failed: 0,
                skipped: 0,
                interrupted: false,
            },
        ),
        (
            0,
            Event::WaveStarted {
                wave: 2,
                waves: 2,
                kind: s("batch"),
                hosts: vec![s("web2"), s(web3)],
                group: None,
                zone: None,
            },
        ),
        (0, phase("web2", Phase::Connect)),
        (0, phase(web3, Phase::Connect)),
        (100, phase("web2", Phase::Upload)),
        (20, phase(web3, Phase::Upload)),
        (1000, upload(web3, 3 * MIB, None)),
        (1000, upload(web3, 6 * MIB, None)),
        (3500, upload(web3, 18 * MIB, None)),
        (0, upload("web2", 8 * MIB, Some(8 * MIB))),
        (100, phase("web2", Phase::Unpack)),
        (200, phase("web2", Phase::BeforeSwitch)),
        (
            300,
            Event::HostOutput {
                host: s("web2"),
                stream: OutputStream::Stderr,
                line: s("error: pending migration 0042_add_index"),
            },
        ),
        (100, phase(web3, Phase::Unpack)),
        (200, phase(web3, Phase::BeforeSwitch)),
        (100, phase(web3, Phase::Switch)),
        (
            50,
            Event::HostFailed {
                host: s("web2"),
                phase: Phase::BeforeSwitch,
                error: s("hook `./bin/migrate --check` exited with 1"),
                tail: vec![
                    s("checking migrations"),
                    s("error: pending migration 0042_add_index"),
                ],
                elapsed_ms: 6_420,
            },
        ),
        (
            0,
            Event::WaveDone {
                wave: 2,
                ok: 0,
                failed: 1,
                skipped: 0,
                interrupted: false,
            },
        ),
        (
            10,
            Event::RollbackStarted {
                hosts: vec![s("web1"), s(web3)],
                reason: s("web2 failed and max_failures is 0"),
            },
        ),
        (0, phase("web1", Phase::Rollback)),
        (0, phase(web3, Phase::Rollback)),
        (300, done("web1", PREVIOUS, Some("rolled back"), 300)),
        (40, done(web3, PREVIOUS, Some("rolled back"), 340)),
        (
            0,
            Event::Summary(Summary {
                command: s("deploy"),
                exit_code: 5,
                release: Some(s(RELEASE)),
                ok: 0,
                failed: 1,
                rolled_back: 2,
                skipped: 0,
                unreachable: 0,
                elapsed_ms: 12_480,
                hosts: vec![
                    HostSummary {
                        sent_bytes: Some(8 * MIB),
                        tail: Vec::new(),
                        ..host_summary("web1", HostResult::RolledBack, None, 3_410)
                    },
                    host_summary(
                        "web2",
                        HostResult::Failed,
                        Some("before_switch: hook `./bin/migrate --check` exited with 1"),
                        6_420,
                    ),
                    host_summary(web3, HostResult::RolledBack, None, 7_130),
                ],
                log_file: Some(s("/home/ops/.local/state/hoist/shop-api.log")),
            }),
        ),
    ]
}

fn status_row(host: &str, release: &str, version: &str, marked: bool) -> Event {
    Event::Row(Row {
        table: "status",
        cells: vec![
            ("host", json!(host)),
            ("release", json!(release)),
            ("version", json!(version)),
            ("lock", json!(null)),
            ("reachable", json!(true)),
        ],
        marked,
    })
}

/// `hoist status` on three hosts, one on an older release.
fn status() -> Vec<(i64, Event)> {
    vec![
        (
            0,
            Event::RunStarted {
                command: s("status"),
                app: s("shop-api"),
                release: None,
                version: None,
                hosts: vec![s("web1"), s("web2"), s("web3.example.com")],
            },
        ),
        (0, phase("web1", Phase::Connect)),
        (0, phase("web2", Phase::Connect)),
        (0, phase("web3.example.com", Phase::Connect)),
        (200, status_row("web1", RELEASE, "1.4.2", false)),
        (0, status_row("web2", PREVIOUS, "1.4.1", true)),
        (0, status_row("web3.example.com", RELEASE, "1.4.2", false)),
        (
            0,
            Event::Summary(Summary {
                command: s("status"),
                exit_code: 0,
                release: None,
                ok: 3,
                failed: 0,
                rolled_back: 0,
                skipped: 0,
                unreachable: 0,
                elapsed_ms: 210,
                hosts: vec![],
                log_file: None,
            }),
        ),
    ]
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at("2025-03-01T12:00:00Z"))
}

fn play(reporter: &dyn Reporter, clock: &ManualClock, script: &[(i64, Event)]) {
    for (ms, event) in script {
        clock.advance_ms(*ms);
        reporter.event(event);
    }
    reporter.finish();
}

fn plain_output(verbosity: Verbosity, color: bool, script: &[(i64, Event)]) -> String {
    let buffer = Buffer::default();
    let clock = clock();
    let opts = PlainOptions {
        verbosity,
        paint: Paint::new(color),
        stamp: Stamp::Time,
        tables: true,
    };
    let plain = Plain::new(Box::new(buffer.clone()), opts, clock.clone());
    play(&plain, &clock, script);
    buffer.text()
}

fn json_output(script: &[(i64, Event)]) -> String {
    let buffer = Buffer::default();
    let clock = clock();
    let json = Json::new(Box::new(buffer.clone()), clock.clone());
    play(&json, &clock, script);
    buffer.text()
}

#[test]
fn plain_deploy_with_one_failure() {
    let out = plain_output(Verbosity::Normal, false, &deploy_with_one_failure());
    insta::assert_snapshot!(out);
}

#[test]
fn plain_verbose_shows_hook_output() {
    let out = plain_output(Verbosity::Verbose, false, &deploy_with_one_failure());
    assert!(
        out.contains("web1              | migrations: up to date"),
        "{out}"
    );
    assert!(out.contains("! error: pending migration"), "{out}");
    let normal = plain_output(Verbosity::Normal, false, &deploy_with_one_failure());
    assert!(!normal.contains("migrations: up to date"), "{normal}");
}

#[test]
fn plain_without_color_has_no_carriage_return_or_escape() {
    for verbosity in [Verbosity::Quiet, Verbosity::Normal, Verbosity::Verbose] {
        for script in [deploy_with_one_failure(), status()] {
            let out = plain_output(verbosity, false, &script);
            assert!(!out.contains('\r'), "{out}");
            assert!(!out.contains('\x1b'), "{out}");
        }
    }
}

#[test]
fn plain_with_color_forced_colors_but_never_moves_the_cursor() {
    let out = plain_output(Verbosity::Normal, true, &deploy_with_one_failure());
    assert!(out.contains("\x1b["), "{out}");
    assert!(!out.contains('\r'));
    // Only SGR sequences (ending in `m`): no cursor movement, no clearing.
    let mut rest = out.as_str();
    while let Some(at) = rest.find("\x1b[") {
        rest = &rest[at + 2..];
        let end = rest.find(|c: char| c.is_ascii_alphabetic()).unwrap();
        assert_eq!(&rest[end..=end], "m", "{rest}");
    }
}

#[test]
fn plain_quiet_keeps_failures_and_the_summary_only() {
    let out = plain_output(Verbosity::Quiet, false, &deploy_with_one_failure());
    insta::assert_snapshot!(out);
    assert!(!out.contains("connect"));
    assert!(!out.contains("upload"));
    assert!(!out.contains("wave"));
    assert!(out.contains("web2              failed in before_switch"));
    assert!(out.contains("    | error: pending migration 0042_add_index"));
    assert!(out.contains("warning: host_key_checking = off"));
    assert!(out.contains("deploy: 1 failed, 2 rolled back of 3 hosts in 12.5s\nexit 5: "));
}

#[test]
fn plain_upload_lines_are_throttled() {
    let out = plain_output(Verbosity::Normal, false, &deploy_with_one_failure());
    let web1 = out
        .lines()
        .filter(|l| l.contains("web1") && l.contains("upload "))
        .count();
    assert_eq!(web1, 4, "one line per quarter:\n{out}");
    let web3 = out
        .lines()
        .filter(|l| l.contains("web3") && l.contains("upload "))
        .count();
    assert_eq!(web3, 1, "unknown total: at most one line per 5s:\n{out}");
}

#[test]
fn plain_rows_form_an_aligned_table() {
    let out = plain_output(Verbosity::Normal, false, &status());
    insta::assert_snapshot!(out);
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("HOST"))
        .take(4)
        .collect();
    assert_eq!(table.len(), 4, "{out}");
    let column = table[0].find("RELEASE").unwrap();
    for line in &table[1..] {
        assert!(line[column..].starts_with("2025"), "{line}");
    }
    assert!(table[2].ends_with('*') && !table[1].ends_with('*'), "{out}");
}

#[test]
fn plain_quiet_still_prints_tables() {
    let out = plain_output(Verbosity::Quiet, false, &status());
    assert!(out.starts_with("HOST"), "{out}");
    assert!(!out.contains("connect"));
}

#[test]
fn plain_rows_without_a_later_event_print_at_finish() {
    let mut script = status();
    script.pop();
    let out = plain_output(Verbosity::Quiet, false, &script);
    assert_eq!(out.lines().count(), 4, "{out}");
}

#[test]
fn json_lines_parse_and_end_with_the_summary() {
    let out = json_output(&deploy_with_one_failure());
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for line in &lines {
        assert!(line["event"].is_string(), "{line}");
        let ts = line["ts"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(
            ts.ends_with('Z') && ts.len() == "2025-03-01T12:00:00.000Z".len(),
            "{ts}"
        );
    }
    assert_eq!(lines.first().unwrap()["event"], "run_started");
    assert_eq!(lines.first().unwrap()["ts"], "2025-03-01T12:00:00.000Z");
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["exit_code"], 5);
    assert_eq!(summary["hosts"][1]["result"], "failed");
    // Bytes sent: on the host's line and in its summary row, absent when none.
    assert_eq!(summary["hosts"][0]["sent_bytes"], 8 * 1024 * 1024);
    assert!(summary["hosts"][1].get("sent_bytes").is_none());
    let done = lines
        .iter()
        .find(|l| l["event"] == "host_done" && l["host"] == "web1")
        .unwrap();
    assert_eq!(done["sent_bytes"], 8 * 1024 * 1024);
}

#[test]
fn json_keeps_event_first_and_ts_second() {
    let out = json_output(&deploy_with_one_failure());
    for line in out.lines() {
        assert!(line.starts_with(r#"{"event":""#), "{line}");
        let after_tag = &line[line[10..].find('"').unwrap() + 11..];
        assert!(after_tag.starts_with(r#","ts":""#), "{line}");
    }
}

#[test]
fn json_throttles_uploads_but_keeps_the_last() {
    let out = json_output(&deploy_with_one_failure());
    let web1: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "upload_progress" && v["host"] == "web1")
        .collect();
    // The script sends 7 at 250 ms apart: all are due; the limit is per 250 ms.
    assert_eq!(web1.len(), 7);
    assert_eq!(web1.last().unwrap()["bytes"], 8 * 1024 * 1024);

    let clock = clock();
    let buffer = Buffer::default();
    let json = Json::new(Box::new(buffer.clone()), clock.clone());
    for bytes in 0..=100 {
        clock.advance_ms(10);
        json.event(&upload("web1", bytes, Some(100)));
    }
    let sent: Vec<serde_json::Value> = buffer
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(sent.len() <= 6, "{} lines", sent.len());
    assert_eq!(sent.last().unwrap()["bytes"], 100);
}

#[test]
fn json_rows_are_flat_objects_with_their_table() {
    let out = json_output(&status());
    let row: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "row")
        .unwrap();
    assert_eq!(row["table"], "status");
    assert_eq!(row["host"], "web1");
    assert_eq!(row["lock"], serde_json::Value::Null);
    assert_eq!(row["marked"], false);
}

#[test]
fn tee_sends_every_event_to_both_and_logs_the_answer() {
    let buffer = Buffer::default();
    let clock = clock();
    let log = PlainOptions {
        verbosity: Verbosity::Verbose,
        paint: Paint::plain(),
        stamp: Stamp::Full,
        tables: true,
    };
    let recorder = Arc::new(Recorder::default());
    let tee = Tee {
        main: recorder.clone(),
        copy: Arc::new(Plain::new(Box::new(buffer.clone()), log, clock.clone())),
    };
    play(&tee, &clock, &deploy_with_one_failure());
    assert_eq!(tee.confirm("promote the canary?"), None);
    let text = buffer.text();
    assert_eq!(
        recorder.0.lock().unwrap().len(),
        deploy_with_one_failure().len()
    );
    assert!(
        text.contains("2025-03-01T12:00:00.000Z -                 deploy shop-api"),
        "{text}"
    );
    assert!(
        text.contains("| migrations: up to date"),
        "hook output is always logged"
    );
    assert!(
        text.ends_with("promote the canary? not asked (no terminal)\n"),
        "{text}"
    );
}

#[test]
fn json_writes_nothing_after_the_summary() {
    let mut script = status();
    script.push((
        5,
        Event::Message {
            level: Level::Info,
            host: None,
            text: s("late"),
        },
    ));
    let out = json_output(&script);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "summary");
}

#[test]
fn plain_strips_carriage_returns_and_escapes_from_remote_output() {
    let script = vec![
        (
            0,
            Event::HostOutput {
                host: s("web1"),
                stream: OutputStream::Stdout,
                line: s("\x1b[32mfetching\x1b[0m 10%\r50%\r100%\r\n"),
            },
        ),
        (
            0,
            Event::HostFailed {
                host: s("web1"),
                phase: Phase::AfterSwitch,
                error: s("hook exited with 1"),
                tail: vec![s("\x1b[31mFATAL\x1b[0m \x1b[2Aboom\r")],
                elapsed_ms: 10,
            },
        ),
    ];
    let out = plain_output(Verbosity::Verbose, false, &script);
    assert!(!out.contains('\r') && !out.contains('\x1b'), "{out:?}");
    assert!(out.contains("web1  | 100%"), "{out}");
    assert!(out.contains("    | FATAL boom"), "{out}");
    let colored = plain_output(Verbosity::Verbose, true, &script);
    assert!(
        !colored.contains("\x1b[2A"),
        "remote cursor movement: {colored:?}"
    );
}

fn github_output(script: &[(i64, Event)]) -> (String, String) {
    let (log, summary) = (Buffer::default(), Buffer::default());
    let clock = clock();
    let opts = PlainOptions {
        verbosity: Verbosity::Normal,
        paint: Paint::new(false),
        stamp: Stamp::Time,
        tables: true,
    };
    let plain = Plain::new(Box::new(log.clone()), opts, clock.clone())
        .github(Some(Box::new(summary.clone())));
    play(&plain, &clock, script);
    (log.text(), summary.text())
}

#[test]
fn github_actions_groups_waves_annotates_failures_and_writes_the_step_summary() {
    let (log, summary) = github_output(&deploy_with_one_failure());
    insta::assert_snapshot!("github_actions_log", log);
    insta::assert_snapshot!("github_actions_step_summary", summary);
    let opened = log.matches("::group::").count();
    assert_eq!(opened, 2, "a group per wave");
    assert_eq!(
        log.matches("::endgroup::").count(),
        opened,
        "every group closed"
    );
}

#[test]
fn github_annotations_escape_what_would_end_the_command() {
    let script = vec![
        (
            0,
            Event::RunStarted {
                command: s("deploy"),
                app: s("shop-api"),
                release: Some(s(RELEASE)),
                version: None,
                hosts: vec![s("db:1,a")],
            },
        ),
        (
            10,
            Event::HostFailed {
                host: s("db:1,a"),
                phase: Phase::Health,
                error: s("100% down\nsecond line"),
                tail: vec![],
                elapsed_ms: 10,
            },
        ),
    ];
    let (log, _) = github_output(&script);
    assert!(
        log.contains("::error title=db%3A1%2Ca::health: 100%25 down\n"),
        "{log}"
    );
}

/// A canary that bakes, then the blue-green traffic switch.
fn bake_and_traffic() -> Vec<(i64, Event)> {
    vec![
        (
            0,
            Event::RunStarted {
                command: s("deploy"),
                app: s("shop-api"),
                release: Some(s(RELEASE)),
                version: None,
                hosts: vec![s("web1"), s("web2")],
            },
        ),
        (
            10,
            Event::BakeStarted {
                step: "canary bake".into(),
                hosts: vec![s("web1")],
                duration_ms: 300_000,
                interval_ms: 2_000,
            },
        ),
        (
            300_000,
            Event::BakeDone {
                step: "canary bake".into(),
                gate: None,
                healthy: true,
                interrupted: false,
                elapsed_ms: 300_000,
            },
        ),
        (
            0,
            Event::BakeStarted {
                step: "canary bake".into(),
                hosts: vec![s("web1")],
                duration_ms: 6_000,
                interval_ms: 2_000,
            },
        ),
        (
            2_100,
            Event::BakeDone {
                step: "canary bake".into(),
                gate: None,
                healthy: false,
                interrupted: false,
                elapsed_ms: 2_100,
            },
        ),
        (
            0,
            Event::BakeStarted {
                step: "canary bake".into(),
                hosts: vec![s("web1")],
                duration_ms: 6_000,
                interval_ms: 2_000,
            },
        ),
        (
            1_500,
            Event::BakeDone {
                step: "canary bake".into(),
                gate: None,
                healthy: false,
                interrupted: true,
                elapsed_ms: 1_500,
            },
        ),
        (
            10,
            Event::Traffic {
                color: s("green"),
                previous: Some(s("blue")),
                reason: s("the deploy's switch"),
            },
        ),
    ]
}

#[test]
fn plain_bake_and_traffic_lines() {
    let out = plain_output(Verbosity::Normal, false, &bake_and_traffic());
    insta::assert_snapshot!(out);
    let json = json_output(&bake_and_traffic());
    assert!(json.contains(r#""event":"bake_started","ts":"#), "{json}");
    assert!(json.contains(r#""healthy":false"#), "{json}");
    assert!(json.contains(r#""event":"traffic""#), "{json}");
}

/// Answers every secret question with the same word.
struct Answers(&'static str);

impl Reporter for Answers {
    fn event(&self, _: &Event) {}
    fn ask_secret(&self, _: &str) -> Option<String> {
        Some(self.0.to_string())
    }
}

#[test]
fn tee_logs_that_a_secret_was_asked_never_the_answer() {
    let buffer = Buffer::default();
    let clock = clock();
    let log = PlainOptions {
        verbosity: Verbosity::Verbose,
        paint: Paint::plain(),
        stamp: Stamp::Full,
        tables: true,
    };
    let tee = Tee {
        main: Arc::new(Answers("hunter2")),
        copy: Arc::new(Plain::new(Box::new(buffer.clone()), log, clock.clone())),
    };
    let answer = tee.ask_secret("[sudo] password to become root on the hosts: ");
    assert_eq!(answer.as_deref(), Some("hunter2"));
    let text = buffer.text();
    assert!(
        text.contains("password to become root on the hosts: (answered; not recorded)"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));
    let nobody = Tee {
        main: Arc::new(Recorder::default()),
        copy: Arc::new(Plain::new(Box::new(buffer.clone()), log, clock)),
    };
    assert_eq!(nobody.ask_secret("password: "), None);
}

/// A canary whose first connect was refused, which then failed its health
/// check: its diagnostics come before its failure and the rollback; a
/// third host was unreachable and skipped.
fn canary_with_diagnostics() -> Vec<(i64, Event)> {
    let diagnostics = Diagnostics {
        host: s("web1"),
        release: s(RELEASE),
        phase: Phase::Health,
        error: s("health check failed: exit code 1"),
        at: s("2025-03-01T12:00:05Z"),
        by: s("ops@laptop"),
        commands: vec![
            Diagnostic {
                command: s("journalctl -u shop-api -n 3 --no-pager"),
                exit_code: Some(0),
                error: None,
                output: vec![s("started"), s("panic: no database"), s("exited")],
            },
            Diagnostic {
                command: s("df -h /"),
                exit_code: Some(1),
                error: None,
                output: vec![s("df: /: no such device")],
            },
        ],
    };
    vec![
        (
            0,
            Event::RunStarted {
                command: s("deploy"),
                app: s("shop-api"),
                release: Some(s(RELEASE)),
                version: None,
                hosts: vec![s("web1"), s("web2"), s("web3")],
            },
        ),
        (0, phase("web1", Phase::Connect)),
        (
            10,
            Event::ConnectRetry {
                host: s("web1"),
                attempt: 1,
                retries: 2,
                error: s("cannot reach web1: Connection refused (os error 111)"),
                delay_ms: 1_200,
            },
        ),
        (1_300, phase("web1", Phase::Health)),
        (500, phase("web1", Phase::Diagnose)),
        (300, Event::HostDiagnostics(diagnostics)),
        (
            0,
            Event::HostFailed {
                host: s("web1"),
                phase: Phase::Health,
                error: s("health check failed: exit code 1"),
                tail: vec![],
                elapsed_ms: 2_100,
            },
        ),
        (
            0,
            Event::RollbackStarted {
                hosts: vec![s("web1")],
                reason: s("1 host(s) failed, more than max_failures allows (0)"),
            },
        ),
        (
            200,
            Event::Summary(Summary::new(
                "deploy",
                5,
                Some(s(RELEASE)),
                vec![
                    host_summary("web1", HostResult::RolledBack, Some("health"), 2_300),
                    host_summary("web2", HostResult::Skipped, None, 0),
                    HostSummary {
                        result: HostResult::Unreachable,
                        ..host_summary("web3", HostResult::Failed, Some("cannot reach web3"), 5_000)
                    },
                ],
                2_400,
                None,
            )),
        ),
    ]
}

#[test]
fn plain_shows_retries_at_v_and_diagnostics_with_the_failure() {
    let normal = plain_output(Verbosity::Normal, false, &canary_with_diagnostics());
    insta::assert_snapshot!(normal);
    assert!(!normal.contains("connect retry"), "retries only with -v");
    let verbose = plain_output(Verbosity::Verbose, false, &canary_with_diagnostics());
    assert!(
        verbose.contains("web1  connect retry 1/2 in 1.2s: cannot reach web1"),
        "{verbose}"
    );
    // -v and the log get every line, once.
    assert_eq!(
        verbose.matches("panic: no database").count(),
        1,
        "{verbose}"
    );
    assert!(verbose.contains("$ df -h /  (exit 1)"), "{verbose}");
}

#[test]
fn diagnostics_read_back_later_are_shown_whole() {
    // `status --last-failure`: no run in progress, so the record is the news.
    let script: Vec<(i64, Event)> = canary_with_diagnostics()
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::HostDiagnostics(_)))
        .collect();
    let out = plain_output(Verbosity::Normal, false, &script);
    assert!(
        out.contains("diagnostics after the health failure of 20250301T120000Z-ab12cd34"),
        "{out}"
    );
    assert!(
        out.contains("| $ journalctl -u shop-api -n 3 --no-pager"),
        "{out}"
    );
    assert!(out.contains("| df: /: no such device"), "{out}");
}

#[test]
fn json_has_connect_retry_and_host_diagnostics_and_counts_unreachable() {
    let out = json_output(&canary_with_diagnostics());
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let retry = lines
        .iter()
        .find(|l| l["event"] == "connect_retry")
        .unwrap();
    assert_eq!(retry["attempt"], 1);
    assert_eq!(retry["delay_ms"], 1_200);
    let at = |name: &str| lines.iter().position(|l| l["event"] == name).unwrap();
    assert!(at("host_diagnostics") < at("rollback_started"));
    let found = &lines[at("host_diagnostics")];
    assert_eq!(found["phase"], "health");
    assert_eq!(found["commands"][0]["output"][1], "panic: no database");
    assert_eq!(found["commands"][1]["exit_code"], 1);
    let summary = lines.last().unwrap();
    assert_eq!(summary["unreachable"], 1);
    assert_eq!(summary["hosts"][2]["result"], "unreachable");
}

#[test]
fn tty_keeps_live_diagnostics_for_the_failure_display() {
    let tty = Tty::hidden();
    let script = canary_with_diagnostics();
    for (_, event) in &script[..6] {
        tty.event(event);
    }
    assert!(tty.has_diagnostics_for("web1"), "held for the failure");
    tty.event(&script[6].1);
    assert!(!tty.has_diagnostics_for("web1"), "shown with the failure");
}

#[test]
fn the_summary_lists_every_gate_sample_one_line_per_gate_and_step() {
    let sample = |gate: &str, step: &str, value: i64, verdict: &str| Event::Analysis {
        gate: s(gate),
        step: s(step),
        sample: 1,
        count: 2,
        value: serde_json::json!(value),
        verdict: s(verdict),
        dry_run: false,
        error: None,
    };
    let script = vec![
        (0, sample("errors", "canary bake", 0, "pass")),
        (0, sample("latency", "canary bake", 3, "pass")),
        (0, sample("errors", "canary bake", 0, "pass")),
        (0, sample("errors", "traffic 10%", 1, "fail")),
        (
            10,
            Event::Summary(Summary::new(
                "deploy",
                5,
                Some(s(RELEASE)),
                vec![host_summary("web1", HostResult::RolledBack, None, 2_300)],
                2_400,
                None,
            )),
        ),
    ];
    let out = plain_output(Verbosity::Normal, false, &script);
    let at = out
        .find("gate errors, canary bake: 0 pass, 0 pass")
        .expect(&out);
    assert!(
        out[at..].contains("gate latency, canary bake: 3 pass\ngate errors, traffic 10%: 1 fail\n"),
        "{out}"
    );
}
