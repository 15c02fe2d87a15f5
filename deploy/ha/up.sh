#!/usr/bin/env bash
# The HA topology on one machine (issue 13): etcd, three PostgreSQL nodes
# under Patroni (synchronous_mode), HAProxy (a write port to the leader, a
# read port to the replicas, an HTTP front end to the daemons) and N
# cardswitch daemons, all on 127.0.0.1 under DIR. Prints KEY=VALUE lines to
# source. `deploy/ha/down.sh DIR` stops it all.
#
#   deploy/ha/up.sh DIR [--daemons N]      (ports from HA_PORT_BASE, 15400)
#
# Run as root, PostgreSQL and Patroni run as the `postgres` user. The same
# templates (deploy/ha/templates/) are what ops copy to real hosts:
# deploy/ha/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${1:?usage: up.sh DIR [--daemons N] [--pgbouncer] [--open-throttles]}"
shift
daemons=2 pgbouncer=no open_throttles=no
while [ $# -gt 0 ]; do
    case "$1" in
        --daemons) daemons="$2"; shift 2 ;;
        --pgbouncer) pgbouncer=yes; shift ;;
        # Benchmarks only: every load client is 127.0.0.1, one address.
        --open-throttles) open_throttles=yes; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
# shellcheck source=lib.sh
. "$here/lib.sh"

need=()
for p in patroni:patroni etcd:etcd-server haproxy:haproxy pgbouncer:pgbouncer curl:curl; do
    command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" python3-psycopg2 >&2
fi
bin="${CARDSWITCH_BIN:-$repo/target/release/cardswitch}"
[ -x "$bin" ] || (cd "$repo" && cargo build --release --locked >&2)

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
chmod 755 "$dir"
secret() { head -c 18 /dev/urandom | base64 | tr -d '/+='; }
if [ ! -f "$dir/secrets.env" ]; then
    umask 077
    {
        echo "SUPERUSER_PASSWORD=$(secret)"
        echo "REPLICATION_PASSWORD=$(secret)"
        echo "APP_PASSWORD=$(secret)"
    } >"$dir/secrets.env"
    umask 022
fi
# shellcheck disable=SC1091
. "$dir/secrets.env"

# --- etcd (one member here; three on real hosts) ---
if curl -sf "http://127.0.0.1:$etcd_client/health" >/dev/null 2>&1; then
    # Up already: ours, or another DIR's on the same ports?
    [ -f "$dir/etcd/pid" ] && kill -0 "$(cat "$dir/etcd/pid")" 2>/dev/null || {
        echo "ha: port $etcd_client is taken by another topology (down.sh its DIR, or set HA_PORT_BASE)" >&2
        exit 1
    }
else
    say "starting etcd"
    start_etcd
fi

# --- three PostgreSQL nodes under Patroni, one WAL archive ---
mkdir -p "$dir/backup/wal"
chmod 700 "$dir/backup" "$dir/backup/wal"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir/backup"
apis=()
for i in 1 2 3; do
    name="pg$i" pg_port="$(pg_port_of "$i")" api_port="$(api_port_of "$i")"
    apis+=("http://127.0.0.1:$api_port")
    node="$dir/$name"
    mkdir -p "$node"
    sed -e "s|@NAME@|$name|g" -e "s|@DIR@|$dir|g" -e "s|@PG_PORT@|$pg_port|g" \
        -e "s|@API_PORT@|$api_port|g" -e "s|@ETCD@|127.0.0.1:$etcd_client|g" \
        -e "s|@SUPERUSER_PASSWORD@|$SUPERUSER_PASSWORD|g" \
        -e "s|@REPLICATION_PASSWORD@|$REPLICATION_PASSWORD|g" -e "s|@ARCHIVE@|$dir/backup/wal|g" \
        "$here/templates/patroni.yml" >"$node/patroni.yml"
    chmod 600 "$node/patroni.yml"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$node"
    if ! curl -s -o /dev/null "http://127.0.0.1:$api_port/health"; then
        say "starting Patroni node $name (PostgreSQL on $pg_port)"
        start_node "$i"
        # The first node bootstraps the cluster; the others clone it.
        if [ "$i" = 1 ]; then
            wait_for 60 healthy "http://127.0.0.1:$api_port/primary" || true
        fi
    fi
done

say "waiting for a leader and a synchronous standby"
for _ in $(seq 600); do
    roles="$(curl -s "${apis[0]}/cluster" | python3 -c 'import json,sys; print(" ".join(sorted(m["role"] for m in json.load(sys.stdin)["members"])))' 2>/dev/null || true)"
    case "$roles" in *leader*sync_standby*|*sync_standby*leader*) break ;; esac
    sleep 0.2
done
case "$roles" in *sync_standby*) ;; *) echo "no synchronous standby: $roles" >&2; exit 1 ;; esac

