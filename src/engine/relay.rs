//! Relay fan-out (`[relay] fanout = N`): the hosts of a wave that need the
//! whole artifact get it from each other, in a tree hoist plans
//! ([`tree::plan`]): hoist streams it to a few seeds; each host passes the
//! stream on to its children while it receives it (`tee` into one `ssh`
//! per child, or dropbear's `dbclient` where the host has no `ssh`:
//! [`dropbear`]), and every host checks the hash and renames the release
//! into place exactly as from hoist ([`Layout::receive`]).
//!
//! A relaying host holds, for this run only, a key of its own made here
//! ([`key::RelayKey`]) and its children's host keys as hoist accepted
//! them; a child allows that key one forced command, the receive of this
//! release. Both are removed when the relay ends, whatever happened, and a
//! later run removes what an interrupted one left (under the lock, see
//! [`script::sweep`]). A host the relay did not serve whole (a relay that
//! died, stalled or sent something else, a host key that does not match)
//! gets the release from hoist as without the relay.
//!
//! [`Layout::receive`]: super::layout::Layout::receive

mod candidates;
mod dropbear;
mod key;
mod script;
mod tree;

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::delivery::{Delivery, Offer, Source, sources};
use super::fleet::Node;
use super::payload::record_manifest;
use super::upload::{self, Payload};
use super::{Context, Failed};
use crate::artifact::Artifact;
use crate::config::HostTransport;
use crate::release::ReleaseId;
use crate::report::{Event, Level, Phase};
use crate::transport::Input;
use key::RelayKey;
use script::Client;
pub(crate) use script::sweep;
use tree::{Candidate, Tree};

/// A delivery's result: the bytes sent from here, or how it failed.
type Delivered = Result<u64, Failed>;

/// What the relay did for a wave: the hosts it put the release on, with
/// the bytes sent from here to each. A host not in it gets the release
/// as without a relay.
pub(crate) type Relayed = HashMap<usize, Delivered>;

/// Puts the release on those of `hosts` that need the whole artifact
/// through the relay tree, when `[relay]` is on. Ends when every relay
/// ended and cleaned up.
pub(crate) async fn relay_wave(
    ctx: &Context,
    nodes: &[Node],
    delivery: &Delivery<'_>,
    id: &ReleaseId,
    hosts: &[usize],
    halt: &CancellationToken,
) -> Relayed {
    let artifact = delivery.artifact;
    let Some(relay) = &ctx.config.relay else {
        return Relayed::new();
    };
    let wanting: Vec<usize> = hosts
        .iter()
        .copied()
        .filter(|&i| sources(&nodes[i].probe, id, Offer::of(artifact)) == [Source::Whole])
        .collect();
    if wanting.len() < 2 || halt.is_cancelled() {
        return Relayed::new();
    }
    let (candidates, clients) = candidates::ask(nodes, &wanting).await;
    let tree = tree::plan(&candidates, relay.fanout);
    if tree.seeds.is_empty() {
        return Relayed::new();
    }
    let all = tree.hosts();
    ctx.message(
        Level::Info,
        None,
        format!(
            "relay: {} host(s) get the release from here and pass it on to {} (fanout {}, {} level(s))",
            tree.seeds.len(),
            all.len() - tree.seeds.len(),
            relay.fanout,
            tree.depth()
        ),
    );
    let run = Hop {
        ctx,
        nodes,
        id,
        artifact,
        tree: &tree,
        clients,
    };
    let fed = match run.prepare(&relay.authorized_keys).await {
        Ok(()) => run.stream(halt).await,
        Err(why) => {
            ctx.message(Level::Warn, None, format!("relay: {why}; no host relays"));
            HashSet::new()
        }
    };
    let have = run.finish().await;
    let mut relayed = Relayed::new();
    if halt.is_cancelled() {
        return relayed;
    }
    for &i in &all {
        let node = &nodes[i];
        let from = tree.parent(i);
        let whole = have.contains(&i) && (from.is_some() || fed.contains(&i));
        if !whole {
            let by = from.map_or("the relay".to_string(), |p| nodes[p].name().to_string());
            ctx.message(
                Level::Warn,
                Some(node.name()),
                format!("did not get the release whole from {by}; sending it from here"),
            );
            continue;
        }
        let manifest = record_manifest(ctx, node, artifact, id).await;
        let sent = match from {
            None => artifact.transfer_size + manifest,
            Some(p) => {
                let via = nodes[p].name().to_string();
                ctx.emit(Event::Relayed {
                    host: node.name().to_string(),
                    via: via.clone(),
                });
                ctx.message(
                    Level::Info,
                    Some(node.name()),
                    format!("got the release from {via}, verified on this host"),
                );
                manifest
            }
        };
        relayed.insert(i, Ok(sent));
    }
    let from_here: u64 = relayed.values().flatten().sum();
    ctx.message(
        Level::Info,
        None,
        format!(
            "relay: {} of {} host(s) got the release from another host; {} sent from here for the {} it served",
            relayed.keys().filter(|&&i| tree.parent(i).is_some()).count(),
            all.len() - tree.seeds.len(),
            crate::report::style::bytes(from_here),
            relayed.len()
        ),
    );
    relayed
}

