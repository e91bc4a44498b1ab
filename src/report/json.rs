//! NDJSON for machines: one compact object per event per line, with
//! `"event"` first and `"ts"` (RFC 3339, UTC, milliseconds) next; the
//! rest are the event's own fields under serde's names.

use super::clock::Clock;
use super::{Event, Reporter};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// At most one `upload_progress` per host this often (the last one always goes out).
const UPLOAD_EVERY_MS: i64 = 250;

pub struct Json {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

struct State {
    out: Box<dyn Write + Send>,
    /// Lines held back until `run_started` (or the summary) is written:
    /// `Some` while a command that starts a run has not said so yet.
    held: Option<Vec<String>>,
    uploads: HashMap<String, DateTime<FixedOffset>>,
    /// The summary is the last line, always: nothing is written after it.
    summary_sent: bool,
    /// The GitHub runner reads these lines (see `workflow`).
    inert: bool,
}

impl Json {
    pub fn new(out: Box<dyn Write + Send>, clock: Arc<dyn Clock>) -> Self {
        Json {
            clock,
            state: Mutex::new(State {
                out,
                held: None,
                uploads: HashMap::new(),
                summary_sent: false,
                inert: false,
            }),
        }
    }

    /// Lines the GitHub runner reads: no host text in them is taken for a
    /// workflow command; the JSON means the same.
    pub fn inert(self) -> Self {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.inert = true;
        drop(st);
        self
    }
}

impl Json {
    /// For a command that starts a run (deploy, rollback, …): what comes
    /// before its `run_started` (reaching the hosts, a lock wait) is
    /// written after it, so that `run_started` is the first line; each
    /// line keeps its own time.
    pub fn run_first(self) -> Self {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).held = Some(Vec::new());
        self
    }
}

/// One NDJSON line for `event` at `now`, without the newline.
pub fn line(event: &Event, now: DateTime<FixedOffset>) -> String {
    let body = serde_json::to_string(event).expect("events always serialize");
    let ts = now
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    // serde writes the tag first: `{"event":"name"` then the fields.
    let tag_end = body
        .strip_prefix(r#"{"event":""#)
        .and_then(|rest| rest.find('"'))
        .map(|at| at + r#"{"event":""#.len() + 1)
        .expect("events are tagged with \"event\"");
    format!(r#"{},"ts":"{ts}"{}"#, &body[..tag_end], &body[tag_end..])
}

impl Reporter for Json {
    fn event(&self, event: &Event) {
        let now = self.clock.now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.summary_sent {
            return;
        }
        st.summary_sent = matches!(event, Event::Summary(_));
        if let Event::UploadProgress { host, bytes, total } = event {
            let last = Some(*bytes) == *total;
            let recent = st
                .uploads
                .get(host)
                .is_some_and(|at| (now - *at).num_milliseconds() < UPLOAD_EVERY_MS);
            if recent && !last {
                return;
            }
            st.uploads.insert(host.clone(), now);
        }
        let mut text = line(event, now);
        if st.inert {
            text = super::workflow::inert_json(&text);
        }
        text.push('\n');
        let opens = matches!(event, Event::RunStarted { .. } | Event::Summary(_));
        if let Some(held) = &mut st.held {
            if !opens {
                held.push(text);
                return;
            }
            let held = held.concat();
            st.held = None;
            // run_started goes first; the summary always last.
            text = match event {
                Event::Summary(_) => held + &text,
                _ => text + &held,
            };
        }
        // A reader that went away must not stop the deploy.
        let _ = st.out.write_all(text.as_bytes());
        let _ = st.out.flush();
    }

    fn finish(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = st.out.flush();
    }
}
