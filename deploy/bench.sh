#!/usr/bin/env bash
# The end-to-end benchmark on a fresh machine: installs what is missing,
# builds in release mode, makes a throw-away data dir (embedded PostgreSQL,
# fsync on) and keys dir, runs `cardswitch bench` (64 terminals, 100,000
# cards, 32 clients, a debit run and a mixed run, then pgbench -M prepared on
# the same cluster), prints the JSON summary and, last, the `ratio=` line.
# Extra arguments go to `cardswitch bench` (e.g. --duration 10 --cards 10000).
# BENCH_KEEP=1 keeps the temp dir (the daemon's log is in it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/ensure-deps.sh
cargo build --release --locked >&2
bin="${CARGO_TARGET_DIR:-./target}/release/cardswitch"
# Short, so the cluster's socket path stays under 108 bytes; searchable by
# the postgres user (the cluster runs as that user when we are root).
work="$(mktemp -d /tmp/csbench.XXXXXX)"
chmod 755 "$work"
cleanup() {
    "$bin" --data-dir "$work" db stop >/dev/null 2>&1 || true
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
export CARDSWITCH_DATA_DIR="$work" CARDSWITCH_KEYS_DIR="$work/keys"
unset CARDSWITCH_DATABASE_URL CARDSWITCH_CONFIG
# Keys are an explicit ops step, here into the temp keys dir.
echo "bench: cardswitch keys init (into $work/keys)" >&2
"$bin" keys init >&2
"$bin" bench "$@"
