#!/bin/sh
# Quickstart: Rebake on real inputs, on loopback, in a few minutes.
#
# Finds (or, as root, installs) nats-server and docker-registry, then runs
# tests/src/bin/rebake-quickstart.rs: a base image from real Debian packages (a local,
# signed feed built with `apt-get download` from this machine's apt sources), two apps
# from a local Git repository on it, one image on top of an app, and a vendor-based image;
# then three upstream changes (new package version, Git push webhook, new base in the
# registry), each followed live until its cascade settles, and a summary table.
# Ctrl-C stops everything it started.
set -eu

cd "$(dirname "$0")"

find_tool() {
    # Debian installs nats-server in /usr/sbin, which is not on a normal user's PATH.
    command -v "$1" 2>/dev/null && return 0
    for dir in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
        if [ -x "$dir/$1" ]; then
            echo "$dir/$1"
            return 0
        fi
    done
    return 1
}

missing=""
for tool in nats-server:nats-server docker-registry:docker-registry git:git openssl:openssl gpg:gnupg apt-get:apt; do
    binary=${tool%%:*}
    package=${tool#*:}
    if ! find_tool "$binary" >/dev/null; then
        missing="$missing $package"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing:$missing"
        apt-get install -y $missing || {
            apt-get update && apt-get install -y $missing
        }
    else
        echo "quickstart needs these Debian packages, which are not installed:$missing" >&2
        echo "install them, then run ./quickstart.sh again:" >&2
        echo "  sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "quickstart needs Rust (cargo); see https://rustup.rs (the pinned toolchain is in rust-toolchain.toml)" >&2
    exit 1
fi

# Share the build directory with ./scripts/test.sh.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rebake-target}"
# Rebake's own logs: errors only (RUST_LOG=info for everything).
export RUST_LOG="${RUST_LOG:-error}"
echo "building Rebake (release profile; the first build takes several minutes, cargo shows its progress)…"
exec cargo run --release -p rebake-e2e --bin rebake-quickstart -- "$@"
