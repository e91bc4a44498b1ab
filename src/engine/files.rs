//! `hoist files push`: the `[[files]]` written to each host's `shared/`
//! and `hooks.after_files` run, in the deploy's waves, with its health check
//! and failure policy, but no new release. Each host keeps the contents it
//! had (`.hoist/files-previous`) until the next push, so a failure can
//! bring them back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::fleet::Node;
use super::layout::q;
use super::policy::{self, HostState};
use super::strategy::{self, WaveKind};
use super::{Context, Failed, Failure, HostOutcome, at, diagnose, health, hooks};
use crate::config::Pause;
use crate::exit::Exit;
use crate::journal::{Entry, Kind};
use crate::report::{Event, HostResult, Level, Phase};

/// Where one host stands.
struct HostRun {
    outcome: HostOutcome,
    /// Its previous contents are kept and some of its files were written.
    written: bool,
}

/// Pushes the files to `nodes` (locked, preflighted) wave by wave; returns
/// the exit and how each node ended.
pub(crate) async fn push(ctx: &Context, nodes: &[Node]) -> (Exit, Vec<HostOutcome>) {
    let strategy = &ctx.config.strategy;
    let runs: Vec<Mutex<HostRun>> = nodes
        .iter()
        .map(|n| {
            Mutex::new(HostRun {
                outcome: HostOutcome::skipped(n.name(), n.current()),
                written: false,
            })
        })
        .collect();
    let waves = strategy::waves(nodes.len(), strategy.canary, &strategy.batch);
    let allowed = strategy::failures_allowed(strategy.max_failures, nodes.len());
    let mut failures = 0;
    let mut halted = false;
    for (w, wave) in waves.iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            break;
        }
        ctx.emit(Event::WaveStarted {
            wave: w + 1,
            waves: waves.len(),
            kind: wave.kind.as_str().to_string(),
            hosts: wave
                .hosts
                .iter()
                .map(|&i| nodes[i].host.name.clone())
                .collect(),
            group: None,
            zone: None,
        });
        let done = join_all(wave.hosts.iter().map(|&i| host_push(ctx, &nodes[i]))).await;
        let mut failed = 0;
        for (&i, run) in wave.hosts.iter().zip(done) {
            if run.outcome.result == HostResult::Failed {
                failed += 1;
            }
            *runs[i].lock().unwrap() = run;
        }
        failures += failed;
        ctx.emit(Event::WaveDone {
            wave: w + 1,
            ok: wave.hosts.len() - failed,
            failed,
            skipped: 0,
            interrupted: ctx.cancel.is_cancelled(),
        });
        if policy::halts(failures, allowed) {
            halted = true;
            break;
        }
        if w + 1 < waves.len() {
            // A manual canary pause asks nothing here: rotating a file is
            // not a release to promote; a timed one waits.
            let pause = match (wave.kind, &strategy.canary_pause) {
                (WaveKind::Canary, Pause::For(d)) => *d,
                (WaveKind::Canary, Pause::Manual) => Duration::ZERO,
                _ => strategy.batch_pause,
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = ctx.cancel.cancelled() => {}
            }
        }
    }
    let mut runs: Vec<HostRun> = runs.into_iter().map(|m| m.into_inner().unwrap()).collect();
    let states: Vec<HostState> = runs
        .iter()
        .map(|r| HostState {
            failed: r.outcome.result == HostResult::Failed,
            switched: r.written,
        })
        .collect();
    let verdict = policy::verdict(
        &states,
        halted,
        ctx.cancel.is_cancelled(),
        strategy.on_failure,
    );
    if verdict.roll_back.is_empty() {
        if halted {
            ctx.message(
                Level::Error,
                None,
                format!("files push stopped: {failures} host(s) failed, more than max_failures ({allowed}); on_failure = \"stop\" leaves every host as it is"),
            );
        }
        return (verdict.exit, runs.into_iter().map(|r| r.outcome).collect());
    }
    let reason = format!(
        "{failures} host(s) failed, more than max_failures ({allowed}): their previous files come back"
    );
    let all_back = files_back(ctx, nodes, &mut runs, &verdict.roll_back, reason).await;
    (
        policy::after_rollback(&verdict, all_back),
        runs.into_iter().map(|r| r.outcome).collect(),
    )
}

