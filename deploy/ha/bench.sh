#!/usr/bin/env bash
# Throughput of the HA topology (issue 13, item 6): debits/s through one
# daemon (its own port) and through the proxy to both, with the replicas'
# replay lag sampled on the leader every half second during each run.
#
#   deploy/ha/bench.sh DIR [--seconds S] [--clients N] [--pgbouncer]
#
# Brings the topology up in DIR if it is not (two daemons). Prints the
# bench's summary per run and one line of figures each:
#   daemons=1 debits_per_s=… p99_ms=… lag_max_ms=… lag_p50_ms=…
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${1:?usage: bench.sh DIR [--seconds S] [--clients N] [--pgbouncer]}"
shift
seconds=20 clients=32 up_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        --pgbouncer) up_args+=(--pgbouncer); shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
bin="${CARDSWITCH_BIN:-$repo/target/release/cardswitch}"
# The load comes from one address; the throttles would measure themselves.
if [ -f "$dir/daemon.toml" ] && ! grep -q terminal_rate "$dir/daemon.toml"; then
    echo "bench.sh: $dir runs daemons with the throttles on; use a fresh DIR" >&2
    exit 2
fi
"$here/up.sh" "$dir" --daemons 2 --open-throttles "${up_args[@]}" >/dev/null
dir="$(cd "$dir" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck disable=SC1091
. "$dir/secrets.env"
app_urls

# The largest replay lag of any standby, in ms, as the leader sees it.
lag_ms() {
    local n
    n="$(leader_node)"
    [ -n "$n" ] || { echo -1; return; }
    PGPASSWORD="$SUPERUSER_PASSWORD" psql -qAt -h 127.0.0.1 -p "$(pg_port_of "$n")" -U postgres -d postgres \
        -c "SELECT coalesce(round(max(extract(epoch FROM replay_lag)) * 1000), 0) FROM pg_stat_replication" 2>/dev/null || echo -1
}

run() { # label url
    local out="$dir/bench-$1.json" lags="$dir/bench-$1.lag"
    : >"$lags"
    CARDSWITCH_DATABASE_URL="$db_url" "$bin" --keys-dir "$dir/keys" --data-dir "$dir/bench-work" bench \
        --url "$2" --no-pgbench --duration "$seconds" --terminals "$clients" --clients "$clients" \
        --cards 2000 --mix debit --json-out "$out" >"$dir/bench-$1.txt" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do lag_ms >>"$lags"; sleep 0.5; done
    wait "$pid"
    python3 - "$1" "$out" "$lags" <<'PY'
import json, sys
label, out, lags = sys.argv[1:]
r = json.load(open(out))
run = r["runs"][0]
lag = sorted(int(float(x)) for x in open(lags).read().split() if float(x) >= 0) or [0]
lat = run["latency_ms"]
print(f"daemons={label} debits_per_s={run['tps']:.0f} p50_ms={lat['p50']:.1f} "
      f"p99_ms={lat['p99']:.1f} errors={sum(run['errors'].values())} "
      f"lag_max_ms={lag[-1]} lag_p50_ms={lag[len(lag) // 2]}")
PY
}

run 1 "http://127.0.0.1:$(daemon_port_of 1)"
run 2 "http://127.0.0.1:$http_port"