# --- HAProxy ---
servers() { # check_port_offset
    for i in 1 2 3; do
        echo "    server pg$i 127.0.0.1:$((base + 40 + i)) check port $((base + 7 + i))"
    done
}
daemon_servers() {
    for i in $(seq "$daemons"); do
        echo "    server d$i 127.0.0.1:$((base + 90 + i)) check"
    done
}
python3 - "$here/templates/haproxy.cfg" "$dir/haproxy.cfg" <<PY
import sys
t = open(sys.argv[1]).read()
for k, v in {"@WRITE_PORT@": "$write_port", "@READ_PORT@": "$read_port",
             "@HTTP_PORT@": "$http_port", "@WRITE_SERVERS@": """$(servers)""",
             "@READ_SERVERS@": """$(servers)""", "@DAEMON_SERVERS@": """$(daemon_servers)"""}.items():
    t = t.replace(k, v)
open(sys.argv[2], "w").write(t)
PY
[ -f "$dir/haproxy.pid" ] && kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true
haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"

# --- the application's role and database, through the write port ---
export PGPASSWORD="$SUPERUSER_PASSWORD"
psqlw() { psql -qAt -h 127.0.0.1 -p "$write_port" -U postgres "$@"; }
# HAProxy counts a server up until its checks say otherwise: wait until
# six connections in a row (twice round the three nodes) land on the leader.
in_a_row=0
for _ in $(seq 300); do
    if [ "$(psqlw -d postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; then
        in_a_row=$((in_a_row + 1))
        [ "$in_a_row" -ge 6 ] && break
    else
        in_a_row=0
        sleep 0.2
    fi
done
if [ "$(psqlw -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = 'cardswitch'")" != 1 ]; then
    psqlw -d postgres -c "CREATE ROLE cardswitch LOGIN PASSWORD '$APP_PASSWORD'"
fi
if [ "$(psqlw -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'cardswitch'")" != 1 ]; then
    psqlw -d postgres -c "CREATE DATABASE cardswitch OWNER cardswitch"
fi
unset PGPASSWORD
app_urls

# --- pgbouncer (session mode) between the daemons and the write port ---
if [ "$pgbouncer" = yes ]; then
    mkdir -p "$dir/pgbouncer"
    sed -e "s|@WRITE_PORT@|$write_port|g" -e "s|@PGBOUNCER_PORT@|$pgbouncer_port|g" -e "s|@DIR@|$dir|g" \
        "$here/templates/pgbouncer.ini" >"$dir/pgbouncer/pgbouncer.ini"
    (umask 077 && echo "\"cardswitch\" \"$APP_PASSWORD\"" >"$dir/pgbouncer/userlist.txt")
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir/pgbouncer"
    if [ ! -f "$dir/pgbouncer/pgbouncer.pid" ] || ! kill -0 "$(cat "$dir/pgbouncer/pgbouncer.pid")" 2>/dev/null; then
        say "starting pgbouncer on $pgbouncer_port (session mode)"
        if [ "$(id -u)" = 0 ]; then
            runuser -u postgres -- pgbouncer -d "$dir/pgbouncer/pgbouncer.ini"
        else
            pgbouncer -d "$dir/pgbouncer/pgbouncer.ini"
        fi
        sleep 0.5
    fi
    app_urls
fi

# --- keys (an explicit step, once) and the daemons ---
# The daemons' settings: HAProxy (here, 127.0.0.1) forwards each till's
# address in X-Forwarded-For.
{
    echo "[server]"
    echo 'trusted_proxies = ["127.0.0.1"]'
    if [ "$open_throttles" = yes ]; then
        echo "[protocol]"
        echo "addr_rate = 1000000"
        echo "addr_burst = 1000000"
        echo "terminal_rate = 1000000"
        echo "terminal_burst = 1000000"
    fi
} >"$dir/daemon.toml"
keys="$dir/keys"
if [ ! -f "$keys/master.key" ]; then
    say "cardswitch keys init (into $keys)"
    CARDSWITCH_DATABASE_URL="$db_url" "$bin" --keys-dir "$keys" keys init >&2
fi
for i in $(seq "$daemons"); do
    if ! curl -sf "http://127.0.0.1:$(daemon_port_of "$i")/healthz" >/dev/null 2>&1; then
        say "starting daemon $i on $(daemon_port_of "$i")"
        start_daemon "$i"
    fi
done
wait_for 20 healthy "http://127.0.0.1:$http_port/healthz" || { echo "the proxy has no healthy daemon" >&2; exit 1; }
say "up: leader and synchronous standby, $daemons daemons behind http://127.0.0.1:$http_port"
echo "CARDSWITCH_URL=http://127.0.0.1:$http_port"
echo "DATABASE_URL='$db_url'"
if [ "$pgbouncer" = yes ]; then echo "PGBOUNCER_PORT=$pgbouncer_port"; fi
echo "READ_DATABASE_URL='$read_url'"
echo "KEYS_DIR=$keys"
echo "PATRONI_API=$(IFS=,; echo "${apis[*]}")"
# Base backups (`cardswitch db backup "$BACKUP_DIR" --database-url "$REPLICATION_URL"`)
# go beside the archived WAL.
echo "BACKUP_DIR=$dir/backup"
echo "REPLICATION_URL='host=127.0.0.1 port=$write_port user=replicator password=$REPLICATION_PASSWORD dbname=postgres'"
