//! The whole artifact as a relay tree carries it: the release's manifest,
//! gzipped, first, then the archive, on one stream. Each host of the tree
//! passes the whole stream on unchanged, takes exactly the manifest's bytes
//! off its head, checks their sha256 against the one hoist put in its
//! command (a relaying host cannot change it), and only then unpacks the
//! rest as [`super::Layout::receive`] does. So no host but a seed gets the
//! manifest from hoist, and none records one that is not hoist's.

use super::{ReceiveStep, q};

/// The receive of a host in a relay tree of the whole artifact.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WholeHop<'a> {
    /// The manifest the stream starts with: its gzipped bytes' length and
    /// sha256. `None` when hoist has none (the stream is the archive).
    pub manifest: Option<(u64, &'a str)>,
    /// The lines that start the readers passing the stream on, and their
    /// fifos (see [`super::Layout::receive_fanning`]); `None` for a leaf.
    pub fan: Option<(&'a str, &'a str)>,
}

/// The tool the split needs beyond [`super::TOOLS`]: `dd bs=1` reads a
/// pipe without reading past the manifest (`head -c` may read ahead).
pub(crate) const SPLIT_TOOL: &str = "dd";

/// Temporary files of the split, for the receive's cleanup: the gzipped
/// manifest and the manifest as recorded.
pub(super) const SPLIT_FILES: &str = " \"$P.mgz\" \"$P.m\"";

/// The directory the split's manifest goes to, made with the receive's.
pub(super) const SPLIT_DIR: &str = " \"$H/manifests\"";

/// The lines that read the stream on stdin: all of it to `fifos` (a
/// relay's children), `len` bytes of it to `$P.mgz`, which must hash to
/// `sha` before anything else happens (else exit
/// [`ReceiveStep::Checksum`]) and is unzipped to `$P.m`, then the rest
/// through `unpacked` (the archive's hashed unpack). What this host
/// refuses it still reads to the end, so the children get every byte.
pub(super) fn manifest_first((len, sha): (u64, &str), fifos: &str, unpacked: &str) -> String {
    let tee = if fifos.is_empty() {
        String::new()
    } else {
        format!("tee{fifos} | ")
    };
    format!(
        r#"{tee}(dd bs=1 count={len} of="$P.mgz" 2>/dev/null
m=$($HOIST_SHA < "$P.mgz") || m=
m=${{m%% *}}
if [ "$m" != {sha} ]; then printf 'checksum mismatch: the manifest relayed is not the one expected (%s, got %s)\n' {sha} "$m" >&2; cat > /dev/null; exit {checksum}; fi
gzip -dc < "$P.mgz" > "$P.m" || {{ cat > /dev/null; exit {write}; }}
{unpacked}
) || exit $?"#,
        sha = q(sha),
        write = ReceiveStep::Write.code(),
        checksum = ReceiveStep::Checksum.code(),
    )
}

/// The line that keeps the manifest checked by [`manifest_first`] as
/// release `id`'s, run just before the release is renamed into place.
pub(super) fn keep_manifest(id: &str) -> String {
    format!("mv \"$P.m\" \"$H/manifests/\"{} && ", q(id))
}
