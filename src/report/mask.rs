//! Secret values hoist knows (the become password, the SSH key passphrase,
//! the content of every `secret = true` file), replaced by `***` in every
//! event before any renderer sees it: the live view, plain lines, NDJSON,
//! the log file, diagnostics, GitHub annotations and the step summary. A
//! hook that prints a secret cannot put it into any of them.

use std::sync::{Arc, RwLock};

use super::{Diagnostics, Event, Reporter, Row, Summary};

/// What a secret becomes.
pub const MASK: &str = "***";

/// Shorter values are not masked: they would hide ordinary words and
/// digits everywhere, and guessing them is no harder for being masked.
pub const MIN_LEN: usize = 4;

/// The secret values of one run, longest first (so a whole file's content
/// is masked before any of its lines).
#[derive(Debug, Default)]
pub struct Mask {
    values: RwLock<Vec<String>>,
}

impl Mask {
    /// The secrets hoist reads from its environment.
    pub fn from_env() -> Arc<Mask> {
        let mask = Mask::default();
        for name in crate::secret_env::SECRETS {
            if let Ok(value) = std::env::var(name) {
                mask.add(&value);
            }
        }
        Arc::new(mask)
    }

    /// Adds a secret: the value itself, each of its lines (a file's
    /// content comes out of a host a line at a time), and the value of each
    /// `NAME=value` line (what a hook that uses the file prints), each
    /// without surrounding blanks or quotes and when at least [`MIN_LEN`]
    /// bytes long.
    pub fn add(&self, secret: &str) {
        let mut found = vec![secret.trim().to_string()];
        for line in secret.lines() {
            found.push(line.trim().to_string());
            if let Some((name, value)) = line.split_once('=') {
                let name = name.trim().trim_start_matches("export ").trim();
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    found.push(unquote(value.trim()).to_string());
                }
            }
        }
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        for value in found {
            if value.len() >= MIN_LEN && !values.contains(&value) {
                values.push(value);
            }
        }
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// `text` with every known secret in it replaced by [`MASK`].
    pub fn text(&self, text: &str) -> String {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for value in values.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }

    fn all(&self, lines: &[String]) -> Vec<String> {
        lines.iter().map(|l| self.text(l)).collect()
    }

    /// A diagnostics record with its text masked (it is also kept on the host).
    pub fn diagnostics(&self, found: &Diagnostics) -> Diagnostics {
        let mut found = found.clone();
        found.error = self.text(&found.error);
        for d in &mut found.commands {
            d.command = self.text(&d.command);
            d.output = self.all(&d.output);
            d.error = d.error.as_deref().map(|e| self.text(e));
        }
        found
    }

    /// A summary with its errors masked (it also goes to the run-level hooks).
    pub fn summary(&self, summary: &Summary) -> Summary {
        let mut summary = summary.clone();
        for h in &mut summary.hosts {
            h.error = h.error.as_deref().map(|e| self.text(e));
            h.tail = self.all(&h.tail);
        }
        summary
    }

