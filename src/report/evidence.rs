//! What `[diagnose]` found on a failed host: one record, sent as the
//! `host_diagnostics` event, kept on the host as JSON, and shown by the
//! renderers (the last lines with the failure, all of it in the log and
//! from `status --last-failure`).

use serde::{Deserialize, Serialize};

use super::Phase;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub host: String,
    /// The release the host failed on.
    pub release: String,
    /// Where it failed, and why.
    pub phase: Phase,
    pub error: String,
    /// When (RFC 3339, UTC) and by whom.
    pub at: String,
    pub by: String,
    pub commands: Vec<Diagnostic>,
}

/// One `[diagnose]` command and what it printed (stderr merged into stdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub command: String,
    /// `None` when it did not end by itself (a timeout, a lost connection).
    pub exit_code: Option<u32>,
    /// Why it has no exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub output: Vec<String>,
}

impl Diagnostics {
    /// Every line, as a person reads it: each command after a `$`, then
    /// what it printed.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for d in &self.commands {
            let how = match (&d.error, d.exit_code) {
                (Some(e), _) => format!("  ({e})"),
                (None, Some(0)) => String::new(),
                (None, Some(code)) => format!("  (exit {code})"),
                (None, None) => "  (killed)".to_string(),
            };
            lines.push(format!("$ {}{how}", d.command));
            lines.extend(d.output.iter().cloned());
        }
        lines
    }

    /// The last `n` of [`Diagnostics::lines`]: what a failure's display shows.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let all = self.lines();
        all[all.len().saturating_sub(n)..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_each_command_and_how_it_ended() {
        let d = Diagnostics {
            host: "web1".into(),
            release: "r".into(),
            phase: Phase::Health,
            error: "health check failed".into(),
            at: "2026-01-01T00:00:00Z".into(),
            by: "me@here".into(),
            commands: vec![
                Diagnostic {
                    command: "df -h".into(),
                    exit_code: Some(0),
                    error: None,
                    output: vec!["/ 90%".into()],
                },
                Diagnostic {
                    command: "journalctl -u shop".into(),
                    exit_code: Some(1),
                    error: None,
                    output: vec!["panic: x".into(), "exit".into()],
                },
            ],
        };
        assert_eq!(
            d.lines(),
            [
                "$ df -h",
                "/ 90%",
                "$ journalctl -u shop  (exit 1)",
                "panic: x",
                "exit"
            ]
        );
        assert_eq!(d.last_lines(2), ["panic: x", "exit"]);
    }
}
