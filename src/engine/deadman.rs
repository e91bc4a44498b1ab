//! The dead-man switch (issue 25): before a host's `current` moves, a
//! watchdog is started on it ([`arming`], in the switch's own command)
//! that puts it back by itself unless hoist keeps it waiting (a heartbeat over the run's connection every few
//! seconds) and, once the host's part is over, confirms it over a fresh
//! connection ([`confirm`]), which proves the host can still be reached
//! after its switch. A host hoist puts back itself is disarmed
//! ([`disarm`]). `strategy.deadman_timeout = "0s"` arms nothing.

mod heartbeat;
pub(crate) mod scripts;
mod settle;

pub(crate) use settle::{
    confirm_all, confirm_outcomes, disarm, found_reason, tell_found, unconfirmed, went_back,
};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::fleet::Node;
use super::{Context, app_layout, hooks};
use crate::journal::{Entry, Kind};
use crate::release::ReleaseId;
use heartbeat::Heartbeat;
use scripts::Watchdog;

/// The watchdogs this run armed, by host, and the hosts whose watchdog
/// went back by itself while the run was alive.
#[derive(Default)]
pub(crate) struct Watch {
    armed: Mutex<HashMap<String, Armed>>,
    reverted: Arc<Mutex<Vec<String>>>,
    /// Cancelled when a heartbeat finds a host gone back by itself: the
    /// rollout stops then, not at its end.
    found_back: CancellationToken,
}

/// One armed host: its heartbeat task's stop, whether it is being settled
/// (confirmed or disarmed: its heartbeat's own "gone" is then left to the
/// settling's answer, since the settling itself ends the watchdog), and
/// what it was armed for.
struct Armed {
    stop: CancellationToken,
    settling: Arc<AtomicBool>,
    release: ReleaseId,
    previous: Option<ReleaseId>,
}

impl Watch {
    fn take(&self, host: &str) -> Option<Armed> {
        let armed = self
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host);
        if let Some(armed) = &armed {
            armed.stop.cancel();
        }
        armed
    }

    /// Marks `host` as being settled (see [`Armed`]): false when this run
    /// did not arm it, or settled it already.
    fn settling(&self, host: &str) -> bool {
        let armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match armed.get(host) {
            Some(armed) => !armed.settling.swap(true, Ordering::SeqCst),
            None => false,
        }
    }

    /// Whether this run armed `host`, and has not confirmed or disarmed it.
    fn is_armed(&self, host: &str) -> bool {
        let armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        armed.contains_key(host)
    }

    /// Ends when a heartbeat finds a host that went back by itself.
    pub(crate) async fn found_back(&self) {
        self.found_back.cancelled().await
    }

    /// Whether the host's watchdog went back by itself during this run.
    pub(crate) fn reverted(&self, host: &str) -> bool {
        let reverted = self.reverted.lock().unwrap_or_else(|e| e.into_inner());
        reverted.iter().any(|h| h == host)
    }

    /// The hosts still armed (nothing confirmed or disarmed them).
    pub(crate) fn still_armed(&self) -> Vec<String> {
        let armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let mut hosts: Vec<String> = armed.keys().cloned().collect();
        hosts.sort();
        hosts
    }
}

/// The whole seconds of a timeout (at least one).
fn secs(timeout: Duration) -> u64 {
    timeout.as_secs_f64().ceil().max(1.0) as u64
}

/// How often the deadline is pushed on: a quarter of the timeout, between
/// one and five seconds.
pub(crate) fn interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// How long one heartbeat may take before it is given up and the next is
/// tried: half the timeout (at least one interval). A beat on a session of
/// its own can wait on a slow login (a host's rc files, a lock they take);
/// the next one may find the run's shell idle and go through at once.
fn beat_limit(timeout: Duration) -> Duration {
    (timeout / 2).max(interval(timeout))
}

/// Why a watchdog goes back, in the journal and the events.
pub(crate) fn reason(timeout: Duration) -> String {
    format!(
        "no heartbeat or confirmation from hoist for {}",
        humantime::format_duration(timeout)
    )
}

/// What arms one host's watchdog: the script that starts it, run in the
/// switch's own command (one round trip for both, the watchdog first:
/// `current` never moves unwatched), and what starts its heartbeat once
/// that ran ([`Arming::started`]).
pub(crate) struct Arming {
    script: String,
    beat: Heartbeat,
    armed: Armed,
}

