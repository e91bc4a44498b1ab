//! [`Layout::receive_delta`]: a release made from one the host holds and
//! a delta, as sent from here or relayed by another host.

use super::{ReleaseStep, manifest_fns};
use crate::engine::layout::{Layout, ReceiveStep, hashed_unpack, q};
use crate::release::ReleaseId;

/// A delta as a relayed host receives it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeltaHop<'a> {
    /// The sha256 of the delta's bytes, as hoist cut them.
    pub sha: &'a str,
    /// The lines that start the readers passing it on, and their fifos
    /// (see [`crate::engine::layout::Layout::receive_fanning`]); empty
    /// for a host that relays to none.
    pub fan: (&'a str, &'a str),
}

/// The lines that take the delta on stdin into `$P.x`.
fn intake(relayed: Option<DeltaHop>) -> String {
    let write = ReceiveStep::Write.code();
    let Some(DeltaHop {
        sha,
        fan: (setup, fifos),
    }) = relayed
    else {
        return format!(
            r#"trap 'rm -rf "$P.d" "$P.x" "$P.m" "$P.l" "$P.e"' EXIT
trap 'exit 130' HUP INT TERM
mkdir -p "$H/tmp" "$H/sums" "$H/manifests" || exit {write}
rm -rf "$P.d" "$P.x" "$P.m" "$P.l" "$P.e" && mkdir "$P.x" && (cd "$P.x" && tar $XZF -) || exit {write}
"#
        );
    };
    format!(
        r#"K=
trap 'wait; rm -rf "$P.d" "$P.x" "$P.m" "$P.l" "$P.e" "$P.fifo"{fifos}' EXIT
trap '[ -z "$K" ] || kill $K 2>/dev/null; exit 130' HUP INT TERM
mkdir -p "$H/tmp" "$H/sums" "$H/manifests" || exit {write}
rm -rf "$P.d" "$P.x" "$P.m" "$P.l" "$P.e" "$P.fifo" && mkdir "$P.x" && mkfifo "$P.fifo" || exit {write}
{setup}{unpacked}
set +f
"#,
        unpacked = hashed_unpack("$P.x", "$XZF", fifos, ("delta", sha), write),
    )
}

impl Layout {
    /// Makes `releases/<id>` from `releases/<from>` and a delta on stdin: a
    /// gzipped tar holding `remove` (paths to delete first, a line each,
    /// escaped as in a manifest), `dirs` (paths that must be real
    /// directories, not symlinks, before anything is written under them),
    /// `keep` (what to copy from `from`: what its manifest lists and the new
    /// release keeps), `paths` (every path of the new release) and `files/`
    /// (what is new or changed). The release is a copy of `from`'s listed
    /// entries (never hard links: editing or deleting one release by hand
    /// never changes another; never the link, when `from` is a symlink to
    /// a release moved elsewhere), then the deletions, then the files. What
    /// the app added to `from` is not copied (GNU tar copies by the list;
    /// elsewhere `cp` copies everything and whatever `paths` does not hold
    /// is deleted again). Then the host lists it and renames it into place
    /// only when the listing's sha256 is `manifest_sha`. Otherwise it
    /// prints the listing and exits [`ReleaseStep::Mismatch`] (a listed
    /// entry of `from` changed since its switch), or a [`ReceiveStep`]
    /// code. The listing (about 66 KB for 708 files) is hashed with
    /// `sha256sum`, which starts faster than `openssl`.
    pub fn receive_delta(
        &self,
        from: &ReleaseId,
        id: &ReleaseId,
        token: &str,
        manifest_sha: &str,
        content_sha: &str,
    ) -> String {
        self.receive_delta_fanning(from, id, token, manifest_sha, content_sha, None)
    }

