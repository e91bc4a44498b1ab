//! `hoist deploy`: prepare the artifact, preflight every host, lock the
//! fleet, roll out (see `rollout`), unlock.

use std::time::Duration;

use super::fleet::{self, Node};
use super::lock::{self, LockInfo};
use super::upload::already_held;
use super::{Context, ms, rollout};
use crate::artifact::Artifact;
use crate::config::Pause;
use crate::exit::Exit;
use crate::journal::Kind;
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, HostSummary, Level, Phase};
use crate::strategy;

#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Carry the last failed or interrupted deploy on, with its release id.
    pub resume: bool,
}

pub async fn run(ctx: &Context, opts: DeployOptions) -> i32 {
    let Some(spec) = ctx.config.artifact.clone() else {
        ctx.message(
            Level::Error,
            None,
            format!("{} has no [artifact] to deploy", ctx.config.path.display()),
        );
        return ctx.finish("deploy", Exit::Usage, None, Vec::new());
    };
    let prepared = tokio::task::spawn_blocking(move || Artifact::prepare(&spec)).await;
    let artifact = match prepared {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            ctx.message(Level::Error, None, format!("{e:#}"));
            return ctx.finish("deploy", Exit::Usage, None, Vec::new());
        }
        Err(e) => {
            ctx.message(Level::Error, None, e.to_string());
            return ctx.finish("deploy", Exit::Failed, None, Vec::new());
        }
    };
    let strategy = &ctx.config.strategy;
    let canary = strategy::hosts_of(strategy.canary, ctx.hosts.len());
    let has_canary_pause =
        canary > 0 && canary < ctx.hosts.len() && strategy.canary_pause == Pause::Manual;
    if has_canary_pause && !ctx.yes && !ctx.interactive {
        ctx.message(
            Level::Error,
            None,
            "canary_pause is \"manual\" and there is no terminal to ask: pass --yes to promote the canary without asking, or set canary_pause to a duration",
        );
        return ctx.finish("deploy", Exit::Usage, None, Vec::new());
    }

    let (nodes, unreached) = fleet::reach(ctx).await;
    let mut problems = unreached
        .iter()
        .map(|u| (u.host.clone(), u.phase, u.failure.to_string(), u.elapsed))
        .collect::<Vec<_>>();
    fleet::report_unreached(ctx, &unreached);

    let id = if opts.resume {
        match resume_target(&nodes, &artifact) {
            Ok(id) => id,
            Err(e) => {
                ctx.message(Level::Error, None, e);
                fleet::close_all(&nodes).await;
                return ctx.finish("deploy", Exit::Usage, None, Vec::new());
            }
        }
    } else {
        ReleaseId::new(chrono::Utc::now(), &artifact.content_sha)
    };
    ctx.emit(Event::RunStarted {
        command: "deploy".into(),
        app: ctx.config.app.name.clone(),
        release: Some(id.to_string()),
        version: Some(artifact.version.clone()),
        hosts: ctx.hosts.iter().map(|h| h.name.clone()).collect(),
    });

    for node in &nodes {
        let mut reasons = preflight_problems(node, &artifact);
        if let Some(line) = &node.probe.lock {
            reasons.push(format!("locked by {}", LockInfo::describe(line)));
        }
        for reason in reasons {
            ctx.emit(Event::HostFailed {
                host: node.name().to_string(),
                phase: Phase::Preflight,
                error: reason.clone(),
                tail: Vec::new(),
                elapsed_ms: 0,
            });
            problems.push((
                node.name().to_string(),
                Phase::Preflight,
                reason,
                Duration::ZERO,
            ));
        }
    }
    if !problems.is_empty() {
        fleet::close_all(&nodes).await;
        let locked_only = unreached.is_empty()
            && problems
                .iter()
                .all(|(_, _, reason, _)| reason.starts_with("locked by "));
        let exit = if locked_only {
            Exit::Locked
        } else {
            Exit::Preflight
        };
        let hosts = summaries_untouched(ctx, &nodes, &problems);
        return ctx.finish("deploy", exit, Some(id.to_string()), hosts);
    }

    if let Err(e) = lock::acquire(ctx, &nodes, Some(id.as_str()), None).await {
        let exit = lock::report_error(ctx, e);
        fleet::close_all(&nodes).await;
        let hosts = summaries_untouched(ctx, &nodes, &[]);
        return ctx.finish("deploy", exit, Some(id.to_string()), hosts);
    }

    let (exit, runs) = rollout::rollout(ctx, &nodes, &artifact, &id).await;
    lock::release(ctx, &nodes).await;
    fleet::close_all(&nodes).await;
    let hosts = nodes
        .iter()
        .zip(runs)
        .map(|(node, run)| HostSummary {
            host: node.name().to_string(),
            result: run.result,
            release: run.now.map(|r| r.to_string()),
            error: run.error,
            elapsed_ms: ms(run.elapsed),
        })
        .collect();
    ctx.finish("deploy", exit, Some(id.to_string()), hosts)
}

