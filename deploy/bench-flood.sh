#!/usr/bin/env bash
# Issue 12's junk flood as a benchmark: the debit run at a fixed rate, once
# quiet and once beside a flood of `junk=1` POSTs to /v1/txn from 150
# connections at 150 requests/s in all (from 127.0.0.2), with /healthz probed
# ten times a second. Prints both runs' debit latency, what the junk got, how
# health fared, and last `p99_ratio=` (flood over quiet; the target is ≤ 2).
# Each run is `deploy/bench.sh` (fresh data dir, release build). Extra
# arguments go to both runs (e.g. --duration 30 --rate 300).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d /tmp/csflood.XXXXXX)"
trap 'rm -rf "$out"' EXIT
common=(--mix debit --no-pgbench --clients 16 --terminals 16 --cards 10000
        --rate 200 --duration 20)
echo "bench-flood: quiet run" >&2
bash deploy/bench.sh "${common[@]}" "$@" --json-out "$out/quiet.json" >/dev/null
echo "bench-flood: run beside the junk flood" >&2
bash deploy/bench.sh "${common[@]}" "$@" --junk-flood 150 --junk-rate 150 \
    --json-out "$out/flood.json" >/dev/null
python3 - "$out/quiet.json" "$out/flood.json" <<'PY'
import json, sys
quiet, flood = (json.load(open(p)) for p in sys.argv[1:3])
def run(r):
    d = r["runs"][0]
    return d["tps"], d["latency_ms"], sum(d["errors"].values())
for name, r in (("quiet", quiet), ("flood", flood)):
    tps, lat, errors = run(r)
    print(f"{name}: debit {tps:.0f} txn/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
          f"max {lat['max']:.2f} ms, errors {errors}")
f = flood["flood"]
print(f"junk: {f['sent']} sent from {f['connections']} connections, answers {f['statuses']}")
h = f["healthz_ms"]
print(f"healthz: {f['healthz_checks']} checks, {f['healthz_not_200']} not 200, "
      f"p99 {h['p99']:.2f} ms, max {h['max']:.2f} ms")
print(f"p99_ratio={run(flood)[1]['p99'] / run(quiet)[1]['p99']:.2f}")
PY
