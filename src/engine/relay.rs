//! Relay fan-out (`[relay] fanout = N`): the hosts of a wave that need the
//! whole artifact get it from each other, in a tree hoist plans
//! ([`tree::plan`]): hoist streams it to a few seeds; each host passes the
//! stream on to its children while it receives it (`tee` into one `ssh`
//! per child, or dropbear's `dbclient` where the host has no `ssh`:
//! [`dropbear`]), and every host checks the hash and renames the release
//! into place exactly as from hoist ([`Layout::receive`]). The stream
//! starts with the release's manifest, which every host checks against
//! the sha256 hoist put in its command and keeps with the release
//! ([`WholeHop`]): nothing goes from here to a host but a seed. Hosts that
//! would each get the same delta from here get it the same way, one tree
//! per delta ([`delta`]): each checks the delta's hash, applies it to its
//! own base and checks the result against the artifact's manifest before
//! it takes the release's name ([`Layout::receive_delta`]).
//!
//! A relaying host holds, for this run only, a key of its own made here
//! ([`key::RelayKey`]) and its children's host keys as hoist accepted
//! them; a child allows that key one forced command, the receive of this
//! release. Both are removed when the relay ends, whatever happened, and a
//! later run removes what an interrupted one left (under the lock, see
//! [`super::layout::relay_files::sweep`]). A host the relay did not serve
//! (a relay that died, stalled or sent something else, a host key that
//! does not match, a delta that does not fit its base) gets the release
//! from hoist as without the relay.
//!
//! [`Layout::receive`]: super::layout::Layout::receive
//! [`WholeHop`]: super::layout::WholeHop
//! [`Layout::receive_delta`]: super::layout::Layout::receive_delta

mod candidates;
mod child;
mod delta;
mod dropbear;
mod hop;
mod key;
mod script;
mod tree;

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::delivery::{Delivery, Offer, Source, sources};
use super::fleet::Node;
use super::layout::Probe;
use super::{Context, Failed};
use crate::artifact::Artifact;
use crate::release::ReleaseId;
use crate::report::{Event, Level};
use hop::{Cargo, Hop, Streamed};
use tree::{Candidate, Tree};

/// A delivery's result: the bytes sent from here, or how it failed.
type Delivered = Result<u64, Failed>;

/// What the relay did for a wave. A host not in `served` gets the
/// release as without a relay.
#[derive(Debug, Default)]
pub(crate) struct Relayed {
    /// The hosts it put the release on, with the bytes sent from here to
    /// each.
    pub served: HashMap<usize, Delivered>,
    /// The bytes sent from here to seeds it did not serve (their own
    /// receive failed, after passing the stream on): theirs, on top of
    /// what they get next.
    pub spent: HashMap<usize, u64>,
}

/// Puts the release on those of `hosts` that need the whole artifact,
/// and on those that would each get the same delta from here, through a
/// relay tree each (all at once), when `[relay]` is on. Ends when every
/// relay ended and cleaned up.
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
        return Relayed::default();
    };
    if halt.is_cancelled() {
        return Relayed::default();
    }
    let offer = Offer::of(artifact);
    let whole: Vec<usize> = hosts
        .iter()
        .copied()
        .filter(|&i| sources(&nodes[i].probe, id, offer) == [Source::Whole])
        .collect();
    let mut loads = Vec::new();
    if whole.len() >= 2 {
        loads.push((Cargo::Whole(hop::Manifest::of(artifact)), whole));
    }
    let probes: Vec<(usize, &Probe)> = hosts.iter().map(|&i| (i, &nodes[i].probe)).collect();
    for group in delta::groups(&probes, id, offer) {
        if let Some(cargo) = delta::cut(ctx, nodes, delivery, &group).await {
            loads.push((Cargo::Delta(cargo), group));
        }
    }
    let wave = Wave {
        ctx,
        nodes,
        id,
        artifact,
        relay,
        halt,
    };
    let mut relayed = Relayed::default();
    for one in join_all(loads.iter().map(|(cargo, hosts)| wave.relay(cargo, hosts))).await {
        relayed.served.extend(one.served);
        relayed.spent.extend(one.spent);
    }
    relayed
}

/// What the relay trees of one wave share.
struct Wave<'a> {
    ctx: &'a Context,
    nodes: &'a [Node],
    id: &'a ReleaseId,
    artifact: &'a Artifact,
    relay: &'a crate::config::Relay,
    halt: &'a CancellationToken,
}

