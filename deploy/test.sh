#!/usr/bin/env bash
# Runs the whole test suite: unit, property and integration tests (the
# integration tests start a private PostgreSQL cluster of their own).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/ensure-deps.sh
cargo test --locked --workspace --all-targets "$@"
