#!/bin/sh
# Installs hoist from the project's GitHub releases: picks the archive for
# this OS and CPU, checks it against the release's SHA256SUMS, and only then
# installs it under a prefix (bin/hoist and its man pages). Anything that
# does not check out stops the script before the prefix is touched.
#
#   curl -fsSL https://raw.githubusercontent.com/OWNER/hoist/v0.1.0/.github/install.sh \
#     | HOIST_REPO=OWNER/hoist sh -s -- --version 0.1.0
#
# Flags (or the environment; a flag wins):
#   --version V   HOIST_VERSION  release to install, e.g. 0.1.0 [default: the latest]
#   --prefix DIR  HOIST_PREFIX   installs DIR/bin/hoist and DIR/share/man/man1/*.1
#                                [default: /usr/local as root, else ~/.local]
# The environment only:
#   HOIST_REPO      owner/name of hoist's GitHub repository, where releases are
#                   published (no default until the project has a public home)
#   HOIST_BASE_URL  where releases live [default: https://github.com/$HOIST_REPO/releases];
#                   a mirror laid out the same way: download/v<V>/<asset>,
#                   latest/download/<asset>, with SHA256SUMS beside the assets
#   HOIST_TARGET    the release's target triple [default: from uname]
#
# Assets are hoist-<target>.tar.gz, target one of x86_64-unknown-linux-musl,
# aarch64-unknown-linux-musl, x86_64-apple-darwin, aarch64-apple-darwin.
set -eu

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

version="${HOIST_VERSION:-latest}"
prefix="${HOIST_PREFIX:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --version) [ $# -ge 2 ] || die "--version needs a value"; version="$2"; shift 2 ;;
        --version=*) version="${1#*=}"; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        -h | --help)
            echo "usage: install.sh [--version V] [--prefix DIR]   (HOIST_REPO or HOIST_BASE_URL set)"
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
version="${version#v}"
if [ -z "$prefix" ]; then
    if [ "$(id -u)" -eq 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
fi

if [ -n "${HOIST_BASE_URL:-}" ]; then
    base="${HOIST_BASE_URL%/}"
elif [ -n "${HOIST_REPO:-}" ]; then
    base="https://github.com/$HOIST_REPO/releases"
else
    die "set HOIST_REPO=owner/name (the GitHub repository hoist is released from) or HOIST_BASE_URL"
fi

target="${HOIST_TARGET:-}"
if [ -z "$target" ]; then
    cpu="$(uname -m)"
    case "$cpu" in
        x86_64 | amd64) cpu=x86_64 ;;
        aarch64 | arm64) cpu=aarch64 ;;
        *) die "no hoist release for CPU $cpu; build it from source: cargo install --locked --git <repository>" ;;
    esac
    os="$(uname -s)"
    case "$os" in
        Linux) target="$cpu-unknown-linux-musl" ;;
        Darwin) target="$cpu-apple-darwin" ;;
        *) die "no hoist release for $os; build it from source: cargo install --locked --git <repository>" ;;
    esac
fi
asset="hoist-$target.tar.gz"
if [ "$version" = latest ]; then
    url="$base/latest/download"
else
    url="$base/download/v$version"
fi

fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        die "needs curl or wget to download $1"
    fi
}

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d ' ' -f 1
    elif command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha256 -r "$1" | cut -d ' ' -f 1
    else
        die "needs sha256sum, shasum or openssl to check what it downloads"
    fi
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/hoist-install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "downloading $url/$asset"
fetch "$url/SHA256SUMS" "$tmp/SHA256SUMS" || die "could not download $url/SHA256SUMS"
fetch "$url/$asset" "$tmp/$asset" || die "could not download $url/$asset"

# A line is "<sha256>  <name>" (or "<sha256> *<name>", binary mode).
want="$(awk -v name="$asset" '$2 == name || $2 == "*" name { print $1; exit }' "$tmp/SHA256SUMS")"
[ -n "$want" ] || die "refusing to install: SHA256SUMS has no line for $asset; nothing was installed"
got="$(sha256 "$tmp/$asset")"
want="$(printf '%s' "$want" | tr 'A-F' 'a-f')"
if [ "$got" != "$want" ]; then
    die "refusing to install: $asset has sha256 $got, SHA256SUMS says $want; nothing was installed"
fi

mkdir "$tmp/x"
tar -xzf "$tmp/$asset" -C "$tmp/x" || die "refusing to install: $asset is not a .tar.gz; nothing was installed"
src="$tmp/x/hoist"
[ -f "$src/bin/hoist" ] || die "refusing to install: $asset holds no hoist/bin/hoist; nothing was installed"
chmod 755 "$src/bin/hoist"
runs="$("$src/bin/hoist" --version 2>&1)" ||
    die "refusing to install: the downloaded hoist does not run here ($runs); nothing was installed"

# Replaced with a rename, so a hoist already there is never half written.
mkdir -p "$prefix/bin"
cp "$src/bin/hoist" "$prefix/bin/.hoist.new.$$"
mv -f "$prefix/bin/.hoist.new.$$" "$prefix/bin/hoist"
if [ -d "$src/share/man/man1" ]; then
    mkdir -p "$prefix/share/man/man1"
    for page in "$src"/share/man/man1/*.1; do
        if [ -f "$page" ]; then cp "$page" "$prefix/share/man/man1/"; fi
    done
fi

say "installed $runs to $prefix/bin/hoist"
case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) say "$prefix/bin is not on PATH; add it: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