/// One wave's relay, once planned.
struct Hop<'a> {
    ctx: &'a Context,
    nodes: &'a [Node],
    id: &'a ReleaseId,
    artifact: &'a Artifact,
    tree: &'a Tree,
    /// The client of each host that has one.
    clients: HashMap<usize, Client>,
}

impl Hop<'_> {
    /// The client relaying host `i` passes the stream on with.
    fn client(&self, i: usize) -> Client {
        self.clients.get(&i).copied().unwrap_or(Client::Ssh)
    }

    /// The name of this run's relay files and lines.
    fn token(&self) -> &str {
        &self.ctx.run_id
    }

    /// The receive a host runs: `Layout::receive` under a temporary name
    /// of its own (a fallback from hoist never meets it), passing the
    /// stream on to its children.
    fn receive(&self, i: usize) -> String {
        let client = self.client(i);
        let children: Vec<script::Child> = self
            .tree
            .children
            .get(&i)
            .into_iter()
            .flatten()
            .filter_map(|&c| match &self.nodes[c].host.transport {
                HostTransport::Ssh(target) => Some(script::Child {
                    alias: alias(c),
                    user: target.user.clone(),
                    address: target.address.clone(),
                    port: target.port,
                }),
                _ => None,
            })
            // A child dbclient would misread is left to fall back.
            .filter(|c| client == Client::Ssh || dropbear::reaches(c))
            .collect();
        let fan = script::fan_out(self.token(), client, &children);
        let a = self.artifact;
        self.nodes[i].layout.receive_fanning(
            self.id,
            &format!("{}.relay", self.token()),
            a.packing,
            &a.transfer_sha,
            &a.content_sha,
            (!children.is_empty()).then_some((fan.0.as_str(), fan.1.as_str())),
        )
    }

    /// Gives each host of the tree what it needs: a relay its key and its
    /// children's host keys, a relayed host its forced command. A host
    /// where this fails is not served by the relay (its parent's `ssh`
    /// fails; it falls back).
    async fn prepare(&self, authorized_keys: &str) -> Result<(), String> {
        let mut keys = HashMap::new();
        for &p in self.tree.children.keys() {
            let key = RelayKey::new().map_err(|e| format!("cannot make a key: {e}"))?;
            keys.insert(p, key);
        }
        let hosts = self.tree.hosts();
        join_all(hosts.iter().map(|&i| {
            let node = &self.nodes[i];
            let known_hosts = self.tree.children.get(&i).map(|children| {
                let pinned = children
                    .iter()
                    .filter_map(|&c| {
                        let host_key = self.nodes[c].conn.host_key()?;
                        let HostTransport::Ssh(target) = &self.nodes[c].host.transport else {
                            return None;
                        };
                        Some(script::Pinned {
                            alias: alias(c),
                            address: target.address.clone(),
                            host_key,
                        })
                    })
                    .collect();
                (self.client(i), pinned)
            });
            let receive = self
                .tree
                .parent(i)
                .map(|p| (self.receive(i), keys[&p].public.clone()));
            let prepare = script::Prepare {
                token: self.token(),
                authorized_keys,
                known_hosts,
                receive,
            };
            let stdin = keys.get(&i).map(|k| match self.client(i) {
                Client::Ssh => Input::bytes(k.private.clone()),
                Client::Dbclient => Input::bytes(k.dropbear.clone()),
            });
            async move {
                match node.run(&prepare.script(&node.layout), stdin).await {
                    Ok(o) if o.success() && o.stdout_str().trim() == "unnamable" => {
                        self.ctx.message(Level::Warn, Some(node.name()), "its deploy path cannot be named in a forced command (a quote, backslash or blank in it): not relayed to");
                    }
                    Ok(o) if o.success() => {}
                    Ok(o) => self.ctx.message(
                        Level::Warn,
                        Some(node.name()),
                        format!("could not be set up for the relay: {}", o.stderr_str().trim()),
                    ),
                    Err(e) => self.ctx.message(
                        Level::Warn,
                        Some(node.name()),
                        format!("could not be set up for the relay: {e}"),
                    ),
                }
            }
        }))
        .await;
        Ok(())
    }

    /// Streams the artifact to the seeds, each passing it on; ends when
    /// every seed's receive ended (each waits for its children). Returns
    /// the seeds whose own receive succeeded.
    async fn stream(&self, halt: &CancellationToken) -> HashSet<usize> {
        for &i in &self.tree.hosts() {
            self.ctx.phase(self.nodes[i].name(), Phase::Upload);
        }
        let ended = join_all(self.tree.seeds.iter().map(|&i| async move {
            let node = &self.nodes[i];
            let input = match self.artifact.input() {
                Ok(input) => input,
                Err(e) => return (i, Err(e.to_string())),
            };
            let payload = Payload {
                input,
                receive: self.receive(i),
            };
            let sent = upload::send(self.ctx, node, payload, halt).await;
            (i, sent.map_err(|f| f.failure.to_string()))
        }))
        .await;
        let mut fed = HashSet::new();
        for (i, result) in ended {
            match result {
                Ok(()) => {
                    fed.insert(i);
                }
                Err(why) => self.ctx.message(
                    Level::Warn,
                    Some(self.nodes[i].name()),
                    format!("the upload it was to relay failed: {why}"),
                ),
            }
        }
        fed
    }

    /// Removes the run's key, scripts and authorized_keys lines from every
    /// host of the tree; returns the hosts that hold the release, verified.
    async fn finish(&self) -> HashSet<usize> {
        let (id, sha) = (&self.id.to_string(), &self.artifact.content_sha);
        let hosts = self.tree.hosts();
        let ended = join_all(hosts.iter().map(|&i| async move {
            let node = &self.nodes[i];
            let script = script::finish(&node.layout, self.token(), id, sha);
            let out = node.run(&script, None).await;
            match &out {
                Ok(o) if o.success() => {}
                Ok(o) => self.ctx.message(
                    Level::Warn,
                    Some(node.name()),
                    format!(
                        "could not remove the relay's key or authorized_keys line (the next run does): {}",
                        o.stderr_str().trim()
                    ),
                ),
                Err(e) => self.ctx.message(
                    Level::Warn,
                    Some(node.name()),
                    format!("could not remove the relay's key or authorized_keys line (the next run does): {e}"),
                ),
            }
            (i, out.is_ok_and(|o| o.success() && o.stdout_str().trim() == "have"))
        }))
        .await;
        ended
            .into_iter()
            .filter(|(_, have)| *have)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The tree of a wave of `n` hosts that all need the whole artifact and
/// all have an SSH client, for `hoist plan`: (hosts fed from here, levels).
pub(crate) fn shape(n: usize, fanout: usize) -> (usize, usize) {
    let hosts: Vec<Candidate> = (0..n)
        .map(|index| Candidate {
            index,
            place: String::new(),
            relays: true,
            receives: true,
        })
        .collect();
    let tree = tree::plan(&hosts, fanout);
    if tree.seeds.is_empty() {
        return (n, 1);
    }
    (tree.seeds.len(), tree.depth())
}

/// Host `i`'s name in a relay's known_hosts (`HostKeyAlias`).
fn alias(i: usize) -> String {
    format!("hoist-relay-{i}")
}
