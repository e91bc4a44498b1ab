//! `hoist deploy`: prepare the artifact, preflight every host, lock the
//! fleet, roll out (the engine's `rollout`), unlock.

use crate::artifact::Artifact;
use crate::config::Pause;
use crate::engine::fleet::{self, Node};
use crate::engine::preflight::Problem;
use crate::engine::{
    Context, Failure, HostOutcome, blue_green, lock, policy, preflight, record, rollout, run_hooks,
    shared, strategy, sudo,
};
use crate::exit::Exit;
use crate::journal::{Entry, Journal, Kind};
use crate::release::ReleaseId;
use crate::report::{Event, HostResult, Level, Phase};

#[derive(Debug, Clone, Default)]
pub(crate) struct DeployOptions {
    /// `--dry-run`: say what the deploy would do on each host, change nothing.
    pub dry_run: bool,
    /// Carry the last failed or interrupted deploy on, with its release id.
    pub resume: bool,
    /// `--until canary`: stop after the canary wave; the release waits for promotion.
    pub until_canary: bool,
    /// Blue-green, `--live`: the colour the user says is live.
    pub live: Option<String>,
    /// `--from ENV`: the same file read as ENV, whose live release this
    /// deploy promotes.
    pub from: Option<crate::config::Source>,
}

/// The artifact of the file, prepared (hashed, packed); on failure the
/// run is finished and its exit returned.
pub(super) async fn prepare_artifact(ctx: &Context) -> Result<Artifact, Exit> {
    let prepared = match Preparing::start(ctx) {
        Ok(preparing) => preparing.ready(ctx).await,
        Err(exit) => Err(exit),
    };
    prepared.map_err(|exit| ctx.finish(exit, None, &[]))
}

/// The artifact of the file being prepared (hashed, packed) on a thread of
/// its own, while the hosts are reached: packing a large artifact takes
/// as long as many logins.
pub(super) struct Preparing(tokio::task::JoinHandle<anyhow::Result<Artifact>>);

impl Preparing {
    /// Starts preparing (loading the file made sure the path is there, so
    /// a missing artifact is said before any host is connected to). On
    /// failure, the error is said and the run's exit returned; the caller
    /// finishes the run.
    pub(super) fn start(ctx: &Context) -> Result<Preparing, Exit> {
        let Some(spec) = ctx.config.artifact.clone() else {
            ctx.message(
                Level::Error,
                None,
                format!("{} has no [artifact] to deploy", ctx.config.path.display()),
            );
            return Err(Exit::Usage);
        };
        Ok(Preparing(tokio::task::spawn_blocking(move || {
            Artifact::prepare(&spec)
        })))
    }

    /// The artifact once prepared; on failure the error is said and the
    /// run's exit returned (the caller finishes the run).
    pub(super) async fn ready(self, ctx: &Context) -> Result<Artifact, Exit> {
        match self.0.await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                ctx.message(Level::Error, None, format!("{e:#}"));
                Err(Exit::Usage)
            }
            Err(e) => {
                ctx.message(Level::Error, None, e.to_string());
                Err(Exit::Failed)
            }
        }
    }
}

/// Every problem that stops these nodes from taking `artifact`, reported;
/// warnings are said and stop nothing. Returns how the refusing hosts end.
pub(super) fn preflight(
    ctx: &Context,
    nodes: &[Node],
    artifact: &Artifact,
    app_problems: &[(usize, Problem)],
) -> (Vec<Problem>, Vec<HostOutcome>) {
    let mut refused = Vec::new();
    let mut problems = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let app = app_problems
            .iter()
            .filter(|(n, _)| *n == i)
            .map(|(_, p)| p.clone());
        for problem in preflight::problems(
            &node.probe,
            &node.layout.deploy_to,
            Some(preflight::Wants::of(artifact)),
        )
        .into_iter()
        .chain(app)
        {
            if problem.is_warning() {
                ctx.message(Level::Warn, Some(node.name()), problem.to_string());
                continue;
            }
            let outcome = node.stopped(Failure::Preflight(problem.clone()).at(Phase::Preflight));
            ctx.report(&outcome);
            problems.push(problem);
            refused.push(outcome);
        }
    }
    (problems, refused)
}

/// A release waiting for promotion blocks a new deploy: promote or abort it first.
pub(super) fn waiting_refusal(nodes: &[Node]) -> Option<String> {
    let journals: Vec<&Journal> = nodes.iter().map(|n| &n.journal).collect();
    match policy::waiting(&journals) {
        Ok(None) => None,
        Ok(Some(w)) => Some(format!(
            "{} is waiting for promotion on its canary ({}) since {}, by {}: `hoist promote` carries it on, `hoist abort` rolls the canary back",
            w.release,
            w.canary.join(", "),
            w.since,
            w.by
        )),
        Err(e) => Some(e),
    }
}

