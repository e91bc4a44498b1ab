//! What relays leave on a host, as the lock's script sees it: a relay's
//! files live under `$H/relay/<run>/` and its line in authorized_keys ends
//! with `hoist-relay <run>` (see `engine::relay`). Here, under the layout,
//! so that the lock can sweep what an interrupted relay left without the
//! layout depending on the relay.

use super::q;

/// Removes from authorized_keys file `$1` the lines of run `$2` (their last
/// two words are `hoist-relay $2`), keeping the file itself (its owner and
/// mode).
pub(crate) const UNLIST_FN: &str = r#"hoist_relay_unlist() {
  [ -f "$1" ] || return 0
  awk -v r="$2" '$NF == r && $(NF-1) == "hoist-relay" { f = 1 } END { exit !f }' "$1" || return 0
  awk -v r="$2" '!($NF == r && $(NF-1) == "hoist-relay")' "$1" > "$1.hoist-relay" && cat "$1.hoist-relay" > "$1"
  s=$?; rm -f "$1.hoist-relay"; return $s
}"#;

/// Removes what relays of runs other than `keep` left under `$H/relay`
/// and their lines in authorized_keys: called under the lock, so no other
/// run of this deploy path is alive. Nothing happens without `$H/relay`.
pub(crate) fn sweep(keep: &str) -> String {
    format!(
        r#"if [ -d "$H/relay" ]; then
{UNLIST_FN}
  for x in "$H"/relay/*; do
    [ -d "$x" ] || continue
    [ "${{x##*/}}" = {keep} ] && continue
    if [ -f "$x/ak" ]; then hoist_relay_unlist "$(cat "$x/ak")" "${{x##*/}}"; fi
    rm -rf "$x"
  done
  rmdir "$H/relay" 2>/dev/null
fi"#,
        keep = q(keep)
    )
}