    /// The event with every text that may carry what a host or a command
    /// printed masked; names, phases and ids are hoist's own.
    pub fn event(&self, event: &Event) -> Event {
        let t = |s: &String| self.text(s);
        match event {
            Event::ConnectRetry {
                host,
                attempt,
                retries,
                error,
                delay_ms,
            } => Event::ConnectRetry {
                host: host.clone(),
                attempt: *attempt,
                retries: *retries,
                error: t(error),
                delay_ms: *delay_ms,
            },
            Event::HostOutput { host, stream, line } => Event::HostOutput {
                host: host.clone(),
                stream: *stream,
                line: t(line),
            },
            Event::HostDone {
                host,
                release,
                message,
                elapsed_ms,
                sent_bytes,
            } => Event::HostDone {
                host: host.clone(),
                release: release.clone(),
                message: message.as_ref().map(t),
                elapsed_ms: *elapsed_ms,
                sent_bytes: *sent_bytes,
            },
            Event::HostFailed {
                host,
                phase,
                error,
                tail,
                elapsed_ms,
            } => Event::HostFailed {
                host: host.clone(),
                phase: *phase,
                error: t(error),
                tail: self.all(tail),
                elapsed_ms: *elapsed_ms,
            },
            Event::HostDiagnostics(found) => Event::HostDiagnostics(self.diagnostics(found)),
            Event::RollbackStarted { hosts, reason } => Event::RollbackStarted {
                hosts: hosts.clone(),
                reason: t(reason),
            },
            Event::TrafficStep {
                step,
                steps,
                weight,
                canary,
                baseline,
                color,
                outcome,
                error,
            } => Event::TrafficStep {
                step: *step,
                steps: *steps,
                weight: *weight,
                canary: canary.clone(),
                baseline: baseline.clone(),
                color: color.clone(),
                outcome: outcome.clone(),
                error: error.as_ref().map(t),
            },
            Event::Traffic {
                color,
                previous,
                reason,
            } => Event::Traffic {
                color: color.clone(),
                previous: previous.clone(),
                reason: t(reason),
            },
            Event::HostSelfReverted {
                host,
                from,
                to,
                reason,
                at,
            } => Event::HostSelfReverted {
                host: host.clone(),
                from: from.clone(),
                to: to.clone(),
                reason: t(reason),
                at: at.clone(),
            },
            Event::Message { level, host, text } => Event::Message {
                level: *level,
                host: host.clone(),
                text: t(text),
            },
            Event::Row(row) => Event::Row(Row {
                table: row.table,
                cells: row.cells.iter().map(|(k, v)| (*k, self.value(v))).collect(),
                marked: row.marked,
            }),
            Event::Summary(summary) => Event::Summary(self.summary(summary)),
            other => other.clone(),
        }
    }

    fn value(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// Masks every event on its way to `inner` (the renderers, the log file).
/// A secret typed at a prompt is a known secret from then on.
pub struct Masked {
    inner: Arc<dyn Reporter>,
    mask: Arc<Mask>,
}

impl Masked {
    pub fn new(inner: Arc<dyn Reporter>, mask: Arc<Mask>) -> Masked {
        Masked { inner, mask }
    }
}

impl Reporter for Masked {
    fn event(&self, event: &Event) {
        if self.mask.is_empty() {
            return self.inner.event(event);
        }
        self.inner.event(&self.mask.event(event));
    }

    fn confirm(&self, question: &str) -> Option<bool> {
        self.inner.confirm(&self.mask.text(question))
    }

    fn ask_secret(&self, prompt: &str) -> Option<String> {
        let answer = self.inner.ask_secret(prompt);
        if let Some(secret) = &answer {
            self.mask.add(secret);
        }
        answer
    }

    fn finish(&self) {
        self.inner.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{OutputStream, Recorder};

    #[test]
    fn a_secret_its_lines_and_its_values_are_masked_but_not_short_ones() {
        let mask = Mask::default();
        mask.add("DB_PASSWORD=\"hunter2-long\"\nexport API_KEY=abcd1234\nX=ab\n\n");
        mask.add("s3cr3t-pw");
        mask.add("abc");
        assert_eq!(
            mask.text("pw s3cr3t-pw key abcd1234 db hunter2-long x ab abc"),
            "pw *** key *** db *** x ab abc"
        );
        assert_eq!(mask.text("DB_PASSWORD=\"hunter2-long\""), "***");
        assert_eq!(mask.text("nothing secret"), "nothing secret");
    }

    #[test]
    fn every_renderer_gets_the_masked_event_and_a_typed_secret_joins_the_mask() {
        struct Asks(Recorder);
        impl Reporter for Asks {
            fn event(&self, event: &Event) {
                self.0.event(event)
            }
            fn ask_secret(&self, _: &str) -> Option<String> {
                Some("typed-password".into())
            }
        }
        let inner = Arc::new(Asks(Recorder::default()));
        let masked = Masked::new(inner.clone(), Arc::new(Mask::default()));
        assert_eq!(masked.ask_secret("password: ").unwrap(), "typed-password");
        masked.event(&Event::HostOutput {
            host: "web1".into(),
            stream: OutputStream::Stdout,
            line: "got typed-password".into(),
        });
        let seen = inner.0.0.lock().unwrap();
        let Event::HostOutput { line, .. } = &seen[0] else {
            panic!("{seen:?}")
        };
        assert_eq!(line, "got ***");
    }
}
