//! One relay tree at work: what each host is given before the stream,
//! the stream from here to the seeds, and the cleanup after. What goes
//! down the tree is a [`Cargo`]: the whole artifact, or one delta.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::alias;
use super::dropbear;
use super::key::RelayKey;
use super::script::{self, Client};
use super::tree::Tree;
use crate::artifact::Artifact;
use crate::config::HostTransport;
use crate::engine::Context;
use crate::engine::Failure;
use crate::engine::fleet::Node;
use crate::engine::layout::WholeHop;
use crate::engine::layout_release::DeltaHop;
use crate::engine::upload::{self, Payload};
use crate::release::ReleaseId;
use crate::report::{Level, Phase};
use crate::transport::{Input, Output};

/// What a relay tree passes on.
pub(crate) enum Cargo {
    /// The whole artifact, checked against its sha256 on every host,
    /// after its manifest when hoist has one.
    Whole(Option<Manifest>),
    /// One delta, the same bytes for every host of the tree.
    Delta(DeltaCargo),
}

/// The release's manifest, gzipped as a host records it, at the head of
/// a whole artifact's stream: every host checks it against `sha` and
/// keeps it with the release, so none gets it from here but a seed.
pub(crate) struct Manifest {
    pub gz: bytes::Bytes,
    /// The sha256 of `gz`.
    pub sha: String,
}

impl Manifest {
    /// The artifact's manifest, when it has one.
    pub(crate) fn of(artifact: &Artifact) -> Option<Manifest> {
        use sha2::{Digest, Sha256};
        let gz = artifact.manifest_gz()?;
        let sha = hex::encode(Sha256::digest(&gz[..]));
        Some(Manifest { gz, sha })
    }
}

/// A delta every host of a tree can apply: their bases hold the same
/// content, so hoist would have sent each the same bytes.
pub(crate) struct DeltaCargo {
    pub bytes: bytes::Bytes,
    /// The sha256 of `bytes`: every host checks what it got against it.
    pub sha: String,
    /// The sha256 of the artifact's manifest: the release a host makes
    /// must list as exactly this before it takes its name.
    pub manifest_sha: String,
    /// Each host's base: the release it applies the delta to.
    pub bases: HashMap<usize, ReleaseId>,
}

/// How the stream from here to the seeds went.
#[derive(Default)]
pub(super) struct Streamed {
    /// The seeds whose own receive succeeded.
    pub fed: HashSet<usize>,
    /// The bytes sent from here to each seed, whether or not its receive
    /// succeeded.
    pub sent: HashMap<usize, u64>,
}

impl Cargo {
    /// What the messages call it.
    pub(super) fn noun(&self) -> &'static str {
        match self {
            Cargo::Whole(_) => "release",
            Cargo::Delta(_) => "delta",
        }
    }
}