impl Wave<'_> {
    /// Relays `cargo` to `wanting` (two or more hosts), in a tree of its
    /// own; returns the hosts it served.
    async fn relay(&self, cargo: &Cargo, wanting: &[usize]) -> Relayed {
        let ctx = self.ctx;
        let split = matches!(cargo, Cargo::Whole(Some(_)));
        let (candidates, clients) = candidates::ask(self.nodes, wanting, split).await;
        let tree = tree::plan(&candidates, self.relay.fanout);
        if tree.seeds.is_empty() {
            return Relayed::default();
        }
        let all = tree.hosts();
        ctx.message(
            Level::Info,
            None,
            format!(
                "relay: {} host(s) get the {} from here and pass it on to {} (fanout {}, {} level(s))",
                tree.seeds.len(),
                cargo.noun(),
                all.len() - tree.seeds.len(),
                self.relay.fanout,
                tree.depth()
            ),
        );
        let run = Hop {
            ctx,
            nodes: self.nodes,
            id: self.id,
            artifact: self.artifact,
            tree: &tree,
            cargo,
            clients,
        };
        let streamed = match run.prepare(&self.relay.authorized_keys).await {
            Ok(()) => run.stream(self.halt).await,
            Err(why) => {
                ctx.message(Level::Warn, None, format!("relay: {why}; no host relays"));
                Streamed::default()
            }
        };
        let (have, why) = run.finish().await;
        if self.halt.is_cancelled() {
            return Relayed::default();
        }
        let relayed = self.served(&tree, cargo, &streamed, (&have, &why));
        let from_here: u64 = relayed.served.values().flatten().sum();
        let mut said = format!(
            "relay: {} of {} host(s) got the {} from another host; {} sent from here for the {} it served",
            relayed
                .served
                .keys()
                .filter(|&&i| tree.parent(i).is_some())
                .count(),
            all.len() - tree.seeds.len(),
            cargo.noun(),
            crate::report::style::bytes(from_here),
            relayed.served.len()
        );
        if !relayed.spent.is_empty() {
            said += &format!(
                ", {} to the {} seed(s) it did not serve",
                crate::report::style::bytes(relayed.spent.values().sum()),
                relayed.spent.len()
            );
        }
        ctx.message(Level::Info, None, said);
        relayed
    }

    /// The hosts of `tree` the relay served (each holds the release,
    /// verified, and a relayed one got it from its parent), with the
    /// bytes sent from here to each: a seed what its stream took (the
    /// manifest and the archive, or the delta), a relayed host none. The
    /// others are said; what was sent to a seed among them is kept as
    /// `spent`.
    fn served(
        &self,
        tree: &Tree,
        cargo: &Cargo,
        streamed: &Streamed,
        (have, hop_said): (&HashSet<usize>, &HashMap<usize, String>),
    ) -> Relayed {
        let ctx = self.ctx;
        let mut relayed = Relayed::default();
        for i in tree.hosts() {
            let node = &self.nodes[i];
            let from = tree.parent(i);
            let via = from.map(|p| self.nodes[p].name().to_string());
            let took = streamed.sent.get(&i).copied().unwrap_or(0);
            if !(have.contains(&i) && (from.is_some() || streamed.fed.contains(&i))) {
                if took > 0 {
                    relayed.spent.insert(i, took);
                }
                // What the hop's client said, when it said anything.
                let via = via.map(|by| match hop_said.get(&i) {
                    Some(said) => format!("{by} ({said})"),
                    None => by,
                });
                let why = match (cargo, &via) {
                    (Cargo::Whole(_), by) => format!(
                        "did not get the release whole from {}; sending it from here",
                        by.as_deref().unwrap_or("the relay")
                    ),
                    (Cargo::Delta(_), Some(by)) => format!("did not make the release from the delta relayed by {by}; it gets the release as without the relay"),
                    (Cargo::Delta(_), None) => "did not make the release from the delta sent for the relay; it gets the release as without the relay".to_string(),
                };
                ctx.message(Level::Warn, Some(node.name()), why);
                continue;
            }
            // Each host's receive recorded the manifest it got with the
            // release (a whole one's at the stream's head): nothing more
            // goes from here.
            let sent = took;
            if let Some(via) = via {
                ctx.emit(Event::Relayed {
                    host: node.name().to_string(),
                    via: via.clone(),
                });
                let what = match cargo {
                    Cargo::Whole(_) => format!("got the release from {via}, verified on this host"),
                    Cargo::Delta(_) => format!(
                        "made the release from the delta relayed by {via}, verified on this host"
                    ),
                };
                ctx.message(Level::Info, Some(node.name()), what);
            }
            relayed.served.insert(i, Ok(sent));
        }
        relayed
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
