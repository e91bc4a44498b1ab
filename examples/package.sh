#!/bin/sh
# Builds hoist's release files into target/dist/ and checks them:
#
#   hoist-<target>.tar.gz       hoist/bin/hoist, hoist/share/man/man1/*.1 (one page
#                               per command), shell completions, README.md, LICENSE:
#                               what .github/install.sh installs
#   hoist_<version>-1_<arch>.deb  with --deb: the same, laid out for Debian
#                               (needs cargo-deb: cargo install cargo-deb --locked)
#
#   examples/package.sh [--target TRIPLE] [--profile release|dev] [--deb] [--install]
#
# The archive's hoist must answer --version (so build for a CPU this machine
# runs); the .deb must hold usr/bin/hoist and a gzipped man page for every
# page examples/man.rs wrote. --install (as root) then installs the .deb
# with dpkg -i and checks that `hoist --version` and `man hoist-deploy` work.
# .github/workflows/release.yml runs this for each release target.
set -eu
cd "$(dirname "$0")/.."

say() { printf 'package.sh: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

target=""
profile=release
deb=no
install=no
while [ $# -gt 0 ]; do
    case "$1" in
        --target) [ $# -ge 2 ] || die "--target needs a value"; target="$2"; shift 2 ;;
        --profile) [ $# -ge 2 ] || die "--profile needs a value"; profile="$2"; shift 2 ;;
        --deb) deb=yes; shift ;;
        --install) deb=yes; install=yes; shift ;;
        *) die "unknown argument: $1" ;;
    esac
done

triple="${target:-$(rustc -vV | sed -n 's/^host: //p')}"
case "$profile" in
    dev) dir=debug ;;
    *) dir="$profile" ;;
esac
out="${CARGO_TARGET_DIR:-target}${target:+/$target}/$dir"
dist="${CARGO_TARGET_DIR:-target}/dist"

say "building hoist and its man pages ($profile, $triple)"
# $target_flag is empty or two words, so it is left unquoted below.
target_flag="${target:+--target $target}"
# shellcheck disable=SC2086
cargo build --locked --profile "$profile" $target_flag --bin hoist --example man

# Generated files sit beside the binary: cargo-deb reads target/release/ in
# Cargo.toml's assets as this very directory.
assets="$out/assets"
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$out/examples/man" "$assets/man" >/dev/null
"$out/hoist" completions bash >"$assets/completions/hoist.bash"
"$out/hoist" completions zsh >"$assets/completions/_hoist"
"$out/hoist" completions fish >"$assets/completions/hoist.fish"
[ -f "$assets/man/hoist-deploy.1" ] || die "examples/man wrote no hoist-deploy.1"
# Debian wants man pages gzipped, and cargo-deb leaves generated files as
# they are.
mkdir -p "$assets/man-gz"
for page in "$assets"/man/*.1; do
    gzip -9 -n -c "$page" >"$assets/man-gz/$(basename "$page").gz"
done

stage="$dist/stage-$triple"
rm -rf "$stage"
mkdir -p "$stage/hoist/bin" "$stage/hoist/share/man/man1" \
    "$stage/hoist/share/bash-completion/completions" \
    "$stage/hoist/share/zsh/site-functions" \
    "$stage/hoist/share/fish/vendor_completions.d"
cp "$out/hoist" "$stage/hoist/bin/hoist"
# Symbols are no use to a user (a dev build's are most of its 200 MB).
if command -v strip >/dev/null 2>&1; then strip "$stage/hoist/bin/hoist"; fi
cp "$assets"/man/*.1 "$stage/hoist/share/man/man1/"
cp "$assets/completions/hoist.bash" "$stage/hoist/share/bash-completion/completions/hoist"
cp "$assets/completions/_hoist" "$stage/hoist/share/zsh/site-functions/_hoist"
cp "$assets/completions/hoist.fish" "$stage/hoist/share/fish/vendor_completions.d/hoist.fish"
cp README.md LICENSE "$stage/hoist/"
archive="$dist/hoist-$triple.tar.gz"
tar -czf "$archive" -C "$stage" hoist
rm -rf "$stage"

version="$("$out/hoist" --version)" || die "the built hoist does not run here"
say "$archive: $version"
echo "$archive"

[ "$deb" = yes ] || exit 0

command -v cargo-deb >/dev/null 2>&1 || die "--deb needs cargo-deb: cargo install cargo-deb --locked"
fast=""
# A dev build is for checking the package, not shipping it: compress fast.
if [ "$profile" = dev ]; then fast="--fast"; fi
# shellcheck disable=SC2086
debfile="$(cargo deb --locked --no-build --profile "$profile" $target_flag $fast --output "$dist/" | tail -n 1)"
[ -f "$debfile" ] || die "cargo deb made no .deb (it said: $debfile)"

contents="$(dpkg-deb --contents "$debfile")"
expect() {
    printf '%s\n' "$contents" | grep -q " \./$1\$" || die "$debfile lacks /$1"
}
expect usr/bin/hoist
for page in "$assets"/man/*.1; do
    expect "usr/share/man/man1/$(basename "$page").gz"
done
expect usr/share/bash-completion/completions/hoist
say "$debfile: usr/bin/hoist, $(printf '%s\n' "$contents" | grep -c '/man1/') man pages"
echo "$debfile"

[ "$install" = yes ] || exit 0

dpkg -i "$debfile" >/dev/null
installed="$(/usr/bin/hoist --version)"
[ "$installed" = "$version" ] || die "/usr/bin/hoist says '$installed', the build says '$version'"
MANPAGER=cat MANWIDTH=100 man hoist-deploy 2>/dev/null | grep -q -- '--resume' ||
    die "man hoist-deploy does not show the page of hoist deploy"
say "installed: $installed; man hoist-deploy opens"
