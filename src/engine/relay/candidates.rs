//! Who can take part in a wave's relay, asked of each host before the
//! tree is planned.

use std::collections::HashMap;

use futures_util::future::join_all;

use super::script::{self, Client};
use super::tree::Candidate;
use crate::config::HostTransport;
use crate::engine::fleet::Node;

/// The hosts of `wanting` as the planner sees them: whether each has an
/// SSH client (asked), whether another host can reach it (hoist holds its
/// host key from its own connection, and reaches it with no jump host),
/// and its place; with the client of each host that has one. When the
/// receive must `split` a manifest off the stream, a host without the
/// tool for it takes no part (it is served from here).
pub(super) async fn ask(
    nodes: &[Node],
    wanting: &[usize],
    split: bool,
) -> (Vec<Candidate>, HashMap<usize, Client>) {
    let asked = join_all(wanting.iter().map(|&i| async move {
        let node = &nodes[i];
        let ssh = matches!(node.host.transport, HostTransport::Ssh(_));
        // Reached through a jump host: its address may mean nothing to
        // the other hosts; it is fed from here.
        let direct = matches!(&node.host.transport, HostTransport::Ssh(t) if t.jump.is_empty());
        let answer = match ssh {
            true => node
                .run(&script::has_client(), None)
                .await
                .map(|o| o.stdout_str())
                .unwrap_or_default(),
            false => String::new(),
        };
        let client = Client::from_answer(&answer);
        let takes_part = !split || script::splits(&answer);
        let place = node.host.role.zone.clone();
        let candidate = Candidate {
            index: i,
            place: place
                .or_else(|| node.host.groups.first().cloned())
                .unwrap_or_default(),
            relays: takes_part && client.is_some(),
            receives: takes_part && direct && node.conn.host_key().is_some(),
        };
        (candidate, client.map(|c| (i, c)))
    }))
    .await;
    let clients = asked.iter().filter_map(|(_, c)| *c).collect();
    (asked.into_iter().map(|(c, _)| c).collect(), clients)
}
