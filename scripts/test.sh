#!/usr/bin/env bash
# Runs every test: unit tests, and the end-to-end suites against real nats-server and
# docker-registry instances the tests start themselves on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/rebake-target}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