/// The arming of `node`'s watchdog for `id` (coming from `previous`), or
/// nothing when `deadman_timeout` is zero.
pub(crate) fn arming(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    previous: Option<&ReleaseId>,
) -> Option<Arming> {
    let timeout = ctx.config.strategy.deadman_timeout;
    if timeout.is_zero() {
        return None;
    }
    let lines = journal_lines(ctx, node, id, previous, timeout);
    let dog = Watchdog {
        layout: &node.layout,
        run: &ctx.run_id,
        armed: id,
        previous,
        after_rollback: after_rollback(ctx, node, id, previous),
        reverted: lines[0].clone(),
        reverted_hook_failed: lines[1].clone(),
        freed: lines[2].clone(),
        timeout_secs: secs(timeout),
    };
    let settling = Arc::new(AtomicBool::new(false));
    let beat = Heartbeat {
        settling: settling.clone(),
        found_back: ctx.deadman.found_back.clone(),
        conn: node.conn.clone(),
        script: scripts::heartbeat(&node.layout, &ctx.run_id),
        every: interval(timeout),
        limit: beat_limit(timeout),
        host: node.name().to_string(),
        from: id.clone(),
        to: previous.cloned(),
        reason: reason(timeout),
        reporter: ctx.reporter.clone(),
        reverted: ctx.deadman.reverted.clone(),
        timeout,
    };
    let armed = Armed {
        stop: CancellationToken::new(),
        settling,
        release: id.clone(),
        previous: previous.cloned(),
    };
    Some(Arming {
        script: dog.arm(),
        beat,
        armed,
    })
}

impl Arming {
    /// The script that starts the watchdog (exits non-zero when it cannot).
    pub(crate) fn script(&self) -> &str {
        &self.script
    }

    /// The watchdog runs on `node`: its heartbeat starts, and the run
    /// knows it is armed (to confirm or disarm it).
    pub(crate) fn started(self, ctx: &Context, node: &Node) {
        tokio::spawn(self.beat.run(self.armed.stop.clone()));
        let replaced = ctx
            .deadman
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.name().to_string(), self.armed);
        if let Some(old) = replaced {
            old.stop.cancel();
        }
    }
}

/// The journal lines the watchdog writes, split around their time (which
/// the host fills in): gone back, gone back with after_rollback failed,
/// the lock freed.
fn journal_lines(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    previous: Option<&ReleaseId>,
    timeout: Duration,
) -> [(String, String); 3] {
    const TS: &str = "@HOIST_TS@";
    let split = |entry: Entry| {
        let line = entry.to_line();
        let (before, after) = line.split_once(TS).expect("the time is in the line");
        (before.to_string(), after.to_string())
    };
    let why = reason(timeout);
    let reverted = |message: String| Entry {
        ts: TS.to_string(),
        release: previous.map(|p| p.to_string()),
        previous: Some(id.to_string()),
        version: previous.and_then(|p| node.journal.version_of(p)),
        run: Some(ctx.run_id.clone()),
        message: Some(message),
        ..Entry::new(Kind::SelfReverted, &ctx.by)
    };
    let freed = Entry {
        ts: TS.to_string(),
        run: Some(ctx.run_id.clone()),
        message: Some(format!(
            "freed by the watchdog of run {}: {why}",
            ctx.run_id
        )),
        ..Entry::new(Kind::Unlock, &ctx.by)
    };
    [
        split(reverted(why.clone())),
        split(reverted(format!("{why}; after_rollback failed"))),
        split(freed),
    ]
}

/// The after_rollback hooks as the watchdog runs them: in the previous
/// release, with the variables hoist gives them, as the `become` user
/// when set (sudo without a password: none is ever left on a host), and
/// without the run's secrets (never written to a host).
fn after_rollback(
    ctx: &Context,
    node: &Node,
    id: &ReleaseId,
    previous: Option<&ReleaseId>,
) -> Vec<String> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let version = node.journal.version_of(previous).unwrap_or_default();
    let env = hooks::host_env(ctx, node, previous, Some(id), &version);
    let dir = node.layout.release_path(previous);
    // The host's own hooks: its group's where a group sets them.
    let hooks = &node.host.role.hooks;
    hooks
        .after_rollback
        .iter()
        .map(|hook| {
            let script = node.layout.hook(&dir, &env, hook);
            match &hooks.become_user {
                Some(user) => app_layout::as_user(user, false, &script),
                None => script,
            }
        })
        .collect()
}
