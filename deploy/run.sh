#!/usr/bin/env bash
# Quick start: install what is missing, build in release mode, create the keys
# if there are none yet, and run the daemon on the embedded private PostgreSQL
# (./var/pg), listening on 127.0.0.1:8080. Extra arguments go to
# `cardswitch serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/ensure-deps.sh
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-./target}/release/cardswitch"
# An explicit ops step, done here once: the daemon itself never makes keys
# and refuses to start without them. The root key file this writes to
# ./keys can then be moved offline (README, Operations).
keys_dir="${CARDSWITCH_KEYS_DIR:-./keys}"
if [ ! -e "$keys_dir/master.key" ]; then
    "$bin" keys init
fi
exec "$bin" serve "$@"
