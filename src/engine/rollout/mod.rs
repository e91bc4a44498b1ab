//! The rollout executor: it runs a [`RolloutPlan`] wave by wave (each
//! wave's hosts in parallel, the steps the plan puts between waves, uploads
//! where the plan puts them), stops as the failure policy says, and puts
//! back every host the rollout switched when it stops.

mod back;
mod between;
mod confirm;
mod drain;
mod host;
mod traffic;
mod wave;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ahead::Ahead;
use super::delivery::Delivery;
use super::fleet::Node;
use super::once::Once;
use super::policy::{self, HostState};
use super::rollout_plan::{Member, RolloutPlan, Shape, zone_sizes};
use super::{Context, HostOutcome, hooks, strategy};
use crate::artifact::Artifact;
use crate::config::{Amount, Strategy};
use crate::exit::Exit;
use crate::release::ReleaseId;
use crate::report::{HostResult, Level};
use back::{prune, roll_back};
use wave::{WaveEnd, wave};

/// Where one host stands during and after the rollout.
#[derive(Debug)]
struct HostRun {
    outcome: HostOutcome,
    /// `current` was pointed at the new release by this run.
    switched: bool,
    /// The release it was on before.
    previous: Option<ReleaseId>,
    /// Bytes sent to it for the release.
    sent: Option<u64>,
    /// This run's rollback already took it back (or tried to).
    back: bool,
    /// Out of the load balancer by this run's `drain_local`, not back yet.
    drained: bool,
}

impl HostRun {
    fn untouched(node: &Node) -> HostRun {
        HostRun {
            outcome: HostOutcome::skipped(node.name(), node.current()),
            switched: false,
            previous: node.probe.current.clone(),
            sent: None,
            back: false,
            drained: false,
        }
    }

    fn state(&self) -> HostState {
        HostState {
            failed: self.outcome.result == HostResult::Failed,
            switched: self.switched,
        }
    }
}

/// What shapes one rollout beyond the strategy table.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub canary: Amount,
    pub max_failures: Amount,
    /// Stop after the canary wave (and its bake): `deploy --until canary`.
    pub until_canary: bool,
    /// Hosts already on the release since an earlier run of this deploy (a
    /// canary being promoted), with the release each was on before: they
    /// count as switched, so a failure rolls them back too.
    pub carried: Vec<(usize, Option<ReleaseId>)>,
    /// Confirm the dead-man switch of every host that stays switched at
    /// the end; `false` leaves that to the caller (blue-green confirms
    /// once traffic went to the colour and its probe passed).
    pub confirm: bool,
}

impl Setup {
    pub(crate) fn of(strategy: &Strategy) -> Setup {
        Setup {
            canary: strategy.canary,
            max_failures: strategy.max_failures,
            until_canary: false,
            carried: Vec::new(),
            confirm: true,
        }
    }

    /// The plan this rollout runs over `nodes` for release `id`: hosts
    /// already on it (a resumed deploy) are left out. `Err`: a zone cannot
    /// keep `min_healthy_per_zone` (nothing was changed for it).
    pub(crate) fn plan(
        &self,
        ctx: &Context,
        nodes: &[Node],
        id: &ReleaseId,
        once: bool,
    ) -> Result<RolloutPlan, String> {
        let config = &ctx.config;
        let members: Vec<Member> = pending(nodes, id)
            .into_iter()
            .map(|i| Member {
                node: i,
                groups: &nodes[i].host.groups,
                zone: nodes[i].host.role.zone.as_deref(),
            })
            .collect();
        let reached: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
        let sizes = zone_sizes(&config.hosts, &ctx.hosts, &reached);
        let shape = Shape {
            strategy: &config.strategy,
            canary: self.canary,
            health: nodes.iter().any(|n| n.host.role.health.is_some())
                || !config.analysis.is_empty(),
            once,
            until_canary: self.until_canary,
            groups: &config.group_strategies,
            traffic: config.traffic.as_ref(),
            zone_sizes: &sizes,
        };
        let mut plan = RolloutPlan::of(shape, &members)?;
        plan.throttle = config.hooks.throttle;
        Ok(plan)
    }
}

/// The nodes not yet on `id`, by index.
fn pending(nodes: &[Node], id: &ReleaseId) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| nodes[i].probe.current.as_ref() != Some(id))
        .collect()
}

