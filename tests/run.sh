#!/usr/bin/env bash
# Runs hoist's whole test suite. The SSH tests start real OpenSSH sshd
# processes, so openssh-server is installed first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/sbin/sshd ]; then
  echo "tests/run.sh: installing openssh-server (the SSH tests start real sshd processes)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server openssh-client >/dev/null
fi

# One test puts hosts in a network namespace of its own (root and iproute2);
# it skips, saying why, where that cannot be done.
if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "tests/run.sh: installing iproute2 (a test reaches hosts only through a bastion in a network namespace)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; } \
    || echo "tests/run.sh: could not install iproute2; that test will skip" >&2
fi

# The become test logs in as a user of its own with password sudo (root
# creates it); it skips, saying why, where that cannot be done.
if ! command -v sudo >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "tests/run.sh: installing sudo (the become test runs hooks through password sudo)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null; } \
    || echo "tests/run.sh: could not install sudo; the become test will skip" >&2
fi

# The install scripts are checked with shellcheck; that test says when it
# skips it.
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "tests/run.sh: installing shellcheck (the install scripts are checked with it)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; } \
    || echo "tests/run.sh: could not install shellcheck; that check will skip" >&2
fi

# The dead-man switch's watchdog is tested under dash, bash and busybox sh.
if ! command -v busybox >/dev/null 2>&1; then
  echo "tests/run.sh: installing busybox (the dead-man switch's tests run its watchdog under busybox sh)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq busybox >/dev/null; } \
    || echo "tests/run.sh: could not install busybox; the busybox dead-man test will fail" >&2
fi

# The relay's dropbear tests make hosts pass the release on with dropbear's
# client (dbclient, Debian's dropbear-bin); they skip, saying why, without it.
if ! command -v dbclient >/dev/null 2>&1; then
  echo "tests/run.sh: installing dropbear-bin (the relay tests pass the release on with dropbear's dbclient)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dropbear-bin >/dev/null; } \
    || echo "tests/run.sh: could not install dropbear-bin; the dbclient relay tests will skip" >&2
fi

# The secrets tests decrypt an env file with real age (Debian's package).
if ! command -v age >/dev/null 2>&1; then
  echo "tests/run.sh: installing age (the secrets tests decrypt files with it)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq age >/dev/null; } \
    || echo "tests/run.sh: could not install age; the secrets tests will fail" >&2
fi

# The load-balancer tests put a Python app on the SSH hosts behind a real
# nginx (Debian's nginx-light) and probe it with curl; they skip, saying
# why, where those cannot be had.
missing=""
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing="$missing nginx-light"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
if [ -n "$missing" ]; then
  echo "tests/run.sh: installing$missing (the load-balancer tests run an app behind nginx)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null; } \
    || echo "tests/run.sh: could not install$missing; the load-balancer tests will skip" >&2
fi

# The analysis-gate tests query a real Prometheus (Debian's package) that
# scrapes a small metrics endpoint per test host; they skip, saying why,
# where it cannot be had.
if ! command -v prometheus >/dev/null 2>&1; then
  echo "tests/run.sh: installing prometheus (the analysis-gate tests query a real one)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
    || echo "tests/run.sh: could not install prometheus; the Prometheus gate tests will skip" >&2
fi

# The HAProxy tests put the same app behind a real HAProxy (Debian's
# package) and drive it through its runtime API with socat; they skip,
# saying why, where those cannot be had.
missing=""
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
command -v socat >/dev/null 2>&1 || missing="$missing socat"
if [ -n "$missing" ]; then
  echo "tests/run.sh: installing$missing (the HAProxy tests drive a real one through its runtime API)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null; } \
    || echo "tests/run.sh: could not install$missing; the HAProxy tests will skip" >&2
fi

# Most tests wait on real sshd processes, hooks, bakes and timeouts rather
# than the CPU: four at a time took about 30% less wall time on two cores
# than two (410 s against 573 s for the integration tests then). Six were
# no faster (698 s for the integration tests, against 649 to 758 s at four
# on other days) and made a tight timing check fail once, so four it is.
# RUST_TEST_THREADS from the environment wins.
RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" cargo test --locked --all-targets "$@"

# The README's install from source: `cargo install --locked --path .` must
# give a hoist that runs. --debug reuses what the tests just built in
# target/debug (a release build would take minutes more); it is run after
# the tests so it never relinks target/debug/hoist under a running one.
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
cargo install --locked --debug --path . --root "$root"
version="$("$root/bin/hoist" --version)"
expected="hoist $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
if [ "$version" != "$expected" ]; then
  echo "tests/run.sh: cargo install gave a hoist that says '$version', not '$expected'" >&2
  exit 1
fi
echo "tests/run.sh: cargo install --locked --path . gives a hoist that runs: $version"
