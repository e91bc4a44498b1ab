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

cargo test --locked --all-targets "$@"
