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

/// The tool the split needs beyond [`super::TOOLS`]: `dd` reads a pipe
/// without reading past the manifest (`head -c` may read ahead).
pub(crate) const SPLIT_TOOL: &str = "dd";

/// The blocks [`take`] reads in where `dd` fills each one whole.
const BLOCK: u64 = 64 * 1024;

/// The lines that copy exactly `len` bytes of stdin to stdout and read
/// no further: in blocks that `iflag=fullblock` fills (GNU dd, busybox
/// 1.33 and later), else one byte at a time (`bs=1`: each read asks for
/// one byte, about 1 s of CPU per MB; a 708-file manifest is 31 KB).
fn take(len: u64) -> String {
    let rest = match len % BLOCK {
        0 => String::new(),
        r => format!(" && dd bs={r} count=1 iflag=fullblock 2>/dev/null"),
    };
    format!(
        "if dd if=/dev/null of=/dev/null iflag=fullblock 2>/dev/null; then dd bs={BLOCK} count={blocks} iflag=fullblock 2>/dev/null{rest}; else dd bs=1 count={len} 2>/dev/null; fi",
        blocks = len / BLOCK,
    )
}

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
        r#"{tee}({{ {take}; }} > "$P.mgz"
m=$($HOIST_SHA < "$P.mgz") || m=
m=${{m%% *}}
if [ "$m" != {sha} ]; then printf 'checksum mismatch: the manifest relayed is not the one expected (%s, got %s)\n' {sha} "$m" >&2; cat > /dev/null; exit {checksum}; fi
gzip -dc < "$P.mgz" > "$P.m" || {{ cat > /dev/null; exit {write}; }}
{unpacked}
) || exit $?"#,
        take = take(len),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// [`take`] reads exactly its bytes off a pipe, leaving the rest to
    /// what reads next, with `iflag=fullblock` and with a `dd` that has
    /// none (only `bs=1` then).
    #[test]
    fn the_split_reads_no_further_than_the_manifest() {
        let old_dd = tempfile::tempdir().unwrap();
        let fake = old_dd.path().join("dd");
        std::fs::write(
            &fake,
            "#!/bin/sh\nfor a in \"$@\"; do case $a in iflag=*) exit 1 ;; esac; done\nexec /bin/dd \"$@\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let path = std::env::var("PATH").unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [1, 31_000, BLOCK, 3 * BLOCK + 5] {
            for (dd, path) in [
                ("dd", path.clone()),
                (
                    "a dd without iflag",
                    format!("{}:{path}", old_dd.path().display()),
                ),
            ] {
                let at = format!("{len} bytes, {dd}");
                let dir = tempfile::tempdir().unwrap();
                let script = format!("{{ {}; }} > head; cat > rest", take(len));
                // Through a pipe that gets its bytes in small pieces.
                let mut child = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(&script)
                    .current_dir(dir.path())
                    .env("PATH", &path)
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut input = child.stdin.take().unwrap();
                for piece in bytes.chunks(1000) {
                    std::io::Write::write_all(&mut input, piece).unwrap();
                }
                drop(input);
                assert!(child.wait().unwrap().success(), "{at}");
                let head = std::fs::read(dir.path().join("head")).unwrap();
                let rest = std::fs::read(dir.path().join("rest")).unwrap();
                assert_eq!(head, bytes[..len as usize], "{at}");
                assert_eq!(rest, bytes[len as usize..], "{at}");
            }
        }
    }
}