/// Brings back the previous files of hosts `which`, saying `reason`;
/// marks each; whether all came back.
async fn files_back(
    ctx: &Context,
    nodes: &[Node],
    runs: &mut [HostRun],
    which: &[usize],
    reason: String,
) -> bool {
    let back: Vec<&Node> = which.iter().map(|&i| &nodes[i]).collect();
    ctx.emit(Event::RollbackStarted {
        hosts: back.iter().map(|n| n.host.name.clone()).collect(),
        reason,
    });
    let restored = join_all(back.iter().map(|node| restore(ctx, node))).await;
    let mut all_back = true;
    for (&i, result) in which.iter().zip(restored) {
        let run = &mut runs[i];
        match result {
            Ok(()) => {
                run.outcome.result = HostResult::RolledBack;
                run.outcome.note = Some("its previous files are back".into());
            }
            Err(failed) => {
                all_back = false;
                ctx.message(
                    Level::Error,
                    Some(nodes[i].name()),
                    format!(
                        "its previous files could not be put back: {}",
                        failed.failure
                    ),
                );
                run.outcome.result = HostResult::Failed;
            }
        }
    }
    all_back
}

/// One host: keep its files, write the new ones (recorded in its journal),
/// after_files, health.
async fn host_push(ctx: &Context, node: &Node) -> HostRun {
    let _permit = ctx.parallel.acquire().await.expect("semaphore open");
    let started = Instant::now();
    let mut run = HostRun {
        outcome: HostOutcome::skipped(node.name(), node.current()),
        written: false,
    };
    if ctx.cancel.is_cancelled() {
        return run;
    }
    let env = env(ctx, node);
    let result = steps(ctx, node, &env, &mut run).await;
    if let (Err(failed), Some(id)) = (&result, &node.probe.current)
        && run.written
        && !ctx.cancel.is_cancelled()
    {
        diagnose::collect(ctx, node, id, failed, &env).await;
    }
    run.outcome = match result {
        Ok(()) => HostOutcome::ok(node.name(), node.current(), started.elapsed()),
        Err(failed) => HostOutcome::failed(node.name(), failed, node.current(), started.elapsed()),
    };
    ctx.report(&run.outcome);
    run
}

async fn steps(
    ctx: &Context,
    node: &Node,
    env: &[(String, String)],
    run: &mut HostRun,
) -> Result<(), Failed> {
    let Some(files) = ctx.files.get() else {
        return Err(
            Failure::Other("the [[files]] were not read (shared::load)".into()).at(Phase::Files),
        );
    };
    let mine = files.of(node.name());
    ctx.phase(node.name(), Phase::Files);
    let dests: Vec<&str> = mine.iter().map(|f| f.dest.as_str()).collect();
    node.must(
        "keeping the previous files",
        &keep(&node.layout.deploy_to, &dests),
        None,
    )
    .await
    .map_err(at(Phase::Files))?;
    run.written = true;
    for file in mine {
        let script =
            super::app_layout::write_file(&node.layout, &file.dest, file.mode, file.secret);
        let stdin = crate::transport::Input::bytes(file.content.clone());
        node.must(&format!("writing {}", file.dest), &script, Some(stdin))
            .await
            .map_err(at(Phase::Files))?;
    }
    record(ctx, node, format!("pushed {}", dests.join(", "))).await;
    let dir = dir(node);
    let after = &node.host.role.hooks.after_files;
    hooks::run_remote(ctx, node, Phase::AfterFiles, after, &dir, env)
        .await
        .map_err(at(Phase::AfterFiles))?;
    if let Some(check) = &node.host.role.health {
        health::check(ctx, node, check, env)
            .await
            .map_err(at(Phase::Health))?;
    }
    Ok(())
}

/// Puts back the contents a host had before this push, then runs
/// after_files again so that what reads them takes them back too.
async fn restore(ctx: &Context, node: &Node) -> Result<(), Failed> {
    ctx.phase(node.name(), Phase::Rollback);
    let files = ctx.files.get().map(|f| f.of(node.name())).unwrap_or(&[]);
    let dests: Vec<&str> = files.iter().map(|f| f.dest.as_str()).collect();
    node.must(
        "putting the previous files back",
        &put_back(&node.layout.deploy_to, &dests),
        None,
    )
    .await
    .map_err(at(Phase::Rollback))?;
    record(ctx, node, format!("restored {}", dests.join(", "))).await;
    let env = env(ctx, node);
    let after = &node.host.role.hooks.after_files;
    hooks::run_remote(ctx, node, Phase::AfterFiles, after, &dir(node), &env)
        .await
        .map_err(at(Phase::AfterFiles))
}

