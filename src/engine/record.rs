//! Journal lines written to many hosts at once: what every host of a run
//! should remember, whichever of them is reachable next time.

use futures_util::future::join_all;

use super::fleet::Node;
use super::{Context, Failure};
use crate::journal::Entry;
use crate::report::Level;

/// Appends `entry` to the journal of every node; a host that cannot take
/// it is warned about (the others still tell the story).
pub(crate) async fn record_all<'a>(
    ctx: &Context,
    nodes: impl IntoIterator<Item = &'a Node>,
    entry: &Entry,
) {
    for (node, e) in append_all(nodes, entry, "recording in the journal").await {
        ctx.notes.unrecorded(node.name());
        ctx.message(
            Level::Warn,
            Some(node.name()),
            format!("could not record {:?} in the journal: {e}", entry.event),
        );
    }
}

/// Appends `entry` to the journal of every node at once (`what` names the
/// step in a failure); returns the nodes that could not take it, and why.
pub(crate) async fn append_all<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    entry: &Entry,
    what: &str,
) -> Vec<(&'a Node, Failure)> {
    let line = entry.to_line();
    let results = join_all(nodes.into_iter().map(|node| {
        let script = node.layout.record(&line);
        async move {
            let result = node
                .must_within(what, &script, None, node.quick_limit())
                .await;
            result.err().map(|e| (node, e))
        }
    }))
    .await;
    results.into_iter().flatten().collect()
}
