//! Blue-green: two colours, one live. A deploy works on the idle colour
//! only, sends traffic to it with `switch_local`, probes it once more, and
//! switches traffic back if that fails. A rollback is one local command.
//! Which colour is live is a `traffic` line in every host's journal.
//! With `[traffic]`, weights between the colours come before the switch
//! ([`steps`]); a failure after the idle colour's rollout is in [`back`].

use futures_util::future::join_all;

use super::fleet::Node;
use super::rollout::{self, Setup};
use super::{Context, Failure, HostOutcome, deadman, health, hooks, policy, record};
use crate::artifact::Artifact;
use crate::config::{Amount, BlueGreen};
use crate::exit::Exit;
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use crate::report::{Event, Level};
use back::go_back;

mod back;
mod steps;
pub(crate) use steps::{all_to, handover};

/// The two colours as this run sees them.
#[derive(Debug, Clone)]
pub(crate) struct Sides {
    /// Index into `colors` of the live colour; `None` before the first switch.
    pub live: Option<usize>,
    pub idle: usize,
}

impl Sides {
    /// Reads the live colour from the nodes' journals, or takes the one
    /// the user said (`--live`). Journals that disagree, with nothing
    /// said, or a journal naming a colour that is not configured, are a
    /// usage error (the message). A record dated after now is warned of:
    /// it never decides (see [`policy::live_by`]).
    pub(crate) fn read(
        ctx: &Context,
        bg: &BlueGreen,
        nodes: &[Node],
        said: Option<&str>,
    ) -> Result<Sides, String> {
        let records = traffic_records(nodes);
        let now = chrono::Utc::now();
        for record in records.iter().filter(|r| r.is_ahead(now)) {
            ctx.message(
                Level::Warn,
                Some(record.host),
                format!(
                    "its journal's live-colour record is dated after now: {}; a clock ahead or a line written by hand, it decides nothing",
                    record.describe(now)
                ),
            );
        }
        if let (Some(said), policy::Live::Agreed(recorded)) = (said, policy::live_color(&records))
            && said != recorded
        {
            ctx.message(
                Level::Warn,
                None,
                format!("every host's journal says {recorded} is live; going by --live {said}"),
            );
        }
        let live = policy::live_by(&records, said, &bg.colors, now)?;
        // Before any switch is recorded, `[blue_green] live` says which colour takes traffic.
        let named = live.as_deref().or(bg.live.as_deref());
        let (live, idle) = policy::sides(named, &bg.colors)?;
        Ok(Sides { live, idle })
    }
}

/// Each node's last `traffic` journal line.
pub(crate) fn traffic_records(nodes: &[Node]) -> Vec<policy::TrafficRecord<'_>> {
    nodes
        .iter()
        .map(|n| policy::TrafficRecord {
            host: n.name(),
            said: n
                .journal
                .traffic()
                .and_then(|e| Some((e.color.as_deref()?, e.ts.as_str()))),
        })
        .collect()
}

/// Runs `switch_local` with `HOIST_COLOR` set to `color`, and says so.
pub(crate) async fn switch_traffic(
    ctx: &Context,
    bg: &BlueGreen,
    color: &str,
    previous: Option<&str>,
    release: Option<&ReleaseId>,
    reason: &str,
) -> Result<(), Failure> {
    let mut env = vec![
        ("HOIST_APP".to_string(), ctx.config.app.name.clone()),
        ("HOIST_COLOR".to_string(), color.to_string()),
        (
            "HOIST_PREVIOUS_COLOR".to_string(),
            previous.unwrap_or_default().to_string(),
        ),
        (
            "HOIST_DEPLOY_TO".to_string(),
            ctx.config.app.deploy_to.clone(),
        ),
    ];
    if let Some(release) = release {
        env.push(("HOIST_RELEASE".to_string(), release.to_string()));
    }
    let hosts = bg
        .colors
        .iter()
        .find(|c| c.name == color)
        .map(|c| c.hosts.join(" "))
        .unwrap_or_default();
    env.push(("HOIST_BATCH_HOSTS".to_string(), hosts));
    hooks::run_local(ctx, "switch_local", &bg.switch_local, &env).await?;
    ctx.emit(Event::Traffic {
        color: color.to_string(),
        previous: previous.map(str::to_string),
        reason: reason.to_string(),
    });
    Ok(())
}

