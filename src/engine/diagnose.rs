//! Evidence before rollback: on a host that failed after its switch, the
//! `[diagnose]` commands run (each bounded by command_timeout, with the hook
//! variables) before anything puts it back. What they print goes out as a
//! `host_diagnostics` event (so into the log file and the failure's display)
//! and stays on the host as `.hoist/diagnostics/<release>`, where `hoist
//! status --last-failure` reads it from any machine.

use super::fleet::Node;
use super::{Context, Failed};
use crate::release::ReleaseId;
use crate::report::{Diagnostic, Diagnostics, Event, Level, Phase};
use crate::transport::Input;

/// The most lines kept of one command's output: its last ones.
const MAX_LINES: usize = 1000;

/// Runs the diagnose commands on `node`, which failed as `failed` on
/// release `id`, reports what they printed and keeps it on the host. The
/// record is kept even without commands: the failure itself is evidence.
pub(crate) async fn collect(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    failed: &Failed,
    env: &[(String, String)],
) {
    let configured = &node.host.role.diagnose;
    if !configured.is_empty() {
        ctx.phase(node.name(), Phase::Diagnose);
    }
    let dir = node.layout.release_path(id);
    let mut commands = Vec::new();
    for command in configured {
        // After Ctrl-C, what is in flight finishes and nothing new starts.
        if ctx.cancel.is_cancelled() {
            break;
        }
        let script = node.layout.diagnose(&dir, env, command);
        commands.push(match node.run(&script, None).await {
            Ok(out) => {
                let text = format!("{}{}", out.stdout_str(), out.stderr_str());
                let lines: Vec<&str> = text.lines().collect();
                Diagnostic {
                    command: command.clone(),
                    exit_code: out.code,
                    error: None,
                    output: lines[lines.len().saturating_sub(MAX_LINES)..]
                        .iter()
                        .map(|l| l.to_string())
                        .collect(),
                }
            }
            Err(e) => Diagnostic {
                command: command.clone(),
                exit_code: None,
                error: Some(e.to_string()),
                output: Vec::new(),
            },
        });
    }
    // Masked here too: the record is also kept on the host.
    let record = ctx.mask.diagnostics(&Diagnostics {
        host: node.name().to_string(),
        release: id.to_string(),
        phase: failed.phase,
        error: failed.failure.to_string(),
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        by: ctx.by.clone(),
        commands,
    });
    if !configured.is_empty() {
        ctx.emit(Event::HostDiagnostics(record.clone()));
    }
    let json = serde_json::to_vec(&record).expect("a record always serializes");
    let saved = node
        .must(
            "keeping the diagnostics",
            &node.layout.save_diagnostics(id),
            Some(Input::bytes(json)),
        )
        .await;
    if let Err(e) = saved
        && !configured.is_empty()
    {
        let text = format!("could not keep the diagnostics on the host: {e}");
        ctx.message(Level::Warn, Some(node.name()), text);
    }
}

/// The newest failure record kept on the host, if any.
pub(crate) async fn last(node: &Node) -> Result<Option<Diagnostics>, String> {
    let out = node
        .must(
            "reading the diagnostics",
            &node.layout.last_diagnostics(),
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    let text = out.stdout_str();
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("unreadable diagnostics record: {e}"))
}
