//! The fleet lock: taken on every selected host before any change, freed on
//! every exit path.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::fleet::Node;
pub(crate) use super::layout::LockInfo;
use super::layout::{LockAnswer, LockState, Mark, UnlockAnswer, unrecorded};
use super::preflight::{Problem, locked};
use super::{Context, Failure, HostOutcome, policy};
use crate::exit::Exit;
use crate::journal::{Entry, Kind};
use crate::report::{Level, Phase};
use crate::transport::TransportError;

/// Someone else holds the lock on a host.
pub(crate) struct Held {
    pub host: String,
    pub state: LockState,
}

impl Context {
    fn lock_info(&self, release: Option<&str>, message: Option<&str>) -> LockInfo {
        LockInfo {
            by: self.by.clone(),
            pid: std::process::id(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            token: self.run_id.clone(),
            release: release.map(str::to_string),
            message: message.map(str::to_string),
            env: crate::journal::stamp().env,
            hand: self.command == "lock",
        }
    }

    fn journal_entry(&self, kind: Kind, release: Option<&str>, message: Option<&str>) -> Entry {
        Entry {
            release: release.map(str::to_string),
            run: Some(self.run_id.clone()),
            message: message.map(str::to_string),
            ..Entry::new(kind, &self.by)
        }
    }
}

/// Takes the lock on every node, and returns each node's [`Mark`] as taking
/// it read it (in node order). If any host is held by someone else, frees
/// what was taken and returns who holds it; a host that fails outright is an
/// error too (and also frees what was taken).
///
/// The first host by name is locked alone before the others: of two runs
/// racing for one fleet, the one that takes it goes on to take the rest,
/// and the other finds it held and takes nothing (locking every host at
/// once, each would get some and both would give up).
pub(crate) async fn acquire(
    ctx: &Context,
    nodes: &[Node],
    release: Option<&str>,
    message: Option<&str>,
) -> Result<Vec<Mark>, LockError> {
    let info = serde_json::to_string(&ctx.lock_info(release, message)).expect("serializes");
    let entry = ctx.journal_entry(Kind::Lock, release, message).to_line();
    let take = |i: usize| {
        let node = &nodes[i];
        let script = node.layout.lock(&info, &entry);
        async move {
            ctx.phase(node.name(), Phase::Lock);
            let out = node.must("taking the lock", &script, None).await?;
            let text = out.stdout_str();
            let answer = LockAnswer::parse(&text).map_err(Failure::Answer)?;
            if let Some(why) = unrecorded(&text) {
                ctx.notes.unrecorded(node.name());
                ctx.message(
                    Level::Warn,
                    Some(node.name()),
                    format!("locked, but the lock's journal line could not be written ({why})"),
                );
            }
            Ok(answer)
        }
    };
    let Some(first) = (0..nodes.len()).min_by_key(|&i| nodes[i].name()) else {
        return Ok(Vec::new());
    };
    let mut results: Vec<Option<Result<LockAnswer, Failure>>> =
        nodes.iter().map(|_| None).collect();
    let gate = take(first).await;
    let through = matches!(gate, Ok(LockAnswer::Acquired(_)));
    results[first] = Some(gate);
    if through {
        let rest = join_all(
            (0..nodes.len())
                .filter(|&i| i != first)
                .map(|i| async move { (i, take(i).await) }),
        )
        .await;
        for (i, result) in rest {
            results[i] = Some(result);
        }
    }
    let mut held = Vec::new();
    let mut failed = Vec::new();
    let mut taken = Vec::new();
    let mut marks = Vec::new();
    for (node, result) in nodes.iter().zip(results) {
        match result {
            None => {}
            Some(Ok(LockAnswer::Acquired(mark))) => {
                taken.push(node);
                marks.push(mark);
            }
            Some(Ok(LockAnswer::Held(state))) => held.push(Held {
                host: node.name().to_string(),
                state,
            }),
            Some(Err(f)) => failed.push((node.name().to_string(), f)),
        }
    }
    if held.is_empty() && failed.is_empty() {
        return Ok(marks);
    }
    release_nodes(ctx, &taken, None).await;
    if !held.is_empty() {
        Err(LockError::Held(held))
    } else {
        Err(LockError::Failed(failed))
    }
}

/// `--lock-wait`: while someone else's lock is on any node (as its probe
/// says), polls every second or so (jittered) until it is free or the wait
/// that began at `since` is over, saying who holds it. Every node is read
/// again at each poll, so afterwards the nodes describe the fleet as the
/// lock's holder left it. Returns whether no lock is left.
pub(crate) async fn wait_free(ctx: &Context, nodes: &mut [Node], since: Instant) -> bool {
    let mut shown: Option<String> = None;
    loop {
        let held: Vec<(&str, LockState)> = nodes
            .iter()
            .filter_map(|n| Some((n.name(), n.probe.lock_state()?)))
            .collect();
        let Some((_, state)) = held.first() else {
            if shown.is_some() {
                ctx.message(
                    Level::Info,
                    None,
                    format!(
                        "the lock was freed after {}",
                        humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                    ),
                );
            }
            return true;
        };
        let Some(pause) = policy::next_lock_poll(since.elapsed(), ctx.lock_wait, jitter()) else {
            return false;
        };
        let who = state.describe();
        if shown.as_deref() != Some(who.as_str()) {
            ctx.message(
                Level::Info,
                None,
                format!(
                    "waiting up to {} for the lock on {} host(s), held by {who}",
                    humantime::format_duration(ctx.lock_wait),
                    held.len()
                ),
            );
            shown = Some(who);
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = ctx.cancel.cancelled() => return false,
        }
        join_all(nodes.iter_mut().map(|n| async move {
            if let Err(e) = n.refresh().await {
                ctx.message(
                    Level::Warn,
                    Some(n.name()),
                    format!("could not read the host again while waiting for the lock: {e}"),
                );
            }
        }))
        .await;
    }
}

/// [`acquire`], waiting for a lock someone else holds as long as
/// `--lock-wait` allows (see [`wait_free`]). The marks are those of the
/// last try, to compare with the nodes' probes, which are read again
/// before each new try.
pub(crate) async fn acquire_waiting(
    ctx: &Context,
    nodes: &mut [Node],
    release: Option<&str>,
    message: Option<&str>,
    since: Instant,
) -> Result<Vec<Mark>, LockError> {
    loop {
        match acquire(ctx, nodes, release, message).await {
            Err(LockError::Held(held))
                if policy::next_lock_poll(since.elapsed(), ctx.lock_wait, 0.0).is_some() =>
            {
                // Taken between the probe and our try: wait for it again.
                join_all(nodes.iter_mut().map(|n| n.refresh())).await;
                if !wait_free(ctx, nodes, since).await {
                    return Err(LockError::Held(held));
                }
            }
            other => return other,
        }
    }
}

/// 0..1, different for each run and poll.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

pub(crate) enum LockError {
    Held(Vec<Held>),
    Failed(Vec<(String, Failure)>),
}

/// Frees this run's lock on every node. Never fails the run: a lock that
/// cannot be freed is reported loudly.
pub(crate) async fn release(ctx: &Context, nodes: &[Node]) {
    let refs: Vec<&Node> = nodes.iter().collect();
    release_nodes(ctx, &refs, None).await;
}

/// How many times the final unlock is tried on a host before it is left.
const UNLOCK_ATTEMPTS: u32 = 3;

async fn release_nodes(ctx: &Context, nodes: &[&Node], message: Option<&str>) {
    let entry = ctx.journal_entry(Kind::Unlock, None, message).to_line();
    let token = format!("\"token\":\"{}\"", ctx.run_id);
    join_all(nodes.iter().map(|node| {
        let script = node.layout.unlock(Some(&token), &entry);
        async move {
            match free(node, &script).await {
                Ok((UnlockAnswer::Freed, lost)) => {
                    if let Some(why) = lost {
                        ctx.notes.unrecorded(node.name());
                        ctx.message(
                            Level::Warn,
                            Some(node.name()),
                            format!("the lock was freed, but its journal line could not be written ({why})"),
                        );
                    }
                }
                // Its dead-man switch went back and freed it, as it says.
                Ok((UnlockAnswer::Absent, _)) if ctx.deadman.reverted(node.name()) => {}
                Ok((UnlockAnswer::Absent, _)) => ctx.message(
                    Level::Warn,
                    Some(node.name()),
                    "our lock was gone when we came to free it (someone forced it open?)",
                ),
                Ok((UnlockAnswer::Other(state), _)) => ctx.message(
                    Level::Warn,
                    Some(node.name()),
                    format!("the lock is no longer ours, so it was left: {}", locked(&state)),
                ),
                Err(e) => {
                    let when = if unreached(&e) {
                        " once the host can be reached"
                    } else {
                        ""
                    };
                    ctx.message(
                        Level::Error,
                        Some(node.name()),
                        format!("could not free the lock: {e}; it is this run's (pid {}): free it with `hoist unlock`{when}", std::process::id()),
                    )
                }
            }
        }
    }))
    .await;
}

/// Runs the unlock script within the host's command timeout, again (up to
/// [`UNLOCK_ATTEMPTS`] times, a second apart and more) when it fails short of
/// a timeout: a loaded machine or a busy sshd must not leave the fleet
/// locked. A timeout is not tried again: it has had a whole command timeout.
async fn free(node: &Node, script: &str) -> Result<(UnlockAnswer, Option<String>), Failure> {
    let mut attempt = 1;
    loop {
        let answer = node
            .must("freeing the lock", script, None)
            .await
            .and_then(|out| {
                let text = out.stdout_str();
                let answer = UnlockAnswer::parse(&text).map_err(Failure::Answer)?;
                Ok((answer, unrecorded(&text)))
            });
        match answer {
            Err(e) if attempt < UNLOCK_ATTEMPTS && !timed_out(&e) => {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

fn timed_out(e: &Failure) -> bool {
    matches!(e, Failure::Transport(TransportError::Timeout { .. }))
}

/// The failure says the host could not be reached (not that it answered).
fn unreached(e: &Failure) -> bool {
    matches!(
        e,
        Failure::Transport(
            TransportError::Unreachable { .. } | TransportError::Disconnected { .. }
        )
    )
}

/// Frees a lock by hand: the caller's own (same user@machine), or anyone's
/// (and anything at the lock path) with `force`.
pub(crate) async fn unlock_by_hand(
    ctx: &Context,
    node: &Node,
    force: bool,
) -> Result<UnlockAnswer, Failure> {
    let kind = if force {
        Kind::ForceUnlock
    } else {
        Kind::Unlock
    };
    let message = node.probe.lock_state().map(|state| match state {
        LockState::File(line) => format!("was held by {}", LockInfo::describe(&line)),
        LockState::Other(what) => format!(".hoist/lock was {what}"),
    });
    let entry = ctx.journal_entry(kind, None, message.as_deref()).to_line();
    let mine = format!("\"by\":\"{}\"", ctx.by);
    let script = node
        .layout
        .unlock(if force { None } else { Some(&mine) }, &entry);
    let out = node.must("freeing the lock", &script, None).await?;
    UnlockAnswer::parse(&out.stdout_str()).map_err(Failure::Answer)
}

impl LockError {
    /// The exit (4 when someone holds the lock, 3 when a host failed) and
    /// how each host that stopped the lock ended.
    pub(crate) fn outcomes(self) -> (Exit, Vec<HostOutcome>) {
        let failed = |host: &str, failure: Failure| {
            HostOutcome::failed(host, failure.at(Phase::Lock), None, Duration::ZERO)
        };
        match self {
            LockError::Held(held) => (
                Exit::Locked,
                held.into_iter()
                    .map(|h| failed(&h.host, Failure::Preflight(Problem::Locked(h.state))))
                    .collect(),
            ),
            LockError::Failed(list) => (
                Exit::Preflight,
                list.into_iter().map(|(host, f)| failed(&host, f)).collect(),
            ),
        }
    }
}