/// Records on every node that traffic goes to `color` now.
pub(crate) async fn record_traffic(
    ctx: &Context,
    nodes: &[&Node],
    color: &str,
    previous: Option<&str>,
    release: Option<&ReleaseId>,
) -> bool {
    let entry = Entry {
        color: Some(color.to_string()),
        release: release.map(|r| r.to_string()),
        run: Some(ctx.run_id.clone()),
        message: previous.map(|p| format!("from {p}")),
        ..Entry::new(Kind::Traffic, &ctx.by)
    };
    let failed =
        record::append_all(nodes.iter().copied(), &entry, "recording the live colour").await;
    for (node, e) in &failed {
        ctx.notes.unrecorded(node.name());
        ctx.message(
            Level::Error,
            Some(node.name()),
            format!("could not record that {color} is live: {e}"),
        );
    }
    failed.is_empty()
}

/// A blue-green deploy of `id` on locked `nodes` (both colours): the idle
/// colour in waves, then the traffic switch and one more probe.
pub(crate) async fn deploy(
    ctx: &Context,
    bg: &BlueGreen,
    sides: &Sides,
    nodes: Vec<Node>,
    artifact: &Artifact,
    id: &ReleaseId,
) -> (Exit, Vec<HostOutcome>, Vec<Node>) {
    let idle = &bg.colors[sides.idle];
    let live = sides.live.map(|i| bg.colors[i].name.as_str());
    let n = idle.hosts.len();
    ctx.message(
        Level::Info,
        None,
        match live {
            Some(live) => format!(
                "{live} is live; deploying to {} ({n} host(s)), then {}",
                idle.name,
                match &ctx.config.traffic {
                    Some(t) => format!("moving traffic to it in steps ({})", t.describe()),
                    None => "switching traffic".to_string(),
                }
            ),
            None => format!(
                "no colour is live yet; deploying to {} ({n} host(s)), then sending traffic there",
                idle.name
            ),
        },
    );
    let (targets, others): (Vec<Node>, Vec<Node>) = nodes
        .into_iter()
        .partition(|n| idle.hosts.iter().any(|h| h == n.name()));
    // The whole idle colour must be healthy before it takes traffic.
    let setup = Setup {
        canary: Amount::Hosts(0),
        max_failures: Amount::Hosts(0),
        // Confirmed once traffic went there and the probe passed.
        confirm: false,
        ..Setup::of(&ctx.config.strategy)
    };
    let (exit, mut outcomes) = rollout::rollout(ctx, &targets, artifact, id, &setup).await;
    let colours = Colours {
        ctx,
        bg,
        idle: &idle.name,
        live,
        targets: &targets,
        others: &others,
        id,
    };
    let exit = if exit != Exit::Ok || ctx.cancel.is_cancelled() {
        colours.before_the_switch(exit, &mut outcomes).await
    } else {
        colours.switch(artifact, &mut outcomes).await
    };
    outcomes.extend(
        others.iter().map(|n| {
            HostOutcome::skipped(n.name(), n.current()).with_note("live colour, untouched")
        }),
    );
    outcomes.sort_by_key(|o| ctx.hosts.iter().position(|h| h.name == o.host));
    (exit, outcomes, targets.into_iter().chain(others).collect())
}

/// A blue-green deploy once its idle colour's rollout is over.
struct Colours<'a> {
    ctx: &'a Context,
    bg: &'a BlueGreen,
    idle: &'a str,
    live: Option<&'a str>,
    /// The idle colour's nodes, and the live colour's.
    targets: &'a [Node],
    others: &'a [Node],
    id: &'a ReleaseId,
}

