//! The host scripts of manifests, delta uploads, pulls from a URL and
//! `hoist verify`, beside `layout` (same head, same quoting: every value
//! goes through [`q`]).
//!
//! A host lists a release with [`MANIFEST_FN`] in exactly the text
//! [`crate::manifest::Manifest::encode`] makes, so "this release is exact"
//! is one sha256 compared on the host.

use super::layout::{Layout, PICK_SHA, ReceiveStep, q};
use crate::release::ReleaseId;

/// `hoist_manifest DIR` prints the manifest of DIR's contents. Hashes are
/// computed in batches (one `$HOIST_SHA` per `find` batch, never one
/// process per file). Where `find` has `-printf` (GNU), it prints each
/// entry's line itself; elsewhere (busybox), and for a path or link target
/// holding a newline, tab or backslash (which must be escaped), a shell
/// loop over one `stat` per batch does. Such a name is hashed on its own,
/// since `sha256sum` may escape or split it. Symlinks are never followed.
/// Scripts take it with [`manifest_fns`].
const MANIFEST_FN: &str = r#"HOIST_ENTRIES='nl="
"
tab="	"
esc() {
  case $1 in
  *\\*|*"$tab"*|*"$nl"*) ;;
  *) e=$1; return ;;
  esac
  e= r=$1
  while [ -n "$r" ]; do
    c=${r%"${r#?}"}
    r=${r#?}
    case $c in
    \\) e="$e\\\\" ;;
    "$tab") e="$e\\t" ;;
    "$nl") e="$e\\n" ;;
    *) e="$e$c" ;;
    esac
  done
}
stat -c "%f %a %s" "$@" | while read -r raw mode size; do
  p=$1; shift
  esc "${p#./}"; ep=$e
  case $(( 0x$raw & 61440 )) in
  32768)
    case $p in
    *\\*|*"$tab"*|*"$nl"*) h=$(sha256sum < "$p"); h=${h%% *} ;;
    *) h="?" ;;
    esac
    printf "%s\tf\t%s\t%s\t%s\n" "$ep" "$mode" "$size" "$h" ;;
  16384) printf "%s\td\t%s\n" "$ep" "$mode" ;;
  40960) l=$(readlink "$p"; echo .); l=${l%??}; esc "$l"; printf "%s\tl\t%s\n" "$ep" "$e" ;;
  *) printf "%s\to\n" "$ep" ;;
  esac
done'
HOIST_MERGE='BEGIN { FS = "\t" }
$0 == "//hashes" { h = 1; next }
!h { line[++n] = $0; if ($2 == "f" && $5 == "?") at[$1] = n; next }
{
  name = substr($0, 67)
  if (substr(name, 1, 2) == "./") name = substr(name, 3)
  if (name in at) { i = at[name]; line[i] = substr(line[i], 1, length(line[i]) - 1) substr($0, 1, 64) }
}
END { for (i = 1; i <= n; i++) print line[i] }'
hoist_manifest() (
  cd "$1" || exit 1
  LC_ALL=C; export LC_ALL
  nl='
'
  tab='	'
  echo 'hoist-manifest 1'
  { if find . -maxdepth 0 -printf '' 2>/dev/null; then
      find . ! -name . \( \( -path "*$nl*" -o -path "*$tab*" -o -path '*\\*' -o -lname "*$nl*" -o -lname "*$tab*" -o -lname '*\\*' \) -exec sh -c "$HOIST_ENTRIES" sh {} + \
        -o -type f -printf '%P\tf\t%m\t%s\t?\n' -o -type d -printf '%P\td\t%m\n' -o -type l -printf '%P\tl\t%l\n' -o -printf '%P\to\n' \)
    else
      find . ! -name . -exec sh -c "$HOIST_ENTRIES" sh {} +
    fi
    echo //hashes
    find . -type f ! -path "*$nl*" ! -path "*$tab*" ! -path '*\\*' -exec $HOIST_SHA {} +
  } | awk "$HOIST_MERGE" | sort
)
# GNU tar applies the umask unless told to preserve the archive's modes; an
# option busybox's tar would refuse, so through TAR_OPTIONS, which it ignores.
# Owners are never kept from an archive (see `Layout::tame_fn`).
TAR_OPTIONS='--preserve-permissions --no-same-owner'; export TAR_OPTIONS
XF=-xf; XZF=-xzf"#;

