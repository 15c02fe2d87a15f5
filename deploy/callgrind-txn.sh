#!/usr/bin/env bash
# Instructions the daemon spends per txn, counted by callgrind (repeatable on
# a noisy machine, unlike seconds): the daemon runs under valgrind collecting
# only inside the txn handler's future (decode, checks, decrypt, the ledger's
# Rust work, the answer) and the group-commit collectors' (where a batched
# txn's ledger work runs), a paced load of debits goes through
# `cardswitch bench --url`, and the total is divided by the txns served
# (registrations and top-ups of the provisioning included).
#
#   deploy/callgrind-txn.sh [BIN]    (default: target/release/cardswitch)
#
# Prints `instructions=… txns=… per_txn=…`; the callgrind file is kept in
# the temp dir it names, for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-./target/release/cardswitch}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
work="$(mktemp -d /tmp/cscg.XXXXXX)"
chmod 755 "$work"
export CARDSWITCH_DATA_DIR="$work/data" CARDSWITCH_KEYS_DIR="$work/keys"
unset CARDSWITCH_DATABASE_URL CARDSWITCH_CONFIG
"$bin" keys init >/dev/null
"$bin" db start >/dev/null
port=$((20000 + RANDOM % 20000))
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    --toggle-collect='cardswitch::server::txn::txn::{{closure}}' \
    --toggle-collect='cardswitch::server::group::Worker::run::{{closure}}' \
    "$bin" serve --listen "127.0.0.1:$port" >"$work/daemon.log" 2>&1 &
vpid=$!
stop() {
    kill -INT "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    "$bin" db stop >/dev/null 2>&1 || true
}
trap stop EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 1
done
"$bin" bench --url "http://127.0.0.1:$port" --daemon-pid "$vpid" --terminals 4 --cards 100 \
    --clients 4 --duration 20 --warmup 1 --mix debit --rate 40 --no-pgbench >"$work/bench.log" 2>&1
txns=$(curl -s "http://127.0.0.1:$port/metrics" |
    awk -F' ' '/^cardswitch_http_requests_total\{path="v1_txn"/ {n += $2} END {print n}')
stop
trap - EXIT
total=$(callgrind_annotate "$work/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "instructions=$total txns=$txns per_txn=$((total / txns)) (files in $work)"
