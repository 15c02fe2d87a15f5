#!/usr/bin/env bash
# Fault tests of the HA topology (issue 13, item 5). Brings it up in DIR
# (deploy/ha/up.sh, two daemons) unless it is up, provisions test tills and
# cards once, and runs one load phase per fault: CLIENTS resending clients
# post debits and top-ups through the HTTP proxy while
#
#   postmaster  the leader's postmaster is killed with -9;
#   daemon      one daemon is killed with -9, then started again;
#   node        the leader's Patroni and PostgreSQL are killed with -9 (a
#               host lost): a replica takes over; then the old leader is
#               started again and must rejoin as a replica;
#   etcd        etcd is stopped for 10 s: the leader, unable to renew its
#               key, demotes itself; never two primaries at once.
#
# After each phase, through the protocol and in the books (`cardswitch
# chaos check`): every posting acknowledged to a client is in the ledger
# exactly once, no other posting is, every balance is its start plus what
# was acknowledged; then `cardswitch verify` is clean. Prints one JSON line
# per phase and per check, and `chaos: passed` at the end; exits 1 on the
# first failure.
#
#   deploy/ha/chaos.sh DIR [--seconds S] [--clients N] [--phases a,b,...] [--pgbouncer]
#
# Defaults: 30 s per phase (the fault at a third of it), 32 clients, all
# four phases. DIR is fresh, or one where only chaos.sh has run (a rerun
# checks the earlier runs' acknowledgements too).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${1:?usage: chaos.sh DIR [--seconds S] [--clients N] [--phases LIST]}"
shift
seconds=30 clients=32 phases=postmaster,daemon,node,etcd up_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        --phases) phases="$2"; shift 2 ;;
        --pgbouncer) up_args+=(--pgbouncer); shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
bin="${CARDSWITCH_BIN:-$repo/target/release/cardswitch}"
"$here/up.sh" "$dir" --daemons 2 "${up_args[@]}" >/dev/null
dir="$(cd "$dir" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck disable=SC1091
. "$dir/secrets.env"
app_urls
export CARDSWITCH_URL="http://127.0.0.1:$http_port"
cs() { CARDSWITCH_DATABASE_URL="$db_url" "$bin" --keys-dir "$dir/keys" "$@"; }
state="$dir/chaos"
[ -f "$state/state.json" ] || cs chaos setup --state "$state" --terminals 16 --cards 64

# How many nodes take writes right now (asked of PostgreSQL itself).
primaries_now() {
    local i n=0
    for i in 1 2 3; do
        [ "$(PGPASSWORD="$SUPERUSER_PASSWORD" PGCONNECT_TIMEOUT=1 psql -qAt -h 127.0.0.1 \
            -p "$(pg_port_of "$i")" -U postgres -d postgres \
            -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && n=$((n + 1))
    done
    echo "$n"
}

# Samples primaries_now every half second into $state/primaries-PHASE
# until the phase's load ends.
watch_primaries() {
    local out="$state/primaries-$1" load_pid="$2"
    : >"$out"
    while kill -0 "$load_pid" 2>/dev/null; do
        primaries_now >>"$out"
        sleep 0.5
    done
}

has_leader() { [ -n "$(leader_node)" ]; }
is_replica() { healthy "http://127.0.0.1:$(api_port_of "$1")/replica"; } # streaming from the leader

fault_postmaster() {
    local n
    n="$(leader_node)"
    say "chaos: kill -9 the postmaster of the leader pg$n"
    kill -9 "$(head -1 "$dir/pg$n/data/postmaster.pid")"
}

fault_daemon() {
    say "chaos: kill -9 daemon 1, start it again"
    kill -9 "$(cat "$dir/daemon1/pid")"
    sleep 2
    start_daemon 1
}

fault_node() {
    local n
    n="$(leader_node)"
    say "chaos: kill -9 Patroni and PostgreSQL of the leader pg$n"
    kill -9 "$(cat "$dir/pg$n/pid")" "$(head -1 "$dir/pg$n/data/postmaster.pid")"
    wait_for 60 has_leader || { echo "chaos: no new leader" >&2; return 1; }
    say "chaos: pg$(leader_node) leads; starting pg$n again"
    start_node "$n"
    wait_for 90 is_replica "$n" || { echo "chaos: pg$n did not rejoin as a replica" >&2; return 1; }
    say "chaos: pg$n rejoined as a replica"
}

fault_etcd() {
    say "chaos: etcd stopped for 10 s"
    kill -TERM "$(cat "$dir/etcd/pid")"
    sleep 10
    start_etcd
    wait_for 60 has_leader || { echo "chaos: no leader after etcd came back" >&2; return 1; }
}

# Phases number on from an earlier run's, so its logs stay and count.
k="$(find "$state" -maxdepth 1 -name 'acked-*.json' | wc -l)"
for fault in ${phases//,/ }; do
    declare -F "fault_$fault" >/dev/null || { echo "unknown phase $fault" >&2; exit 2; }
    # Each phase's orders are its own, even when a fault repeats.
    k=$((k + 1)) phase="$fault$k"
    wait_for 60 has_leader
    cs chaos load --state "$state" --phase "$phase" --clients "$clients" --seconds "$seconds" \
        >"$state/load-$phase.json" &
    load=$!
    watch_primaries "$phase" "$load" &
    watcher=$!
    sleep $((seconds / 3))
    "fault_$fault"
    wait "$load"
    wait "$watcher"
    cat "$state/load-$phase.json"
    most="$(sort -n "$state/primaries-$phase" | tail -1)"
    echo "{\"phase\":\"$phase\",\"most_primaries_at_once\":$most}"
    [ "$most" -le 1 ] || { echo "chaos: two primaries at once in $phase" >&2; exit 1; }
    wait_for 60 has_leader
    cs chaos check --state "$state"
    cs verify >"$state/verify-$phase.txt" || { cat "$state/verify-$phase.txt"; exit 1; }
    echo "{\"phase\":\"$phase\",\"verify\":\"clean\"}"
done
echo "chaos: passed"
