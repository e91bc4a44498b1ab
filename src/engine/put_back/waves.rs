//! Putting hosts back in waves: each wave together, the batch hooks
//! around it, the policy saying when to stop.

use super::{Back, together};
use crate::engine::Context;
use crate::engine::HostOutcome;
use crate::engine::batch::{self, WaveResult};
use crate::engine::fleet::Node;
use crate::engine::policy::{self, BackFor};
use crate::report::{Event, HostResult, Level};

/// How a rollback in waves goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InWaves {
    pub why: BackFor,
    /// The first wave is the canary's host(s).
    pub canary: bool,
    /// `before_batch_local` and `after_batch_local` around each wave.
    pub batch_hooks: bool,
}

/// How going back in waves ended.
pub(crate) struct WentBack {
    /// The outcome of each host that went back or tried to.
    pub moved: Vec<(usize, HostOutcome)>,
    /// Hosts whose wave never went, with their outcome as it was.
    pub unmoved: Vec<(usize, HostOutcome)>,
    /// Why it stopped before the last wave, if it did.
    pub stopped: Option<String>,
}

impl WentBack {
    /// Every host went back and none was left.
    pub(crate) fn all_back(&self) -> bool {
        self.stopped.is_none()
            && self
                .moved
                .iter()
                .all(|(_, o)| o.result != HostResult::Failed)
    }
}

/// Puts `waves` back one after the other (in the order given), each wave
/// together and, with `batch_hooks`, between `before_batch_local` and
/// `after_batch_local` (`HOIST_RESULT` `rolled_back`, or `failed` with the
/// hosts that could not go back): a load balancer's drain and enable hooks
/// take a wave out of the pool while it restarts. When to stop is the
/// policy's ([`policy::rollback_stops`]). An undo is announced once, with
/// `reason`; `hoist rollback`'s waves are its run's waves (`wave_started`,
/// `wave_done`).
pub(crate) async fn in_waves(
    ctx: &Context,
    waves: Vec<Vec<Back<'_>>>,
    how: InWaves,
    reason: &str,
) -> WentBack {
    let count = waves.len();
    if how.why == BackFor::Undo && count > 0 {
        ctx.emit(Event::RollbackStarted {
            hosts: waves
                .iter()
                .flatten()
                .map(|b| b.node.name().to_string())
                .collect(),
            reason: reason.to_string(),
        });
    }
    let mut outcomes = Vec::new();
    let mut stopped = None;
    let mut waves = waves.into_iter().enumerate();
    // The wave that did not go, with those after it.
    let mut unmoved: Vec<Back> = Vec::new();
    for (w, wave) in waves.by_ref() {
        if policy::rollback_stops_before(how.why, ctx.cancel.is_cancelled()) {
            stopped = Some("interrupted".to_string());
            unmoved = wave;
            break;
        }
        match one_wave(ctx, wave, how, w, count).await {
            Err((wave, why)) => {
                stopped = Some(why);
                unmoved = wave;
                break;
            }
            Ok((ended, stop)) => {
                outcomes.extend(ended);
                if stop.is_some() {
                    stopped = stop;
                    break;
                }
            }
        }
    }
    unmoved.extend(waves.flat_map(|(_, wave)| wave));
    let left: Vec<&str> = unmoved.iter().map(|b| b.node.name()).collect();
    if let Some(why) = &stopped
        && !left.is_empty()
    {
        ctx.message(
            Level::Error,
            None,
            format!(
                "rollback stopped: {why}; not rolled back (still where they were): {}",
                left.join(", ")
            ),
        );
    }
    WentBack {
        moved: outcomes,
        unmoved: unmoved.into_iter().map(|b| (b.i, b.outcome)).collect(),
        stopped,
    }
}

/// One wave of [`in_waves`], wave `w` of `count`, going back: how its hosts
/// ended and, when the policy stops the rollback after it, why; or, when
/// its `before_batch_local` failed, the wave (which never went) and why.
async fn one_wave<'a>(
    ctx: &Context,
    wave: Vec<Back<'a>>,
    how: InWaves,
    w: usize,
    count: usize,
) -> Result<(Vec<(usize, HostOutcome)>, Option<String>), (Vec<Back<'a>>, String)> {
    let names: Vec<String> = wave.iter().map(|b| b.node.name().to_string()).collect();
    announce(ctx, how, w, count, &names);
    let target = wave[0].target.clone();
    let version = target
        .as_ref()
        .and_then(|t| wave[0].node.journal.version_of(t))
        .unwrap_or_default();
    let members: Vec<&Node> = wave.iter().map(|b| b.node).collect();
    let env = batch::env(ctx, target.as_ref(), &version, &members);
    if how.batch_hooks
        && let Err(why) = batch::before(ctx, &env).await
    {
        return Err((wave, why));
    }
    let ended = together(ctx, wave, how.why, None).await;
    let not_back: Vec<&str> = ended
        .iter()
        .filter(|(_, o)| o.result == HostResult::Failed)
        .map(|(_, o)| o.host.as_str())
        .collect();
    let result = if not_back.is_empty() {
        WaveResult::RolledBack
    } else {
        WaveResult::Failed
    };
    let after = match how.batch_hooks {
        true => batch::after(ctx, &env, result, &not_back).await,
        false => Ok(()),
    };
    if how.why == BackFor::Rollback {
        ctx.emit(Event::WaveDone {
            wave: w + 1,
            ok: names.len() - not_back.len(),
            failed: not_back.len(),
            skipped: 0,
            interrupted: false,
        });
    }
    let not_back_said = (!not_back.is_empty()).then(|| {
        format!(
            "{} could not go back to {}",
            not_back.join(", "),
            target
                .as_ref()
                .map_or("no release".into(), |t| t.to_string())
        )
    });
    let stop = match after {
        Err(why) if policy::rollback_stops(how.why, true, false) => Some(why),
        Err(why) => {
            ctx.message(
                Level::Warn,
                None,
                format!("{why}; {} went back all the same", names.join(", ")),
            );
            None
        }
        Ok(()) => None,
    };
    let stop =
        stop.or_else(|| not_back_said.filter(|_| policy::rollback_stops(how.why, false, true)));
    Ok((ended, stop))
}

/// Says that wave `w` of `count` goes back: as the run's wave for `hoist
/// rollback`, as a line for an undo in more than one wave.
fn announce(ctx: &Context, how: InWaves, w: usize, count: usize, names: &[String]) {
    match how.why {
        BackFor::Rollback => ctx.emit(Event::WaveStarted {
            wave: w + 1,
            waves: count,
            kind: if w == 0 && how.canary {
                "canary"
            } else {
                "batch"
            }
            .into(),
            hosts: names.to_vec(),
            group: None,
            zone: None,
        }),
        BackFor::Undo if count > 1 => ctx.message(
            Level::Info,
            None,
            format!("rollback wave {}/{count}: {}", w + 1, names.join(", ")),
        ),
        BackFor::Undo => {}
    }
}
