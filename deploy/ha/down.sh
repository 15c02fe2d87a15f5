#!/usr/bin/env bash
# Stops everything deploy/ha/up.sh DIR started (daemons, HAProxy, the
# Patroni nodes and their PostgreSQL, etcd) and checks that no process of
# it is left. The data stays in DIR.
set -uo pipefail
dir="$(cd "${1:?usage: down.sh DIR}" && pwd)"
stop_pid() { # pidfile: TERM, up to 30 s (Patroni stops its PostgreSQL), then KILL
    [ -f "$1" ] || return 0
    local pid
    pid="$(cat "$1")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}
for p in "$dir"/daemon*/pid; do stop_pid "$p"; done
stop_pid "$dir/haproxy.pid"
stop_pid "$dir/pgbouncer/pgbouncer.pid"
# Replicas first, the leader last, so no failover runs while stopping.
for p in "$dir"/pg3/pid "$dir"/pg2/pid "$dir"/pg1/pid; do stop_pid "$p"; done
stop_pid "$dir/etcd/pid"
# Anything still running from DIR (a postmaster whose Patroni was killed).
left="$(pgrep -f -- "$dir/" || true)"
if [ -n "$left" ]; then
    echo "ha: stopping what is left: $left" >&2
    kill -TERM $left 2>/dev/null || true
    sleep 2
    kill -KILL $left 2>/dev/null || true
fi
if pgrep -f -- "$dir/" >/dev/null; then
    echo "ha: processes of $dir are still running" >&2
    exit 1
fi
echo "ha: down" >&2