/// One wave's relay, once planned.
pub(super) struct Hop<'a> {
    pub ctx: &'a Context,
    pub nodes: &'a [Node],
    pub id: &'a ReleaseId,
    pub artifact: &'a Artifact,
    pub tree: &'a Tree,
    pub cargo: &'a Cargo,
    /// The client of each host that has one.
    pub clients: HashMap<usize, Client>,
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

    /// The receive a host runs: `Layout::receive` (or `receive_delta`,
    /// the delta hash-checked) under a temporary name of its own (a
    /// fallback from hoist never meets it), passing the stream on to its
    /// children.
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
        let (a, layout, token) = (self.artifact, &self.nodes[i].layout, self.token());
        let part = format!("{token}.relay");
        match self.cargo {
            Cargo::Whole(manifest) => layout.receive_fanning(
                self.id,
                &part,
                a.packing,
                &a.transfer_sha,
                &a.content_sha,
                Some(WholeHop {
                    manifest: manifest
                        .as_ref()
                        .map(|m| (m.gz.len() as u64, m.sha.as_str())),
                    fan: (!children.is_empty()).then_some((fan.0.as_str(), fan.1.as_str())),
                }),
            ),
            Cargo::Delta(d) => layout.receive_delta_fanning(
                &d.bases[&i],
                self.id,
                &part,
                &d.manifest_sha,
                &a.content_sha,
                Some(DeltaHop {
                    sha: &d.sha,
                    fan: (&fan.0, &fan.1),
                }),
            ),
        }
    }

    /// Gives each host of the tree what it needs: a relay its key and its
    /// children's host keys, a relayed host its forced command. A host
    /// where this fails is not served by the relay (its parent's `ssh`
    /// fails; it falls back).
    pub(super) async fn prepare(&self, authorized_keys: &str) -> Result<(), String> {
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
                let out = node.run(&prepare.script(&node.layout), stdin).await;
                match &out {
                    Ok(o) if o.success() && o.stdout_str().trim() == "unnamable" => {
                        self.ctx.message(Level::Warn, Some(node.name()), "its deploy path cannot be named in a forced command (a quote, backslash or blank in it): not relayed to");
                    }
                    _ => self.unless_ran(node, &out, "could not be set up for the relay"),
                }
            }
        }))
        .await;
        Ok(())
    }

    /// Streams the cargo to the seeds, each passing it on; ends when
    /// every seed's receive ended (each waits for its children).
    pub(super) async fn stream(&self, halt: &CancellationToken) -> Streamed {
        for &i in &self.tree.hosts() {
            self.ctx.phase(self.nodes[i].name(), Phase::Upload);
        }
        let ended = join_all(self.tree.seeds.iter().map(|&i| async move {
            let node = &self.nodes[i];
            let input = match self.cargo {
                Cargo::Whole(manifest) => match self.artifact.input() {
                    Ok(input) => match manifest {
                        Some(m) => input.after(m.gz.clone()),
                        None => input,
                    },
                    Err(e) => return (i, 0, Err(e.to_string())),
                },
                Cargo::Delta(d) => Input::bytes(d.bytes.clone()),
            };
            // What the stream took, whatever became of it.
            let took = Arc::new(AtomicU64::new(0));
            let count = took.clone();
            let input = input.inspect(move |chunk| {
                count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            });
            let payload = Payload {
                input,
                receive: self.receive(i),
            };
            let sent = upload::send(self.ctx, node, payload, halt).await;
            let took = took.load(Ordering::Relaxed);
            (i, took, sent.map_err(|f| f.failure.to_string()))
        }))
        .await;
        let mut streamed = Streamed::default();
        for (i, took, result) in ended {
            streamed.sent.insert(i, took);
            match result {
                Ok(()) => {
                    streamed.fed.insert(i);
                }
                Err(why) => self.ctx.message(
                    Level::Warn,
                    Some(self.nodes[i].name()),
                    format!(
                        "the {} it was to relay did not end well here: {why}",
                        self.cargo.noun()
                    ),
                ),
            }
        }
        streamed
    }

    /// Warns `doing: why` for `node` unless `out` is a script that
    /// succeeded (`why` its stderr, or how the command failed).
    fn unless_ran(&self, node: &Node, out: &Result<Output, Failure>, doing: &str) {
        let why = match out {
            Ok(o) if o.success() => return,
            Ok(o) => o.stderr_str().trim().to_string(),
            Err(e) => e.to_string(),
        };
        self.ctx
            .message(Level::Warn, Some(node.name()), format!("{doing}: {why}"));
    }

    /// Removes the run's key, scripts and authorized_keys lines from every
    /// host of the tree; returns the hosts that hold the release,
    /// verified, and why each hop that said anything ended so, by the
    /// child it fed: `web1's ssh: …` (the relaying host's client's last
    /// lines).
    pub(super) async fn finish(&self) -> (HashSet<usize>, HashMap<usize, String>) {
        let (id, sha) = (&self.id.to_string(), &self.artifact.content_sha);
        let hosts = self.tree.hosts();
        let ended = join_all(hosts.iter().map(|&i| async move {
            let node = &self.nodes[i];
            let script = script::finish(&node.layout, self.token(), id, sha);
            let out = node.run(&script, None).await;
            self.unless_ran(
                node,
                &out,
                "could not remove the relay's key or authorized_keys line (the next run does)",
            );
            let finished = match &out {
                Ok(o) => script::Finished::parse(&o.stdout),
                Err(_) => script::Finished::default(),
            };
            let ok = out.is_ok_and(|o| o.success());
            (i, ok && finished.have, finished.last_words)
        }))
        .await;
        let mut have = HashSet::new();
        let mut why = HashMap::new();
        for (i, holds, last_words) in ended {
            if holds {
                have.insert(i);
            }
            let client = self.client(i).name();
            for (alias, said) in last_words {
                let child = self.tree.children.get(&i).into_iter().flatten();
                if let Some(&c) = child.into_iter().find(|&&c| super::alias(c) == alias) {
                    why.insert(c, format!("{}'s {client}: {said}", self.nodes[i].name()));
                }
            }
        }
        (have, why)
    }
}