    /// [`Layout::receive_delta`], for a delta relayed from host to host:
    /// the delta is hash-checked against `relayed.sha` while it is
    /// unpacked (nothing of it is used unless it is the one hoist cut),
    /// and passed on as it arrives as [`Layout::receive_fanning`] does
    /// (`relayed.fan`, when the host relays). The script then waits for
    /// its readers before it ends. Without `relayed`, `receive_delta`'s
    /// script exactly.
    pub(crate) fn receive_delta_fanning(
        &self,
        from: &ReleaseId,
        id: &ReleaseId,
        token: &str,
        manifest_sha: &str,
        content_sha: &str,
        relayed: Option<DeltaHop<'_>>,
    ) -> String {
        format!(
            r#"{head}
{manifest_fn}
P={part}
R="$D/releases/"{id}
C="$D/releases/"{from}
{intake}if [ -e "$R" ]; then printf '%s already exists\n' "$R" >&2; exit {exists}; fi
[ -d "$C" ] || {{ printf '%s is gone\n' "$C" >&2; exit {unpack}; }}
mkdir "$P.d" || exit {unpack}
if tar --no-recursion -cf /dev/null -T /dev/null 2>/dev/null; then
  # What cannot be copied as listed (gone, or under a symlink now) is
  # found by the check below, not here.
  (cd "$C/" && tar --no-recursion -cf - -T - 2>/dev/null) < "$P.x/keep" | (cd "$P.d" && tar $XF - 2>/dev/null)
else
  cp -a "$C/." "$P.d/" || exit {unpack}
fi
under_link() {{
  a=$1
  while case $a in */*) true ;; *) false ;; esac; do
    a=${{a%/*}}
    if [ -L "$P.d/$a" ]; then printf '%s is a symlink in %s\n' "$a" "$C" >&2; return 0; fi
  done
  return 1
}}
while IFS= read -r e; do
  p=$(printf '%b.' "$e"); p=${{p%.}}
  under_link "$p" && {{ hoist_manifest "$P.d"; exit {mismatch}; }}
  rm -rf "$P.d/$p" || exit {unpack}
done < "$P.x/remove"
while IFS= read -r e; do
  p=$(printf '%b.' "$e"); p=${{p%.}}
  if under_link "$p/x" || {{ [ -e "$P.d/$p" ] && [ ! -d "$P.d/$p" ]; }}; then hoist_manifest "$P.d"; exit {mismatch}; fi
done < "$P.x/dirs"
# Only what the delta brings is tamed: the rest is the old release's, tamed
# when it was made (a special file put there by hand is a mismatch below).
{tame_fn}
hoist_tame "$P.x/files" || exit {unpack}
(cd "$P.x/files" && tar -cf - .) | (cd "$P.d" && tar $XF -) || exit {unpack}
hoist_manifest "$P.d" > "$P.l" || exit {unpack}
: > "$P.e"
awk -F '\t' -v m="$P.m" -v x="$P.e" '
FILENAME == ARGV[1] {{ keep[$0] = 1; next }}
FNR == 1 || ($1 in keep) {{ print > m; next }}
{{ up = $1; sub(/\/[^\/]*$/, "", up); if (up == $1 || (up in keep)) print $1 > x }}
' "$P.x/paths" "$P.l" || exit {unpack}
while IFS= read -r e; do
  p=$(printf '%b.' "$e"); p=${{p%.}}
  rm -rf "$P.d/$p" || exit {unpack}
done < "$P.e"
sum=$(sha256sum < "$P.m") || exit {unpack}
if [ "${{sum%% *}}" != {manifest_sha} ]; then cat "$P.m"; exit {mismatch}; fi
mv "$P.m" "$H/manifests/"{id} && printf '%s\n' {content_sha} > "$H/sums/"{id} && mv "$P.d" "$R" || exit {finish}
"#,
            head = self.head(),
            intake = intake(relayed),
            manifest_fn = manifest_fns(),
            tame_fn = self.tame_fn(),
            part = self.part(id, token),
            id = q(id.as_str()),
            from = q(from.as_str()),
            manifest_sha = q(manifest_sha),
            content_sha = q(content_sha),
            exists = ReceiveStep::Exists.code(),
            unpack = ReceiveStep::Unpack.code(),
            finish = ReceiveStep::Finish.code(),
            mismatch = ReleaseStep::Mismatch.code(),
        )
    }
}
