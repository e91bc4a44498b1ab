//! Uploads ahead of a wave, where the plan puts them
//! ([`super::rollout_plan::Upload`]). While the rollout waits before a wave (the
//! canary's bake or a timed `canary_pause`, a `batch_pause`), the link to
//! the hosts is idle: the next wave's hosts get their release then, so that
//! their wave only has to switch them. With no pause between batch waves,
//! the next wave's hosts get theirs while a wave runs its hooks, switches
//! and passes its health check, as soon as every host of it has its own
//! upload ([`Uploading`]). Never before the canary's own wave is over: the
//! canary still fails within seconds, before anything else is sent.
//! A host whose wave never starts (the canary failed its bake, Ctrl-C)
//! has what was made for it taken back, so
//! that a host the rollout never reached is left as it was.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::join_all;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::delivery::Delivery;
use super::fleet::Node;
use super::payload::deliver;
use super::relay::relay_wave;
use super::{Context, Failed, Failure};
use crate::release::ReleaseId;
use crate::report::{Level, Phase};

/// A delivery's result: the bytes sent, or how it failed.
type Delivered = Result<u64, Failed>;

/// The uploads ahead of one wave, and what became of each.
#[derive(Default)]
pub(crate) struct Ahead {
    /// Host (index into the nodes) and where its upload's result goes.
    senders: Mutex<Vec<(usize, oneshot::Sender<Delivered>)>>,
    receivers: Mutex<HashMap<usize, oneshot::Receiver<Delivered>>>,
    /// Hosts on which an upload ahead made the release.
    made: Mutex<Vec<usize>>,
}

impl Ahead {
    /// Uploads ahead of the wave of `hosts`: made during the pause before
    /// it, or while the wave before it runs, once that wave is past its own
    /// ([`Uploading::past_or`]).
    pub fn during(hosts: &[usize]) -> Ahead {
        let (senders, receivers) = hosts
            .iter()
            .map(|&i| {
                let (tx, rx) = oneshot::channel();
                ((i, tx), (i, rx))
            })
            .unzip();
        Ahead {
            senders: Mutex::new(senders),
            receivers: Mutex::new(receivers),
            made: Mutex::default(),
        }
    }

    /// Whether host `i`'s upload is made ahead (or is being made).
    pub fn covers(&self, i: usize) -> bool {
        self.receivers.lock().unwrap().contains_key(&i)
    }

    /// Makes the release on each host, at most `parallel` at once; ends
    /// when all are made or failed, or the rollout halts (a host not yet
    /// started then gets nothing).
    pub async fn upload(
        &self,
        ctx: &Context,
        nodes: &[Node],
        delivery: &Delivery<'_>,
        id: &ReleaseId,
        halt: &CancellationToken,
    ) {
        let senders = std::mem::take(&mut *self.senders.lock().unwrap());
        if senders.is_empty() {
            return;
        }
        ctx.message(
            Level::Info,
            None,
            format!(
                "uploading to the next wave's {} host(s) meanwhile",
                senders.len()
            ),
        );
        let hosts: Vec<usize> = senders.iter().map(|&(i, _)| i).collect();
        let relayed = Mutex::new(relay_wave(ctx, nodes, delivery, id, &hosts, halt).await);
        if halt.is_cancelled() {
            // Halted during the relay: any of them may hold the release.
            let fresh = hosts.iter().filter(|&&i| !nodes[i].probe.has_release(id));
            self.made.lock().unwrap().extend(fresh);
        }
        let relayed = &relayed;
        join_all(senders.into_iter().map(|(i, tx)| async move {
            let node = &nodes[i];
            let (served, spent) = {
                let mut relayed = relayed.lock().unwrap();
                let spent = relayed.spent.remove(&i).unwrap_or(0);
                (relayed.served.remove(&i), spent)
            };
            let delivered = if let Some(Ok(sent)) = served {
                Ok(sent)
            } else {
                let _permit = ctx.parallel.acquire().await.expect("semaphore open");
                if halt.is_cancelled() {
                    return;
                }
                // What a seed's relay stream took from here is its own too.
                deliver(ctx, node, delivery, id, halt)
                    .await
                    .map(|sent| sent + spent)
            };
            match &delivered {
                Ok(_) => {
                    if !node.probe.has_release(id) {
                        self.made.lock().unwrap().push(i);
                    }
                    ctx.phase(node.name(), Phase::Ready);
                }
                // Cut short by the halt: its last remote step may still have
                // made the release, so it is taken back like one made.
                Err(failed)
                    if matches!(failed.failure, Failure::Halted) && !node.probe.has_release(id) =>
                {
                    self.made.lock().unwrap().push(i);
                }
                // Said now, not only when the wave starts: a bake can be long.
                Err(failed) if !matches!(failed.failure, Failure::Halted | Failure::Interrupted) => {
                    ctx.message(
                        Level::Warn,
                        Some(node.name()),
                        format!(
                            "the upload ahead of its wave failed ({}); it fails when its wave starts",
                            failed.failure
                        ),
                    );
                }
                // Halted (not by Ctrl-C) as it was ending: the host may hold
                // the whole release already, which goes back with the rest.
                Err(failed) if matches!(failed.failure, Failure::Halted) => {
                    if !node.probe.has_release(id) {
                        self.made.lock().unwrap().push(i);
                    }
                }
                Err(_) => {}
            }
            let _ = tx.send(delivered);
        }))
        .await;
    }

