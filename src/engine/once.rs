//! `before_switch_once`: once per deploy, on the first host of the first
//! wave, in its new release, before any host is switched. Every other host
//! waits for it at its switch; if it fails (or never runs), no host is
//! switched. Its result is written to that host's journal, then to every
//! other host's once the wave ends, so that a resumed deploy of the same
//! release does not run it again, and a release whose once hook failed is
//! never a rollback or resume target, even with the host it ran on
//! unreachable.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::fleet::Node;
use super::{Context, Failed, Failure, at, hooks, record};
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use crate::report::{Level, Phase};

/// The once hook of one deploy, and the gate every switch waits at.
pub(crate) struct Once {
    /// The host it runs on.
    host: String,
    /// Dropped without a `true` sent: the hook failed or never ran.
    open: Mutex<Option<watch::Sender<bool>>>,
    passed: watch::Receiver<bool>,
    failed: AtomicBool,
    /// What the hook's host recorded, until the other hosts have it too.
    untold: Mutex<Option<Entry>>,
}

impl Once {
    /// The once hook of a deploy of `id` whose first host is `first`;
    /// `None` when there is none to run: no hook, no host left, or it
    /// already succeeded for this release (a resumed deploy).
    pub fn new(
        ctx: &Context,
        nodes: &[Node],
        first: Option<&Node>,
        id: &ReleaseId,
    ) -> Option<Once> {
        if ctx.config.hooks.before_switch_once.is_empty() {
            return None;
        }
        if let Some(node) = nodes.iter().find(|n| n.journal.once_done(id)) {
            ctx.message(
                Level::Info,
                None,
                format!(
                    "before_switch_once already ran for {id} (on {}); not run again",
                    node.name()
                ),
            );
            return None;
        }
        let (open, passed) = watch::channel(false);
        Some(Once {
            host: first?.name().to_string(),
            open: Mutex::new(Some(open)),
            passed,
            failed: AtomicBool::new(false),
            untold: Mutex::new(None),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// On the once host, in its prepared release: runs the hook and
    /// records the result in the host's journal. Elsewhere, nothing.
    pub async fn run_on(
        &self,
        ctx: &Context,
        node: &Node,
        id: &ReleaseId,
        dir: &str,
        env: &[(String, String)],
    ) -> Result<(), Failed> {
        if node.name() != self.host {
            return Ok(());
        }
        let hooks = &ctx.config.hooks.before_switch_once;
        let ran = hooks::run_remote(ctx, node, Phase::BeforeSwitchOnce, hooks, dir, env).await;
        let kind = if ran.is_ok() {
            Kind::OnceDone
        } else {
            Kind::OnceFailed
        };
        let entry = Entry {
            release: Some(id.to_string()),
            run: Some(ctx.run_id.clone()),
            ..Entry::new(kind, &ctx.by)
        };
        let recorded = node
            .must(
                "recording before_switch_once in the journal",
                &node.layout.record(&entry.to_line()),
                None,
            )
            .await;
        *self.untold.lock().unwrap() = Some(entry);
        ran.map_err(at(Phase::BeforeSwitchOnce))?;
        recorded.map_err(at(Phase::BeforeSwitchOnce))?;
        if let Some(open) = self.open.lock().unwrap().take() {
            let _ = open.send(true);
        }
        Ok(())
    }

    /// After the once host's part ended, however it ended: a hook that did
    /// not pass closes the gate for good.
    pub fn settle(&self, node: &str) {
        if node != self.host {
            return;
        }
        if self.open.lock().unwrap().take().is_some() || !*self.passed.borrow() {
            self.failed.store(true, Ordering::SeqCst);
        }
    }

    /// Once the hook ran (and its wave ended): records its result in the
    /// journal of every other node, so that any one of them tells a later
    /// run. A host that cannot take it is warned about. Does nothing before
    /// the hook ran, or a second time.
    pub async fn tell_the_others(&self, ctx: &Context, nodes: &[Node]) {
        let Some(entry) = self.untold.lock().unwrap().take() else {
            return;
        };
        let others = nodes.iter().filter(|n| n.name() != self.host);
        record::record_all(ctx, others, &entry).await;
    }

    /// Whether the hook failed or never ran: no host may switch.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits at the switch until the hook passed; `Halted` when it failed,
    /// never ran, or the rollout halts meanwhile.
    pub async fn wait(&self, halt: &CancellationToken) -> Result<(), Failure> {
        let mut passed = self.passed.clone();
        tokio::select! {
            r = passed.wait_for(|ok| *ok) => r.map(|_| ()).map_err(|_| Failure::Halted),
            _ = halt.cancelled() => Err(Failure::Halted),
        }
    }
}
