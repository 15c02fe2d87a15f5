#!/usr/bin/env bash
# The back office's figures (README, Performance): member import of ROWS rows
# (default 100,000) in rows/s; `settlement` of a business day holding
# POSTINGS postings (default 1,000,000), through the protocol and as its SQL's
# plan; `find` by phone among the imported members, through the protocol and
# as an index look-up. A throw-away embedded cluster (fsync on) and keys dir;
# BENCH_KEEP=1 keeps them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/ensure-deps.sh
cargo build --release --locked >&2
bin="$(pwd)/${CARGO_TARGET_DIR:-target}/release/cardswitch"
ROWS="${ROWS:-100000}"
POSTINGS="${POSTINGS:-1000000}"
work="$(mktemp -d /tmp/csoff.XXXXXX)"
chmod 755 "$work"
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    "$bin" --data-dir "$work" db stop >/dev/null 2>&1 || true
    if [ "${BENCH_KEEP:-}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
export CARDSWITCH_DATA_DIR="$work" CARDSWITCH_KEYS_DIR="$work/keys"
unset CARDSWITCH_DATABASE_URL CARDSWITCH_CONFIG
"$bin" keys init >&2
"$bin" db start >&2
"$bin" store add S1 --name "Bench one" >&2
"$bin" store add S2 --name "Bench two" >&2
"$bin" level add std --discount 1 --points-rate 1 >&2
psql=(psql -X -q -A -t -h "$work/pg/run" -p 5432 -U cardswitch -d cardswitch -v ON_ERROR_STOP=1)
now_s() { date +%s.%N; }

# 1. Import: ROWS members, one CSV as Excel saves it (UTF-8 with a BOM).
python3 - "$ROWS" > "$work/members.csv" <<'EOF'
import sys
n = int(sys.argv[1])
out = sys.stdout
out.write("\ufeffcard,name,phone,level,balance,points,pin,birthday\r\n")
for i in range(n):
    out.write(f"M{i:09d},Member {i},139{i:08d},std,{(i % 5000) / 10:.2f},{i % 300},,\r\n")
EOF
t0=$(now_s)
"$bin" import members "$work/members.csv" --store S1 --json > "$work/import.json"
t1=$(now_s)
cat "$work/import.json" >&2
import_s=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
import_rate=$(python3 -c "print(round($ROWS / ($t1 - $t0)))")

# 2. A business day of POSTINGS postings at 64 terminals of two stores
# (written by SQL: settlement reads no MAC, and this is its volume, not a
# ledger run).
day=$(date -u +%F)
"${psql[@]}" <<EOF
INSERT INTO terminals (terminal_id, store_id, status)
SELECT 'B' || i, CASE WHEN i % 2 = 0 THEN 'S1' ELSE 'S2' END, 'disabled'
  FROM generate_series(1, 64) i;
INSERT INTO postings (txn_id, card_no, terminal_id, order_no, op, balance_delta, points_delta,
       balance, points, amount, discount, charged, business_day, posted_at, detail)
SELECT 100000000 + i, 'M' || lpad((i % $ROWS)::text, 9, '0'), 'B' || (i % 64 + 1), 'b' || i,
       CASE WHEN i % 4 = 0 THEN 'topup' ELSE 'debit' END,
       CASE WHEN i % 4 = 0 THEN 20.00 WHEN i % 3 = 0 THEN 0 ELSE -5.00 END,
       CASE WHEN i % 4 = 0 THEN 0 ELSE 5 END, 100.00, 10,
       CASE WHEN i % 4 = 0 THEN 20.00 ELSE 5.00 END, 0,
       CASE WHEN i % 4 = 0 THEN 20.00 ELSE 5.00 END, '$day',
       '$day'::timestamptz + i * interval '40 ms',
       CASE WHEN i % 4 <> 0 AND i % 3 = 0 THEN '{"tender": "cash", "cash": "5.00"}'::jsonb
            ELSE '{"tender": "balance"}'::jsonb END
  FROM generate_series(1, $POSTINGS) i;
VACUUM ANALYZE postings;
EOF
day_rows=$("${psql[@]}" -c "SELECT count(*) FROM postings WHERE business_day = '$day'")

# 3. A head office through the protocol: settlement and find, each timed
# over 5 runs after one that logs in (the session is cached for the day).
"$bin" terminal add HQ --kind office --all-stores --json > "$work/hq.json"
python3 -c "import json,sys; print(json.load(open('$work/hq.json'))['password'])" > "$work/hq.pw"
"$bin" keys root-public > "$work/root.pem"
"$bin" serve --listen 127.0.0.1:18631 > "$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:18631/healthz >/dev/null && break; sleep 0.1; done
client() {
    "$bin" client --url http://127.0.0.1:18631 --terminal HQ --password-file "$work/hq.pw" \
        --root-public "$work/root.pem" "$@"
}
best_ms() { # best of 5 runs of "$@", in ms; the first (login) run is not counted
    "$@" > "$work/last.out"
    local best=999999
    for _ in 1 2 3 4 5; do
        local a b
        a=$(now_s); "$@" > "$work/last.out"; b=$(now_s)
        best=$(python3 -c "print(min($best, round(($b - $a) * 1000)))")
    done
    echo "$best"
}
settle_ms=$(best_ms client settlement --attr1 "$day" --json)
settle_rows=$(python3 -c "import json; print(len(json.load(open('$work/last.out'))['rows']))")
by_ms=$(best_ms client settlement --attr1 "$day" --attr2 "by=terminal" --json)
find_ms=$(best_ms client find --attr1 13900012345 --json)
find_rows=$(python3 -c "import json; print(len(json.load(open('$work/last.out'))['rows']))")
noop_ms=$(best_ms client liability --attr1 S9 --json)

# 4. The plans: the settlement's SQL and a phone look-up, as PostgreSQL runs them.
echo "--- settlement plan" >&2
"${psql[@]}" -c "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, SUMMARY ON)
  SELECT t.store_id, g.op, g.tender, sum(g.n), sum(g.amount), sum(g.cash), sum(g.bd)
    FROM (SELECT terminal_id, op, coalesce(detail->>'tender', 'none') AS tender, count(*) AS n,
                 sum(amount) AS amount, sum(discount), sum(charged),
                 coalesce(sum((detail->>'cash')::numeric), 0) AS cash, sum(balance_delta) AS bd,
                 sum(points_delta)
            FROM postings
           WHERE business_day = '$day' AND posted_at >= '$day'::date - 1
             AND posted_at < '$day'::date + 2
           GROUP BY 1, 2, 3) g
    JOIN terminals t ON t.terminal_id = g.terminal_id
   GROUP BY 1, 2, 3" > "$work/settle.plan"
cat "$work/settle.plan" >&2
settle_sql_ms=$(sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p' "$work/settle.plan")
echo "--- find plan" >&2
"${psql[@]}" -c "EXPLAIN (ANALYZE, BUFFERS) SELECT m.member_id, c.card_no FROM members m
   JOIN cards c ON c.member_id = m.member_id WHERE m.phone = '13900012345'" > "$work/find.plan"
cat "$work/find.plan" >&2
find_index=$(grep -c 'members_phone' "$work/find.plan" || true)

cat <<EOF
import_rows=$ROWS
import_seconds=$import_s
import_rows_per_s=$import_rate
settlement_day_postings=$day_rows
settlement_rows=$settle_rows
settlement_ms=$settle_ms
settlement_by_terminal_ms=$by_ms
settlement_sql_ms=$settle_sql_ms
find_rows=$find_rows
find_ms=$find_ms
find_uses_members_phone_index=$find_index
office_round_trip_ms=$noop_ms
EOF