pub(crate) async fn run(ctx: &Context, opts: DeployOptions) -> Exit {
    if let Some(exit) = refused_before_connecting(ctx, &opts) {
        return ctx.finish(exit, None, &[]);
    }

    // Packed while the hosts are reached.
    let preparing = match Preparing::start(ctx) {
        Ok(p) => p,
        Err(exit) => return ctx.finish(exit, None, &[]),
    };
    let since = std::time::Instant::now();
    let (mut nodes, mut unreached) = fleet::reach(ctx).await;
    crate::engine::deadman::tell_found(ctx, &nodes);
    let artifact = match preparing.ready(ctx).await {
        Ok(a) => a,
        Err(exit) => {
            fleet::close_all(&nodes).await;
            return ctx.finish(exit, None, &[]);
        }
    };
    if let Some(from) = &opts.from {
        match super::deploy_from::check(ctx, from, &artifact).await {
            Ok(id) => crate::journal::set_stamp(|s| s.promoted_from = Some(id.to_string())),
            Err(exit) => {
                fleet::close_all(&nodes).await;
                return ctx.finish(exit, None, &[]);
            }
        }
    }
    lock::wait_free(ctx, &mut nodes, since).await;
    if let Some(refusal) = waiting_refusal(&nodes) {
        fleet::report_all(ctx, &unreached);
        ctx.message(Level::Error, None, refusal);
        return fleet::stop_untouched(ctx, Exit::Usage, None, &nodes, unreached).await;
    }
    let sides = match &ctx.config.blue_green {
        Some(bg) => blue_green::Sides::read(ctx, bg, &nodes, opts.live.as_deref()).map(Some),
        None => Ok(None),
    };
    let sides = match sides {
        Ok(sides) => sides,
        Err(e) => {
            fleet::report_all(ctx, &unreached);
            ctx.message(Level::Error, None, e);
            return fleet::stop_untouched(ctx, Exit::Usage, None, &nodes, unreached).await;
        }
    };
    // A host that cannot hold the sessions a deploy needs fails here, not at upload.
    unreached.extend(fleet::check_sessions(ctx, &nodes).await);

    let id = match release_id(&nodes, &artifact, opts.resume) {
        Ok(id) => id,
        Err(e) => {
            fleet::report_all(ctx, &unreached);
            ctx.message(Level::Error, None, e);
            fleet::close_all(&nodes).await;
            return ctx.finish(Exit::Usage, None, &[]);
        }
    };
    ctx.emit(Event::RunStarted {
        command: ctx.command.into(),
        app: ctx.config.app.name.clone(),
        release: Some(id.to_string()),
        version: Some(artifact.version.clone()),
        hosts: ctx.hosts.iter().map(|h| h.name.clone()).collect(),
    });
    // After the header, so that plain output starts with the run's line.
    fleet::report_all(ctx, &unreached);
    if !opts.resume {
        warn_far_ahead(ctx, &nodes, chrono::Utc::now());
    }
    let release = Some(id.to_string());

    let became = match sudo::preflight(ctx, &nodes).await {
        Ok(problems) => problems,
        Err(e) => {
            ctx.message(Level::Error, None, e);
            return fleet::stop_untouched(ctx, Exit::Usage, release, &nodes, unreached).await;
        }
    };
    if !opts.dry_run
        && let Err(e) = run_hooks::on_start(ctx, release.as_deref(), Some(&artifact.version)).await
    {
        ctx.message(Level::Error, None, format!("{e}; nothing was touched"));
        return fleet::stop_untouched(ctx, Exit::Preflight, release, &nodes, unreached).await;
    }
    let mut app_problems = shared::problems(ctx, &nodes).await;
    app_problems.extend(became);

    let (problems, refused) = preflight(ctx, &nodes, &artifact, &app_problems);
    let judged = judge_unreached(ctx, &unreached);
    if opts.dry_run {
        let exit = policy::preflight_exit(judged, &problems).unwrap_or(Exit::Ok);
        let failed: Vec<HostOutcome> = unreached.into_iter().chain(refused).collect();
        let (targets, setup) = dry_run_targets(ctx, &opts, sides.as_ref(), nodes).await;
        return super::dry_run::report(ctx, &targets, &failed, &artifact, &id, &setup, exit).await;
    }
    if let Some(exit) = policy::preflight_exit(judged, &problems) {
        let failed = unreached.into_iter().chain(refused).collect();
        return fleet::stop_untouched(ctx, exit, release, &nodes, failed).await;
    }
    let skipped = skip_unreachable(ctx, unreached, judged);

    if let Err(e) = lock::acquire_waiting(ctx, &mut nodes, Some(id.as_str()), None, since).await {
        let (exit, held) = e.outcomes();
        fleet::report_all(ctx, &held);
        return fleet::stop_untouched(ctx, exit, release, &nodes, held).await;
    }

    if let (Some(bg), Some(sides)) = (&ctx.config.blue_green, &sides) {
        let (exit, outcomes, nodes) =
            blue_green::deploy(ctx, bg, sides, nodes, &artifact, &id).await;
        lock::release(ctx, &nodes).await;
        fleet::close_all(&nodes).await;
        return ctx.finish(exit, release, &outcomes);
    }
    let exit = rolling(ctx, opts.until_canary, &nodes, &artifact, &id, skipped).await;
    ctx.finish(exit.0, release, &exit.1)
}

