# hoist's dead-man switch on one host (see src/engine/deadman.rs). Started
# detached as `sh -c THIS hoist-deadman RUN`; POSIX sh and the host's tools.
@HEAD
@LOCK_FNS
R=@RUN
W="$H/deadman/$R"
echo $$ > "$W/pid" 2>/dev/null
s=
trap '[ -n "$s" ] && kill "$s" 2>/dev/null; exit 0' TERM
deadline() {
  d=$(cat "$1/deadline" 2>/dev/null) || d=0
  case $d in ''|*[!0-9]*) d=0 ;; esac
}
while :; do
  [ -d "$W" ] || exit 0
  deadline "$W"
  if [ "$(date +%s)" -ge "$d" ]; then
    mv "$W" "$W.reverting" 2>/dev/null || exit 0
    # A heartbeat that landed just before: keep watching.
    deadline "$W.reverting"
    if [ "$(date +%s)" -lt "$d" ] && mv "$W.reverting" "$W" 2>/dev/null; then continue; fi
    break
  fi
  sleep 1 & s=$!
  wait "$s"
  s=
done
trap '' TERM HUP INT
journal() { printf '%s%s%s\n' "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$2" >> "$H/journal"; }
ours() { lock_is_file && case $(head -n 1 "$L") in *@NEEDLE*) true ;; *) false ;; esac; }
c=$(readlink "$D/current" 2>/dev/null) || c=
# Someone deployed or went back since, or another run holds the lock: not ours to undo.
if [ "$c" = @ARMED ] && { ! lock_exists || ours; }; then
  @SWITCH_BACK
  r=0
  @AFTER_ROLLBACK
  if [ "$r" = 0 ]; then journal @REVERTED_OK; else journal @REVERTED_HOOK_FAILED; fi
fi
if ours; then rm -f "$L" && journal @FREED; fi
rm -rf "$W.reverting"