/// One rollout under way: what its waves and hosts share.
struct Run<'a> {
    ctx: &'a Context,
    nodes: &'a [Node],
    artifact: &'a Artifact,
    /// The artifact, and what the run learns delivering it.
    delivery: Delivery<'a>,
    id: &'a ReleaseId,
    once: Option<Once>,
    /// Cancelled when the rollout stops: no host starts after it.
    halt: CancellationToken,
    /// Why the rollout stops; the first reason given is the one said.
    halted: Mutex<Option<String>>,
    failures: AtomicUsize,
    /// How many hosts may fail before the rollout stops.
    allowed: usize,
    /// `[groups.<g>.strategy] parallel`: an ordered group's own limit,
    /// which its hosts take their slot from instead of `strategy.parallel`.
    group_slots: BTreeMap<String, Semaphore>,
    /// `[traffic]`: the weight last set (a promoted canary's: its last
    /// step's); `None`: none set.
    weight: Mutex<Option<u8>>,
}

impl Run<'_> {
    /// Where host `i` takes its slot: its ordered group's own limit, or
    /// the fleet's.
    fn slots(&self, i: usize) -> &Semaphore {
        let groups = &self.nodes[i].host.groups;
        let ordered = self
            .ctx
            .config
            .strategy
            .order
            .iter()
            .find(|g| groups.contains(g));
        ordered
            .and_then(|g| self.group_slots.get(g))
            .unwrap_or(&self.ctx.parallel)
    }

    fn stop(&self, reason: String) {
        self.halted.lock().unwrap().get_or_insert(reason);
        self.halt.cancel();
    }

    fn halted(&self) -> Option<String> {
        self.halted.lock().unwrap().clone()
    }

    /// The hooks' environment on host `i`, coming from `previous`.
    fn host_env(&self, i: usize, previous: Option<&ReleaseId>) -> Vec<(String, String)> {
        hooks::host_env(
            self.ctx,
            &self.nodes[i],
            self.id,
            previous,
            &self.artifact.version,
        )
    }
}

/// Runs the rollout of `id` over `nodes` as [`Setup::plan`] plans it:
/// returns the exit and how each node ended.
pub(crate) async fn rollout(
    ctx: &Context,
    nodes: &[Node],
    artifact: &Artifact,
    id: &ReleaseId,
    setup: &Setup,
) -> (Exit, Vec<HostOutcome>) {
    let mut hosts: Vec<HostRun> = nodes.iter().map(HostRun::untouched).collect();
    for (i, previous) in &setup.carried {
        hosts[*i].switched = true;
        hosts[*i].previous = previous.clone();
    }
    for (i, node) in nodes.iter().enumerate() {
        if node.probe.current.as_ref() == Some(id) {
            hosts[i].outcome.result = HostResult::Ok;
        }
    }
    let pending = pending(nodes, id);
    // The once hook runs on the plan's first host.
    let planned = setup.plan(ctx, nodes, id, false).and_then(|first| {
        let host = first.waves.first().and_then(|w| w.hosts.first());
        let once = Once::new(ctx, nodes, host.map(|&i| &nodes[i]), id);
        Ok((setup.plan(ctx, nodes, id, once.is_some())?, once))
    });
    let (plan, once) = match planned {
        Ok(planned) => planned,
        Err(refusal) => {
            ctx.message(Level::Error, None, refusal);
            return (Exit::Usage, hosts.into_iter().map(|h| h.outcome).collect());
        }
    };
    let run = Run {
        ctx,
        nodes,
        artifact,
        delivery: Delivery::new(artifact),
        id,
        once,
        halt: ctx.cancel.child_token(),
        halted: Mutex::new(None),
        failures: AtomicUsize::new(0),
        allowed: strategy::failures_allowed(setup.max_failures, pending.len()),
        group_slots: ctx
            .config
            .group_strategies
            .iter()
            .filter_map(|(g, s)| s.parallel.map(|n| (g.clone(), Semaphore::new(n))))
            .collect(),
        weight: Mutex::new(match setup.carried.is_empty() {
            true => None,
            false => ctx
                .config
                .traffic
                .as_ref()
                .and_then(|t| t.steps.last().copied()),
        }),
    };
    let mut ended = WaveEnd {
        said_stop: false,
        back: true,
    };
    let following = {
        let waves = async {
            // Uploads ahead of the next wave, made during the wave before it.
            let mut following: Option<Ahead> = None;
            for w in 0..plan.waves.len() {
                if run.halt.is_cancelled() {
                    break;
                }
                following = wave(&run, &mut hosts, &plan, w, following.take(), &mut ended).await;
            }
            following
        };
        tokio::pin!(waves);
        // A host found gone back by itself stops the rollout there: no later
        // wave starts, a bake ends (the host's own part goes on to its end).
        tokio::select! {
            following = &mut waves => following,
            () = ctx.deadman.found_back() => {
                run.stop("a switched host went back by itself (its dead-man switch)".to_string());
                waves.await
            }
        }
    };
    // Made for a wave that never ran.
    if let Some(unused) = following {
        unused
            .take_back(ctx, nodes, id, |i| hosts[i].sent.is_some())
            .await;
    }
    finish(&run, hosts, &plan, setup, ended).await
}