/// The rolling deploy of `id` over the locked `nodes`, to the unlock: its
/// exit (hosts `skipped` as unreachable counted in) and every host's outcome
/// in the inventory's order.
async fn rolling(
    ctx: &Context,
    until_canary: bool,
    nodes: &[Node],
    artifact: &Artifact,
    id: &ReleaseId,
    skipped: Vec<HostOutcome>,
) -> (Exit, Vec<HostOutcome>) {
    let plan = rollout::Setup {
        until_canary,
        ..rollout::Setup::of(&ctx.config.strategy)
    };
    let (exit, mut outcomes) = rollout::rollout(ctx, nodes, artifact, id, &plan).await;
    if until_canary && exit == Exit::Ok {
        await_promotion(ctx, nodes, &outcomes, artifact, id).await;
    }
    lock::release(ctx, nodes).await;
    fleet::close_all(nodes).await;
    let exit = policy::with_skipped(exit, skipped.len());
    outcomes.extend(skipped);
    // Inventory order; looked up by name, not searched (1,000 hosts).
    let at: std::collections::HashMap<&str, usize> = ctx
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i))
        .collect();
    outcomes.sort_by_key(|o| at.get(o.host.as_str()).copied());
    (exit, outcomes)
}

/// What refuses a deploy before any host is reached: `--until canary`
/// without a canary, a blue-green selection that is not whole colours,
/// `--live` without blue-green, a manual canary pause with no one to ask,
/// `[[files]]` that cannot be read.
fn refused_before_connecting(ctx: &Context, opts: &DeployOptions) -> Option<Exit> {
    let strategy = &ctx.config.strategy;
    let canary = strategy::hosts_of(strategy.canary, ctx.hosts.len());
    if opts.until_canary {
        let judged = crate::engine::rollout_plan::selection_waves(&ctx.config, &ctx.hosts)
            .and_then(|waves| policy::until_canary(&waves, ctx.config.blue_green.is_some()));
        if let Err(e) = judged {
            ctx.message(Level::Error, None, e);
            return Some(Exit::Usage);
        }
    }
    if let Some(bg) = &ctx.config.blue_green {
        let selected: Vec<&str> = ctx.hosts.iter().map(|h| h.name.as_str()).collect();
        if let Err(e) = policy::whole_colors(&selected, &bg.colors) {
            ctx.message(Level::Error, None, e);
            return Some(Exit::Usage);
        }
    } else if opts.live.is_some() {
        ctx.message(Level::Error, None, super::LIVE_WITHOUT_BLUE_GREEN);
        return Some(Exit::Usage);
    }
    let has_canary_pause = ctx.config.blue_green.is_none()
        && canary > 0
        && canary < ctx.hosts.len()
        && strategy.canary_pause == Pause::Manual
        && !opts.until_canary;
    if has_canary_pause && !ctx.yes && !ctx.interactive && !opts.dry_run {
        ctx.message(
            Level::Error,
            None,
            "canary_pause is \"manual\" and there is no terminal to ask: pass --yes to promote the canary without asking, or set canary_pause to a duration",
        );
        return Some(Exit::Usage);
    }
    if let Err(e) = shared::load(ctx) {
        ctx.message(Level::Error, None, e);
        return Some(Exit::Usage);
    }

    None
}

/// The hosts a dry run predicts and the rollout it shows: blue-green, the
/// idle colour in waves of its own with no canary (the other hosts'
/// connections are closed); else every host.
async fn dry_run_targets(
    ctx: &Context,
    opts: &DeployOptions,
    sides: Option<&blue_green::Sides>,
    nodes: Vec<Node>,
) -> (Vec<Node>, rollout::Setup) {
    // Blue-green: the idle colour, in waves of its own, no canary.
    match (&ctx.config.blue_green, sides) {
        (Some(bg), Some(sides)) => {
            let idle = &bg.colors[sides.idle].hosts;
            let (targets, others): (Vec<Node>, Vec<Node>) = nodes
                .into_iter()
                .partition(|n| idle.iter().any(|h| h == n.name()));
            fleet::close_all(&others).await;
            let setup = rollout::Setup {
                canary: crate::config::Amount::Hosts(0),
                ..rollout::Setup::of(&ctx.config.strategy)
            };
            (targets, setup)
        }
        _ => {
            let setup = rollout::Setup {
                until_canary: opts.until_canary,
                ..rollout::Setup::of(&ctx.config.strategy)
            };
            (nodes, setup)
        }
    }
}

