#!/usr/bin/env bash
# Quick start: install what is missing, build in release mode, and run the
# daemon on the embedded private PostgreSQL (./var/pg), listening on
# 127.0.0.1:8080. Extra arguments go to `cardswitch serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/ensure-deps.sh
cargo build --release --locked
exec ./target/release/cardswitch serve "$@"
