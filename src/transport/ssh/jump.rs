//! Jump hosts (ProxyJump): one connection per bastion for the whole run,
//! shared by every host behind it; each hop's host key is checked like any other.

use std::collections::HashMap;
use std::sync::Arc;

use russh::client::Handle;
use tokio::sync::OnceCell;

use super::host_key::Client;
use super::{Deadline, SshContext, authenticated_session};
use crate::config::{JumpHost, SshTarget};
use crate::transport::TransportError;

/// A bastion connection, shared.
pub type Bastion = Arc<Handle<Client>>;

/// The hops to a bastion, outermost first, each as (user, address, port).
type Route = Vec<(String, String, u16)>;

#[derive(Default)]
pub struct Bastions {
    open: tokio::sync::Mutex<HashMap<Route, Arc<OnceCell<Bastion>>>>,
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
            // Whoever comes first connects; the others wait for that connection.
            // A failed attempt leaves the cell empty, so the next host tries again.
            let bastion = cell
                .get_or_try_init(|| async {
                    let (handle, _lost) =
                        authenticated_session(&hop, &label, via.as_deref(), ctx, deadline).await?;
                    Ok::<_, TransportError>(Arc::new(handle))
                })
                .await?;
            via = Some(Arc::clone(bastion));
        }
        Ok(via)
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