/// `deploy --until canary` ended well: the fleet's journals say the release
/// waits for promotion on the canary, and the user is told what comes next.
async fn await_promotion(
    ctx: &Context,
    nodes: &[Node],
    outcomes: &[HostOutcome],
    artifact: &Artifact,
    id: &ReleaseId,
) {
    let canary: Vec<String> = outcomes
        .iter()
        .filter(|o| o.result == HostResult::Ok)
        .map(|o| o.host.clone())
        .collect();
    let entry = Entry {
        release: Some(id.to_string()),
        version: Some(artifact.version.clone()),
        sha256: Some(artifact.content_sha.clone()),
        run: Some(ctx.run_id.clone()),
        hosts: canary.clone(),
        ..Entry::new(Kind::AwaitPromotion, &ctx.by)
    };
    record::record_all(ctx, nodes, &entry).await;
    ctx.message(
        Level::Info,
        None,
        format!(
            "{id} waits for promotion on the canary ({}): `hoist promote` carries it on to the other {} host(s), `hoist abort` rolls the canary back",
            canary.join(", "),
            nodes.len() - canary.len()
        ),
    );
}

/// The release this deploy makes: a new id after every id the hosts hold,
/// or, with `--resume`, the one the interrupted deploy was making.
fn release_id(nodes: &[Node], artifact: &Artifact, resume: bool) -> Result<ReleaseId, String> {
    if resume {
        let hosts: Vec<_> = nodes
            .iter()
            .map(|n| (n.probe.current.as_ref(), &n.journal))
            .collect();
        return policy::resume_target(&hosts, &artifact.content_sha);
    }
    let held = nodes.iter().flat_map(held_ids);
    Ok(ReleaseId::next(
        chrono::Utc::now(),
        &artifact.content_sha,
        held,
    ))
}

/// The release ids a host holds: its releases and `current`.
fn held_ids(node: &Node) -> impl Iterator<Item = &ReleaseId> {
    let releases = node.probe.releases.iter().map(|(r, _)| r);
    releases.chain(&node.probe.current)
}

/// Says which host holds a release dated far after this machine's clock,
/// which the new release's id does not follow (see [`ReleaseId::next`]).
fn warn_far_ahead(ctx: &Context, nodes: &[Node], now: chrono::DateTime<chrono::Utc>) {
    for node in nodes {
        let mut ahead: Vec<&str> = held_ids(node)
            .filter(|id| id.is_far_ahead(now))
            .map(ReleaseId::as_str)
            .collect();
        ahead.dedup();
        if ahead.is_empty() {
            continue;
        }
        ctx.message(
            Level::Warn,
            Some(node.name()),
            format!(
                "it holds {}, dated more than a day after this machine's clock ({}): ignored for the new release's id; if this machine's clock is behind, set it right",
                ahead.join(", "),
                now.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        );
    }
}

/// The hosts preflight could not reach or read, against `max_unreachable`.
fn judge_unreached(ctx: &Context, unreached: &[HostOutcome]) -> policy::Unreached {
    let unreachable = unreached
        .iter()
        .filter(|o| o.failure.as_ref().is_some_and(policy::is_unreachable))
        .count();
    // A blue-green deploy takes whole colours: traffic never moves to a
    // colour with a host missing, so there no host may be skipped.
    let allowed = match ctx.config.blue_green {
        Some(_) => 0,
        None => strategy::failures_allowed(ctx.config.strategy.max_unreachable, ctx.hosts.len()),
    };
    policy::Unreached {
        unreachable,
        allowed,
        other: unreached.len() - unreachable,
    }
}

/// The unreachable hosts the rollout goes on without, marked as such.
fn skip_unreachable(
    ctx: &Context,
    unreached: Vec<HostOutcome>,
    judged: policy::Unreached,
) -> Vec<HostOutcome> {
    if !judged.skipped() {
        return Vec::new();
    }
    let skipped: Vec<HostOutcome> = unreached
        .into_iter()
        .map(|mut o| {
            o.result = HostResult::Unreachable;
            o
        })
        .collect();
    let names: Vec<&str> = skipped.iter().map(|o| o.host.as_str()).collect();
    ctx.message(
        Level::Warn,
        None,
        format!(
            "going on without {} unreachable host(s), within max_unreachable ({}): {}; `hoist deploy --resume` reaches them later with this release",
            skipped.len(),
            judged.allowed,
            names.join(", ")
        ),
    );
    skipped
}
