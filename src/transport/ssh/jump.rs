//! Jump hosts (ProxyJump): one connection per bastion for the whole run,
//! shared by every host behind it; each hop's host key is checked like any other.
//!
//! Handshakes are bounded per bastion: a fleet of hundreds behind one
//! bastion opens its channels and runs its key exchanges at most
//! `HANDSHAKES_PER_BASTION` at a time, so neither the bastion nor servers
//! that sit behind it on one sshd see more unauthenticated connections at
//! once than OpenSSH's default `MaxStartups 10:30:100` lets through.

use std::collections::HashMap;
use std::sync::Arc;

use russh::client::Handle;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::host_key::Client;
use super::{Deadline, SshContext, authenticated_session};
use crate::config::{JumpHost, SshTarget};
use crate::transport::TransportError;

/// A bastion connection, shared.
pub type Bastion = Arc<Handle<Client>>;

/// The hops to a bastion, outermost first, each as (user, address, port).
type Route = Vec<(String, String, u16)>;

/// The most handshakes in flight against or through one bastion: below
/// sshd's default MaxStartups (10), with room for the moment between a
/// client's last auth message and sshd counting the connection as done.
pub const HANDSHAKES_PER_BASTION: usize = 8;

#[derive(Default)]
pub struct Bastions {
    open: tokio::sync::Mutex<HashMap<Route, Arc<OnceCell<Bastion>>>>,
    /// Per bastion (address, port): its handshake slots.
    handshakes: std::sync::Mutex<HashMap<(String, u16), Arc<Semaphore>>>,
}

impl Bastions {
    /// The connection to the last of `target.jump`, through the ones before it.
    pub async fn through(
        &self,
        target: &SshTarget,
        ctx: &SshContext,
        deadline: &mut Deadline,
    ) -> Result<Option<Bastion>, TransportError> {
        let mut via: Option<Bastion> = None;
        let mut route = Route::new();
        for jump in &target.jump {
            let hop = hop_target(target, jump);
            route.push((hop.user.clone(), hop.address.clone(), hop.port));
            let cell = {
                let mut open = self.open.lock().await;
                Arc::clone(open.entry(route.clone()).or_default())
            };
            let label = format!("jump host {}", place(&hop));
            // A hop's handshake counts against the bastion it goes through,
            // or against itself when hoist reaches it directly.
            let (slot_address, slot_port) = match route.len() {
                1 => (hop.address.clone(), hop.port),
                n => (route[n - 2].1.clone(), route[n - 2].2),
            };
            // Whoever comes first connects; the others wait for that connection.
            // A failed attempt leaves the cell empty, so the next host tries again.
            let bastion = cell
                .get_or_try_init(|| async {
                    let _slot = self.slot(&slot_address, slot_port, deadline).await;
                    let session =
                        authenticated_session(&hop, &label, via.as_deref(), ctx, deadline).await?;
                    Ok::<_, TransportError>(Arc::new(session.handle))
                })
                .await?;
            via = Some(Arc::clone(bastion));
        }
        Ok(via)
    }

    /// For a host behind a bastion: one of that bastion's handshake slots,
    /// to hold until the host's handshake and authentication are done.
    /// `None` for a host reached directly.
    pub async fn handshake_slot(
        &self,
        target: &SshTarget,
        deadline: &mut Deadline,
    ) -> Option<OwnedSemaphorePermit> {
        let last = target.jump.last()?;
        Some(self.slot(&last.address, last.port, deadline).await)
    }

    /// Waits for a slot of the bastion at `address:port`. The wait is the
    /// queue's, not the network's: it does not count against connect_timeout.
    async fn slot(
        &self,
        address: &str,
        port: u16,
        deadline: &mut Deadline,
    ) -> OwnedSemaphorePermit {
        let slots = {
            let mut all = self.handshakes.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                all.entry((address.to_string(), port))
                    .or_insert_with(|| Arc::new(Semaphore::new(HANDSHAKES_PER_BASTION))),
            )
        };
        let since = Instant::now();
        let permit = slots
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        deadline.extend(since.elapsed());
        permit
    }
}

/// A hop logs in as its own user (default: the target's), with its own keys
/// and known_hosts where ~/.ssh/config gives them (else the target's), and
/// the target's timeouts. The target's pin is the target's alone.
fn hop_target(target: &SshTarget, jump: &JumpHost) -> SshTarget {
    SshTarget {
        name: jump.address.clone(),
        address: jump.address.clone(),
        port: jump.port,
        user: jump.user.clone().unwrap_or_else(|| target.user.clone()),
        identity_files: (jump.identity_files.clone())
            .unwrap_or_else(|| target.identity_files.clone()),
        identities_only: jump.identities_only.unwrap_or(target.identities_only),
        known_hosts: (jump.known_hosts.clone()).unwrap_or_else(|| target.known_hosts.clone()),
        host_key_checking: jump.host_key_checking.unwrap_or(target.host_key_checking),
        host_key: None,
        jump: Vec::new(),
        sources: Vec::new(),
        ..target.clone()
    }
}

fn place(hop: &SshTarget) -> String {
    format!("{}@{}:{}", hop.user, hop.address, hop.port)
}