impl Colours<'_> {
    /// The rollout failed (`exit`) or was interrupted: traffic stays. An
    /// interrupt starts nothing new, so the idle colour goes back to what it
    /// had, and a later rollback finds it there.
    async fn before_the_switch(&self, exit: Exit, outcomes: &mut [HostOutcome]) -> Exit {
        let ctx = self.ctx;
        if let Some(live) = self.live {
            ctx.message(Level::Info, None, format!("traffic stays on {live}"));
        }
        if !ctx.cancel.is_cancelled() {
            // What the policy left switched stays so: confirmed.
            let failed = deadman::confirm_outcomes(ctx, self.targets, outcomes).await;
            return policy::after_self_reverts(exit, !failed.is_empty(), false);
        }
        let switched: Vec<usize> = (0..self.targets.len())
            .filter(|&i| outcomes[i].release.as_deref() == Some(self.id.as_str()))
            .collect();
        let reason = format!(
            "interrupted before the traffic switch; {} goes back to what it had",
            self.idle
        );
        let back = self.back_after_interrupt(outcomes, &switched, reason).await;
        policy::after_interrupted_colour(back)
    }

    /// Traffic to the idle colour and the probe; traffic back if that
    /// fails. Once switch_local starts, it completes and the probe runs,
    /// whatever comes meanwhile: neither is cut by Ctrl-C.
    async fn switch(&self, artifact: &Artifact, outcomes: &mut [HostOutcome]) -> Exit {
        let (ctx, id) = (self.ctx, self.id);
        // `[traffic]`: the weights in steps first, each held.
        if let Err(exit) = self.steps(artifact, outcomes).await {
            return exit;
        }
        let why = "the deploy's switch";
        let switched = switch_traffic(ctx, self.bg, self.idle, self.live, Some(id), why).await;
        let probed = match switched {
            Ok(()) => probe_again(ctx, self.targets, id, artifact).await,
            Err(e) => Err(format!("switch_local failed: {e}")),
        };
        // The colour's part is over: each host confirmed over a fresh
        // connection, or it fails like the probe.
        let probed = match probed {
            Ok(()) => {
                let failed = deadman::confirm_outcomes(ctx, self.targets, outcomes).await;
                match failed.is_empty() {
                    true => Ok(()),
                    false => Err(format!(
                        "{} failed its confirmation after the traffic switch",
                        failed.join("; ")
                    )),
                }
            }
            Err(e) => Err(e),
        };
        let interrupted = ctx.cancel.is_cancelled();
        let Err(reason) = probed else {
            let all: Vec<&Node> = self.targets.iter().chain(self.others).collect();
            let recorded = record_traffic(ctx, &all, self.idle, self.live, Some(id)).await;
            if recorded && interrupted {
                ctx.message(
                    Level::Warn,
                    None,
                    format!(
                        "interrupted after the traffic switch, which completed: {} is live on {id} and passed its probe",
                        self.idle
                    ),
                );
            }
            return policy::after_switch(recorded, interrupted);
        };
        ctx.message(Level::Error, None, reason.clone());
        let traffic_back = self.traffic_back(artifact).await;
        let all: Vec<usize> = (0..self.targets.len()).collect();
        let back = go_back(ctx, self.targets, outcomes, &all, id, reason).await;
        policy::after_traffic_back(traffic_back && back)
    }
}

/// The probe after the switch: the health check of every host of the new
/// live colour, once more. The first failure is the reason to switch back.
async fn probe_again(
    ctx: &Context,
    nodes: &[Node],
    id: &ReleaseId,
    artifact: &Artifact,
) -> Result<(), String> {
    let results = join_all(nodes.iter().map(|node| async move {
        let Some(check) = &node.host.role.health else {
            return (node.name(), Ok(()));
        };
        let env = hooks::host_env(
            ctx,
            node,
            id,
            node.probe.current.as_ref(),
            &artifact.version,
        );
        (node.name(), health::check(ctx, node, check, &env).await)
    }))
    .await;
    match results
        .into_iter()
        .find_map(|(host, r)| r.err().map(|e| (host, e)))
    {
        None => Ok(()),
        Some((host, e)) => Err(format!(
            "{host} failed the probe after the traffic switch: {e}"
        )),
    }
}
