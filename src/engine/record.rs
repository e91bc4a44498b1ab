//! Journal lines written to many hosts at once: what every host of a run
//! should remember, whichever of them is reachable next time.

use futures_util::future::join_all;

use super::Context;
use super::fleet::Node;
use crate::journal::Entry;
use crate::report::Level;

/// Appends `entry` to the journal of every node; a host that cannot take
/// it is warned about (the others still tell the story).
pub(crate) async fn record_all<'a>(
    ctx: &Context,
    nodes: impl IntoIterator<Item = &'a Node>,
    entry: &Entry,
) {
    let line = entry.to_line();
    join_all(nodes.into_iter().map(|node| {
        let script = node.layout.record(&line);
        async move {
            if let Err(e) = node
                .must_within(
                    "recording in the journal",
                    &script,
                    None,
                    node.quick_limit(),
                )
                .await
            {
                ctx.message(
                    Level::Warn,
                    Some(node.name()),
                    format!("could not record {:?} in the journal: {e}", entry.event),
                );
            }
        }
    }))
    .await;
}
