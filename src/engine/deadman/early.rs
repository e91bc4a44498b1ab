//! The confirmation's fresh connection, opened as soon as a host's own
//! part of its wave has passed (its switch, hooks and health check): a
//! login made after the switch, which is what the confirmation proves.
//! The end of the rollout then only sends the confirmation over it,
//! instead of a handshake per host at once when the run ends. One that is
//! found lost by then is replaced by a new one; a host that goes back
//! instead has its early connection closed.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::Watch;
use crate::config::HostTransport;
use crate::engine::Context;
use crate::engine::fleet::Node;
use crate::transport::Transport;
use crate::transport::ssh::SshHost;

/// A connection being opened, or its failure (then the confirmation
/// opens one itself, as without it).
pub(super) type Early = JoinHandle<Option<Arc<SshHost>>>;

/// Starts opening `node`'s confirmation connection, if this run armed it
/// (SSH hosts only: a local host's is no handshake).
pub(crate) fn open(ctx: &Context, node: &Node) {
    let HostTransport::Ssh(target) = &node.host.transport else {
        return;
    };
    if !ctx.deadman.is_armed(node.name()) {
        return;
    }
    let (target, ssh) = (target.clone(), ctx.ssh.clone());
    let task =
        tokio::spawn(async move { SshHost::connect(&target, &ssh).await.ok().map(Arc::new) });
    let replaced = ctx
        .deadman
        .early
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(node.name().to_string(), task);
    if let Some(old) = replaced {
        close(old);
    }
}

impl Watch {
    /// `host`'s early connection, if one was started: up, or `None`
    /// (it failed, or was lost since).
    pub(super) async fn early(&self, host: &str) -> Option<Arc<SshHost>> {
        let task = self
            .early
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host)?;
        let conn = task.await.ok().flatten()?;
        if conn.is_gone() {
            conn.close().await;
            return None;
        }
        Some(conn)
    }

    /// Closes `host`'s early connection, if any: it is not confirmed.
    pub(super) fn drop_early(&self, host: &str) {
        let task = self
            .early
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host);
        if let Some(task) = task {
            close(task);
        }
    }
}

/// Closes what `task` opens, in the background.
fn close(task: Early) {
    tokio::spawn(async move {
        if let Ok(Some(conn)) = task.await {
            conn.close().await;
        }
    });
}
