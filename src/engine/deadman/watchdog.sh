# hoist's dead-man switch on one host (see src/engine/deadman.rs). Started
# detached as `sh -c THIS hoist-deadman RUN`; POSIX sh and the host's tools.
@HEAD
@LOCK_FNS
R=@RUN
T=@TIMEOUT
W="$H/deadman/$R"
echo $$ > "$W/pid" 2>/dev/null
s=
trap '[ -n "$s" ] && kill "$s" 2>/dev/null; exit 0' TERM
# Seconds are counted here, not read from a clock (a clock that jumps
# changes nothing; a loaded host only waits longer); each heartbeat
# changes `beat`, which starts the count again at the next look. It looks
# every tenth of the timeout (1 to 10 s): one process every few seconds,
# and it goes back between T and T plus two looks after the last beat.
beat() { b=; read -r b < "$1/beat" 2>/dev/null; }
step=$((T / 10)); [ "$step" -ge 1 ] || step=1; [ "$step" -le 10 ] || step=10
last=; left=$T
while :; do
  [ -d "$W" ] || exit 0
  beat "$W"
  if [ "$b" != "$last" ]; then last=$b; left=$T; fi
  if [ "$left" -le 0 ]; then
    mv "$W" "$W.reverting" 2>/dev/null || exit 0
    # A heartbeat that landed just before: keep watching.
    beat "$W.reverting"
    if [ "$b" != "$last" ] && mv "$W.reverting" "$W" 2>/dev/null; then continue; fi
    break
  fi
  sleep "$step" & s=$!
  wait "$s"
  s=
  left=$((left - step))
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