/// [`MANIFEST_FN`] with the `HOIST_SHA` it hashes with ([`PICK_SHA`]).
fn manifest_fns() -> String {
    format!("{PICK_SHA}\n{MANIFEST_FN}")
}

/// Steps of the scripts here that [`ReceiveStep`] does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseStep {
    /// The release the delta was built from, once changed by it, is not
    /// what the manifest says: it was edited by hand (exit code 7; the
    /// host's listing of it is on stdout).
    Mismatch = 7,
    /// The download from the URL failed (exit code 8).
    Download = 8,
}

impl ReleaseStep {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// What a host answered to [`Layout::verify_listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The manifest recorded with the release; `None` when there is none
    /// (deployed before manifests existed).
    pub recorded: Option<Vec<u8>>,
    /// The release as it is now, listed by the host.
    pub actual: Vec<u8>,
}

impl Listing {
    pub fn parse(output: &[u8]) -> Result<Listing, String> {
        let marker = b"\n//actual\n";
        let Some(rest) = output.strip_prefix(b"hoist-verify 1\n") else {
            return Err("unexpected answer from the host's shell".into());
        };
        if let Some(actual) = rest.strip_prefix(b"none\n//actual\n") {
            return Ok(Listing {
                recorded: None,
                actual: actual.to_vec(),
            });
        }
        let at = rest
            .windows(marker.len())
            .position(|w| w == marker)
            .ok_or("the host's answer has no listing")?;
        Ok(Listing {
            recorded: Some(rest[..at + 1].to_vec()),
            actual: rest[at + marker.len()..].to_vec(),
        })
    }
}

impl Layout {
    fn manifest_path(&self, id: &ReleaseId) -> String {
        format!("\"$H/manifests/\"{}", q(id.as_str()))
    }

    /// Prints the manifest recorded for release `id`, or nothing; no more
    /// than `most` bytes and one (which says it is longer).
    pub fn read_manifest(&self, id: &ReleaseId, most: u64) -> String {
        format!(
            "{head}\nM={m}\nif [ -f \"$M\" ]; then head -c {over} \"$M\"; fi",
            head = self.head(),
            m = self.manifest_path(id),
            over = most + 1
        )
    }

    /// Stores the manifest on stdin, gzipped, as release `id`'s.
    pub fn record_manifest(&self, id: &ReleaseId, token: &str) -> String {
        format!(
            r#"{head}
T={part}.manifest
mkdir -p "$H/manifests" "$H/tmp" && gzip -dc > "$T" && mv "$T" {m} || {{ rm -f "$T"; exit 1; }}
"#,
            head = self.head(),
            part = self.part(id, token),
            m = self.manifest_path(id)
        )
    }