/// Why a reachable host cannot take this deploy.
fn preflight_problems(node: &Node, artifact: &Artifact) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(path) = &node.probe.not_writable {
        reasons.push(format!(
            "{} cannot be created: {path} is not writable",
            node.layout.deploy_to
        ));
    }
    if !node.probe.missing_tools.is_empty() {
        reasons.push(format!(
            "missing tools: {}",
            node.probe.missing_tools.join(", ")
        ));
    }
    let holds_it = already_held(node, artifact).is_some();
    if let Some(free) = node.probe.free_kb
        && !holds_it
        && free < artifact.needed_kb()
    {
        reasons.push(format!(
            "not enough free space: {} KiB free, {} KiB needed",
            free,
            artifact.needed_kb()
        ));
    }
    reasons
}

fn summaries_untouched(
    ctx: &Context,
    nodes: &[Node],
    problems: &[(String, Phase, String, Duration)],
) -> Vec<HostSummary> {
    ctx.hosts
        .iter()
        .map(|h| {
            let problem = problems.iter().find(|p| p.0 == h.name);
            let current = nodes
                .iter()
                .find(|n| n.name() == h.name)
                .and_then(|n| n.probe.current.as_ref().map(|c| c.to_string()));
            HostSummary {
                host: h.name.clone(),
                result: if problem.is_some() {
                    HostResult::Failed
                } else {
                    HostResult::Skipped
                },
                release: current,
                error: problem.map(|p| p.2.clone()),
                elapsed_ms: problem.map(|p| ms(p.3)).unwrap_or(0),
            }
        })
        .collect()
}

/// `--resume`: the release of the last deploy that did not reach every host.
/// Only a deploy's lock names a release; rollbacks and hand locks do not.
fn resume_target(nodes: &[Node], artifact: &Artifact) -> Result<ReleaseId, String> {
    let last = nodes
        .iter()
        .flat_map(|n| n.journal.entries.iter())
        .filter(|e| e.event == Kind::Lock && e.release.is_some())
        .max_by(|a, b| a.ts.cmp(&b.ts))
        .and_then(|e| e.release.as_deref().and_then(ReleaseId::parse))
        .ok_or("nothing to resume: no earlier deploy is recorded on these hosts")?;
    if nodes
        .iter()
        .all(|n| n.probe.current.as_ref() == Some(&last))
    {
        return Err(format!(
            "nothing to resume: every selected host is already on {last}"
        ));
    }
    if nodes
        .iter()
        .any(|n| n.journal.bad_releases().iter().any(|b| b == last.as_str()))
    {
        return Err(format!(
            "{last} was rolled back; it cannot be resumed. Deploy anew."
        ));
    }
    if last.hash_prefix() != &artifact.content_sha[..8] {
        return Err(format!(
            "the artifact changed since {last} was deployed (its hash starts {}, the artifact's {}); deploy anew instead of resuming",
            last.hash_prefix(),
            &artifact.content_sha[..8]
        ));
    }
    Ok(last)
}
