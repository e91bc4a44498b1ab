//! Run-level local hooks, on the machine running hoist: `on_start_local`
//! before any host is touched (a failure stops the run: a deploy freeze),
//! and `on_success_local` or `on_failure_local` once at the end, with the
//! summary. For deploy, rollback, promote and abort.

use std::io::Write;

use super::{Context, Failure, hooks};
use crate::exit::Exit;
use crate::report::{Event, Level, Summary, ndjson_line};

/// The commands that run the run-level hooks.
pub(crate) const COMMANDS: [&str; 4] = ["deploy", "rollback", "promote", "abort"];

/// `HOIST_RESULT` for a run's exit code; `None` for the codes after which
/// no end hook runs (2: nothing was started).
pub(crate) fn result_of(exit_code: i32) -> Option<&'static str> {
    Exit::of_code(exit_code).and_then(Exit::result)
}

/// Runs `on_start_local` for `command`; its failure stops the run before
/// any host is touched (the caller ends it with exit 3).
pub(crate) async fn on_start(
    ctx: &Context,
    release: Option<&str>,
    version: Option<&str>,
) -> Result<(), Failure> {
    let list = &ctx.config.hooks.on_start_local;
    if list.is_empty() {
        return Ok(());
    }
    let mut env = base_env(ctx, ctx.command, release);
    env.push((
        "HOIST_VERSION".into(),
        version.unwrap_or_default().to_string(),
    ));
    hooks::run_local(ctx, "on_start_local", list, &env).await
}

fn base_env(ctx: &Context, command: &str, release: Option<&str>) -> Vec<(String, String)> {
    vec![
        ("HOIST_COMMAND".into(), command.to_string()),
        ("HOIST_APP".into(), ctx.config.app.name.clone()),
        ("HOIST_DEPLOY_TO".into(), ctx.config.app.deploy_to.clone()),
        (
            "HOIST_RELEASE".into(),
            release.unwrap_or_default().to_string(),
        ),
    ]
}

/// Runs `on_success_local` or `on_failure_local` once, before the summary
/// is emitted (it is the last event), with `HOIST_SUMMARY` naming a file
/// that holds the summary as its NDJSON line. Their failure is reported;
/// the exit stays what the run decided.
pub(crate) fn at_end(ctx: &Context, summary: &Summary) {
    if !COMMANDS.contains(&summary.command.as_str()) {
        return;
    }
    let Some(result) = result_of(summary.exit_code) else {
        return;
    };
    let (name, list) = if summary.exit_code == 0 {
        ("on_success_local", &ctx.config.hooks.on_success_local)
    } else {
        ("on_failure_local", &ctx.config.hooks.on_failure_local)
    };
    if list.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let file = match summary_file(&ctx.mask.summary(summary)) {
        Ok(file) => file,
        Err(e) => {
            ctx.message(
                Level::Warn,
                None,
                format!("{name}: cannot write the summary file: {e}"),
            );
            return;
        }
    };
    let mut env = base_env(ctx, &summary.command, summary.release.as_deref());
    env.extend([
        ("HOIST_EXIT_CODE".into(), summary.exit_code.to_string()),
        ("HOIST_RESULT".into(), result.to_string()),
        ("HOIST_SUMMARY".into(), file.path().display().to_string()),
    ]);
    // The summary waits for these hooks, on a thread that may block.
    let ran =
        tokio::task::block_in_place(|| runtime.block_on(hooks::run_local(ctx, name, list, &env)));
    if let Err(e) = ran {
        ctx.message(Level::Warn, None, format!("{e}"));
    }
}

fn summary_file(summary: &Summary) -> std::io::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("hoist-summary-")
        .suffix(".json")
        .tempfile()?;
    let line = ndjson_line(
        &Event::Summary(summary.clone()),
        chrono::Utc::now().fixed_offset(),
    );
    writeln!(file, "{line}")?;
    file.flush()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_after_which_a_hook_runs_has_its_result() {
        let table = [
            (0, Some("done")),
            (1, Some("failed")),
            (2, None),
            (3, Some("preflight_failed")),
            (4, Some("locked")),
            (5, Some("rolled_back")),
            (130, Some("interrupted")),
        ];
        for (code, result) in table {
            assert_eq!(result_of(code), result, "{code}");
        }
    }
}