/// The journal line of a change to the host's files.
async fn record(ctx: &Context, node: &Node, message: String) {
    let entry = Entry {
        run: Some(ctx.run_id.clone()),
        message: Some(message),
        ..Entry::new(Kind::Files, &ctx.by)
    };
    super::record::record_all(ctx, [node], &entry).await;
}

/// after_files runs in the current release, or in deploy_to without one.
fn dir(node: &Node) -> String {
    match &node.probe.current {
        Some(id) => node.layout.release_path(id),
        None => node.layout.deploy_to.clone(),
    }
}

/// The variables of a hook, for the release the host is on.
fn env(ctx: &Context, node: &Node) -> Vec<(String, String)> {
    match &node.probe.current {
        Some(id) => {
            let version = node.journal.version_of(id).unwrap_or_default();
            hooks::host_env(ctx, node, id, None, &version)
        }
        None => vec![
            ("HOIST_APP".into(), ctx.config.app.name.clone()),
            ("HOIST_DEPLOY_TO".into(), node.layout.deploy_to.clone()),
            ("HOIST_HOST".into(), node.host.name.clone()),
        ],
    }
}

/// Copies each destination that is a file into `.hoist/files-previous/<n>`
/// (mode kept; none there: it did not exist), replacing what an earlier
/// push kept only once all are copied.
fn keep(deploy_to: &str, dests: &[&str]) -> String {
    let mut script = format!(
        "set -u; umask 077; D={}; B=\"$D/.hoist/files-previous\"\nrm -rf \"$B.new\" && mkdir -p \"$B.new\" || exit 1\n",
        q(deploy_to)
    );
    for (n, dest) in dests.iter().enumerate() {
        script.push_str(&format!(
            "F=\"$D/\"{dest}; if [ -f \"$F\" ] && [ ! -L \"$F\" ]; then cp -p \"$F\" \"$B.new/{n}\" || exit 1; fi\n",
            dest = q(dest)
        ));
    }
    script.push_str("rm -rf \"$B\" && mv \"$B.new\" \"$B\"\n");
    script
}

/// Puts back what [`keep`] kept, each file atomically (a new file beside
/// it, renamed over it); one that did not exist is removed.
fn put_back(deploy_to: &str, dests: &[&str]) -> String {
    let mut script = format!(
        "set -u; umask 077; D={}; B=\"$D/.hoist/files-previous\"\n[ -d \"$B\" ] || {{ echo 'the previous files were not kept' >&2; exit 1; }}\n",
        q(deploy_to)
    );
    for (n, dest) in dests.iter().enumerate() {
        script.push_str(&format!(
            "F=\"$D/\"{dest}\nif [ -f \"$B/{n}\" ]; then T=$(mktemp \"$F.hoist-tmp.XXXXXXXX\") && cp -p \"$B/{n}\" \"$T\" && mv -f \"$T\" \"$F\" || exit 1; else rm -f \"$F\" || exit 1; fi\n",
            dest = q(dest)
        ));
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sh(script: &str) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_previous_contents_and_modes_come_back_and_new_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("shared/config")).unwrap();
        std::fs::write(d.join("shared/config/.env"), "OLD=1\n").unwrap();
        std::fs::set_permissions(
            d.join("shared/config/.env"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let dests = ["shared/config/.env", "shared/new.yml"];
        sh(&keep(&d.display().to_string(), &dests));
        std::fs::write(d.join("shared/config/.env"), "NEW=2\n").unwrap();
        std::fs::write(d.join("shared/new.yml"), "x").unwrap();
        sh(&put_back(&d.display().to_string(), &dests));
        assert_eq!(
            std::fs::read_to_string(d.join("shared/config/.env")).unwrap(),
            "OLD=1\n"
        );
        let mode = std::fs::metadata(d.join("shared/config/.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert!(!d.join("shared/new.yml").exists());
    }
}