    /// Downloads `url` on the host (curl, else wget), checks its sha256,
    /// and only then unpacks it under a temporary name, lists it as its
    /// manifest and renames it to `releases/<id>`. Nothing is unpacked
    /// from a download whose hash differs.
    ///
    /// The URL is fetched as written (curl's `--globoff`: `[ ] { }` are no
    /// patterns) over http or https only, redirects included (wget speaks
    /// nothing else but ftp). At most `limit` bytes are kept: the body
    /// goes through `head -c`, so a body sent without a length stops there
    /// too, and the download fails saying so.
    pub fn pull(
        &self,
        id: &ReleaseId,
        token: &str,
        url: &str,
        sha256: &str,
        packing: UrlPacking,
        limit: Option<u64>,
    ) -> String {
        let (unpack, list) = match packing {
            UrlPacking::TarGz => ("$XZF", "-tvzf"),
            UrlPacking::Tar => ("$XF", "-tvf"),
        };
        let (cap, max_filesize, over) = match limit {
            Some(n) => (
                format!("head -c {}", n + 1),
                format!(" --max-filesize {n}"),
                format!(
                    r#"size=$(wc -c < "$P.part") || exit {write}
if [ $((size)) -gt {n} ] || [ "$tool$rc" = curl63 ]; then printf 'the download of %s is larger than %s bytes, the most this host takes (artifact.max_size, or half its free space); stopped\n' "$U" {n} >&2; exit {download}; fi
"#,
                    write = ReceiveStep::Write.code(),
                    download = ReleaseStep::Download.code(),
                ),
            ),
            None => ("cat".to_string(), String::new(), String::new()),
        };
        format!(
            r#"{head}
{manifest_fn}
P={part}
R="$D/releases/"{id}
U={url}
trap 'rm -rf "$P.part" "$P.rc" "$P.d" "$P.m"' EXIT
trap 'exit 130' HUP INT TERM
mkdir -p "$D/releases" "$H/tmp" "$H/sums" "$H/manifests" || exit {write}
if [ -e "$R" ]; then printf '%s already exists\n' "$R" >&2; exit {exists}; fi
rm -rf "$P.part" "$P.rc" "$P.d" "$P.m"
if command -v curl >/dev/null 2>&1; then
  tool=curl
  {{ curl -fsSL --globoff --proto =http,https --proto-redir =http,https{max_filesize} --connect-timeout 30 "$U"; echo $? > "$P.rc"; }} | {cap} > "$P.part" || exit {write}
elif command -v wget >/dev/null 2>&1; then
  tool=wget
  {{ wget -q -T 30 -O - "$U"; echo $? > "$P.rc"; }} | {cap} > "$P.part" || exit {write}
else
  echo 'neither curl nor wget is installed' >&2; exit {download}
fi
rc=$(cat "$P.rc" 2>/dev/null) || rc=unknown
{over}[ "$rc" = 0 ] || {{ printf 'cannot download %s (%s exit %s)\n' "$U" "$tool" "$rc" >&2; exit {download}; }}
sum=$($HOIST_SHA < "$P.part") || {{ echo "cannot hash the download" >&2; exit {checksum}; }}
sum=${{sum%% *}}
if [ "$sum" != {sha256} ]; then printf 'checksum mismatch: expected %s, got %s; nothing was unpacked\n' {sha256} "$sum" >&2; exit {checksum}; fi
{tame_fn}
if tar {list} - < "$P.part" 2>/dev/null | grep -q '^[bcps]'; then echo 'the download holds special files (devices, FIFOs or sockets), which a release never holds; nothing was unpacked' >&2; exit {unpack_code}; fi
mkdir "$P.d" && (cd "$P.d" && tar {unpack} -) < "$P.part" || exit {unpack_code}
hoist_tame "$P.d" || exit {unpack_code}
rm -f "$P.part"
hoist_manifest "$P.d" > "$P.m" || exit {unpack_code}
mv "$P.m" "$H/manifests/"{id} && printf '%s\n' {sha256} > "$H/sums/"{id} && mv "$P.d" "$R" || exit {finish}
"#,
            head = self.head(),
            manifest_fn = manifest_fns(),
            tame_fn = self.tame_fn(),
            part = self.part(id, token),
            id = q(id.as_str()),
            url = q(url),
            sha256 = q(sha256),
            write = ReceiveStep::Write.code(),
            exists = ReceiveStep::Exists.code(),
            download = ReleaseStep::Download.code(),
            checksum = ReceiveStep::Checksum.code(),
            unpack_code = ReceiveStep::Unpack.code(),
            finish = ReceiveStep::Finish.code(),
        )
    }

    /// `hoist check`: can the host reach `url`? A HEAD request; prints
    /// `url-ok`, or fails with the tool's error.
    pub fn reach_url(url: &str) -> String {
        format!(
            r#"U={url}
if command -v curl >/dev/null 2>&1; then curl -fsSI --globoff --proto =http,https --proto-redir =http,https --connect-timeout 10 --max-time 20 -o /dev/null "$U" || exit 1
elif command -v wget >/dev/null 2>&1; then wget -q -T 10 --spider "$U" || exit 1
else echo 'neither curl nor wget is installed' >&2; exit 1; fi
echo url-ok"#,
            url = q(url)
        )
    }

    /// The manifest recorded with release `id` and the host's listing of
    /// the release as it is now, for `hoist verify`. See [`Listing::parse`].
    pub fn verify_listing(&self, id: &ReleaseId) -> String {
        format!(
            r#"{head}
{manifest_fn}
M={m}
R="$D/releases/"{id}
[ -d "$R" ] || {{ printf '%s is missing\n' "$R" >&2; exit 1; }}
echo 'hoist-verify 1'
if [ -f "$M" ]; then cat "$M"; else echo none; fi
echo '//actual'
hoist_manifest "$R"
"#,
            head = self.head(),
            manifest_fn = manifest_fns(),
            m = self.manifest_path(id),
            id = q(id.as_str()),
        )
    }
}

/// How a downloaded artifact is unpacked, from its URL's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlPacking {
    TarGz,
    Tar,
}

mod delta;
pub(crate) use delta::DeltaHop;

#[cfg(test)]
mod tests;