    /// How host `i`'s upload ahead ended, once it has; `None` when it had
    /// none (it uploads in its wave, as usual).
    pub async fn take(&self, i: usize) -> Option<Delivered> {
        let rx = self.receivers.lock().unwrap().remove(&i)?;
        Some(match rx.await {
            Ok(delivered) => delivered,
            // Halted before this host's upload began.
            Err(_) => Err(Failure::Halted.at(Phase::Upload)),
        })
    }

    /// Takes back the release made ahead on every host whose part of the
    /// rollout never started (`started(i)` false). A host that cannot be
    /// cleaned is warned about: it holds a whole, verified release that
    /// no host points at.
    pub async fn take_back(
        &self,
        ctx: &Context,
        nodes: &[Node],
        id: &ReleaseId,
        started: impl Fn(usize) -> bool,
    ) {
        let unused = self
            .made
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|&i| !started(i))
            .collect::<std::collections::BTreeSet<usize>>();
        if unused.is_empty() {
            return;
        }
        ctx.message(
            Level::Info,
            None,
            format!(
                "taking back {id} from the {} host(s) it was uploaded to ahead of a wave that did not run",
                unused.len()
            ),
        );
        join_all(unused.into_iter().map(|i| async move {
            let node = &nodes[i];
            let script = node.layout.prune(std::slice::from_ref(id));
            if let Err(e) = node
                .must_within("taking back the release", &script, None, node.quick_limit())
                .await
            {
                ctx.message(
                    Level::Warn,
                    Some(node.name()),
                    format!("could not take back {id}, uploaded ahead of its wave: {e}"),
                );
            }
        }))
        .await;
    }
}

/// A wave's hosts not yet past their upload: the uploads ahead of the next
/// wave wait for none to be left.
pub(crate) struct Uploading {
    left: AtomicUsize,
    done: CancellationToken,
}

impl Uploading {
    pub fn new(hosts: usize) -> Uploading {
        let done = CancellationToken::new();
        if hosts == 0 {
            done.cancel();
        }
        Uploading {
            left: AtomicUsize::new(hosts),
            done,
        }
    }

    /// Returns once no host is left, or once `over` is cancelled (the
    /// wave ended, however it did).
    pub async fn past_or(&self, over: &CancellationToken) {
        tokio::select! {
            _ = self.done.cancelled() => {}
            _ = over.cancelled() => {}
        }
    }

    /// One host's part: it counts down once, when [`Passed::now`] is
    /// called or, at the latest, when it is dropped (a host that failed or
    /// never started is past its upload too).
    pub fn host(&self) -> Passed<'_> {
        Passed(Some(self))
    }
}

/// One host of an [`Uploading`] wave, until it is past its upload.
pub(crate) struct Passed<'a>(Option<&'a Uploading>);

impl Passed<'_> {
    pub fn now(&mut self) {
        if let Some(wave) = self.0.take()
            && wave.left.fetch_sub(1, Ordering::SeqCst) == 1
        {
            wave.done.cancel();
        }
    }
}

impl Drop for Passed<'_> {
    fn drop(&mut self) {
        self.now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wave_is_past_its_uploads_once_every_host_counted_down_once() {
        let wave = Uploading::new(3);
        let mut first = wave.host();
        first.now();
        first.now();
        assert!(!wave.done.is_cancelled(), "one host counts once");
        let second = wave.host();
        drop(second);
        assert!(!wave.done.is_cancelled());
        {
            // A host that failed or never started counts when dropped.
            let _third = wave.host();
        }
        assert!(wave.done.is_cancelled());
        drop(first);
        assert_eq!(wave.left.load(Ordering::SeqCst), 0, "never below zero");
    }

    #[test]
    fn an_empty_wave_is_past_its_uploads_at_once() {
        assert!(Uploading::new(0).done.is_cancelled());
    }
}