/// After the last wave ran (or the rollout stopped): what is said, the
/// switched hosts going back when the policy says so (the last wave first,
/// hosts carried from an earlier run last), pruning, and the exit.
async fn finish(
    run: &Run<'_>,
    mut hosts: Vec<HostRun>,
    plan: &RolloutPlan,
    setup: &Setup,
    waves: WaveEnd,
) -> (Exit, Vec<HostOutcome>) {
    let ctx = run.ctx;
    let interrupted = ctx.cancel.is_cancelled();
    let confirmed = confirm::at_the_end(run, &mut hosts, setup.confirm).await;
    let halted = run.halted();
    let states: Vec<HostState> = hosts.iter().map(HostRun::state).collect();
    let verdict = policy::verdict(
        &states,
        halted.is_some(),
        interrupted,
        ctx.config.strategy.on_failure,
    );
    if interrupted {
        // A blue-green deploy says what comes next itself (its idle colour goes back).
        let next = match ctx.config.blue_green {
            Some(_) => "",
            None => "; `hoist deploy --resume` carries this deploy on with the same release",
        };
        ctx.message(
            Level::Warn,
            None,
            format!("interrupted: no new host was started; every host is on a whole release{next}"),
        );
    } else if let Some(reason) = &halted
        && !waves.said_stop
    {
        ctx.message(Level::Error, None, format!("rollout stopped: {reason}"));
    }
    let mut all_back = waves.back;
    if let Some(reason) = &halted
        && !verdict.roll_back.is_empty()
    {
        traffic::zero(run, &hosts).await;
        let carried: Vec<usize> = setup.carried.iter().map(|(i, _)| *i).collect();
        let left: Vec<Vec<usize>> = plan
            .waves
            .iter()
            .rev()
            .map(|w| &w.hosts)
            .chain(std::iter::once(&carried))
            .map(|wave| {
                wave.iter()
                    .copied()
                    .filter(|i| verdict.roll_back.contains(i) && !hosts[*i].back)
                    .collect::<Vec<usize>>()
            })
            .filter(|wave| !wave.is_empty())
            .collect();
        all_back &= roll_back(run, &mut hosts, &left, reason).await;
        if all_back {
            traffic::rebalanced(run, &hosts).await;
        }
    }
    if verdict.prune {
        prune(run, &hosts).await;
    }
    let once_failed = run.once.as_ref().is_some_and(Once::failed) && !interrupted;
    let exit = policy::rollout_exit(&verdict, all_back, once_failed, &states);
    let touched_back = hosts
        .iter()
        .filter(|h| h.switched)
        .all(|h| h.outcome.result == HostResult::RolledBack);
    let mut exit = policy::after_self_reverts(exit, confirmed > 0, touched_back);
    if exit == Exit::Ok
        && !setup.until_canary
        && let Err(e) = traffic::done(run, &hosts).await
    {
        ctx.message(
            Level::Error,
            None,
            format!("every host is on the new release, but set_local at 100% did not pass: {e}; the load balancer still has the last weight set"),
        );
        exit = Exit::Failed;
    }
    (exit, hosts.into_iter().map(|h| h.outcome).collect())
}
