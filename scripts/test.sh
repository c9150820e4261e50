#!/usr/bin/env bash
# Every test: unit tests, real-container integration tests (as root), and the
# docker/podman client tests. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
cargo build --release -q
cargo test --workspace --release -- --test-threads="${BERTH_TEST_THREADS:-2}"
