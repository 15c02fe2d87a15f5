# Shared by up.sh and chaos.sh: ports, and how each process of the topology
# is started (so a fault script restarts it exactly as up.sh did). Expects
# $dir (absolute) and $bin; sources nothing itself.
base="${HA_PORT_BASE:-15400}"
etcd_client=$((base + 79)) etcd_peer=$((base + 78))
write_port=$((base + 30)) read_port=$((base + 31)) http_port=$((base + 90))
pgbouncer_port=$((base + 32))
pg_port_of() { echo $((base + 40 + $1)); }
api_port_of() { echo $((base + 7 + $1)); }
daemon_port_of() { echo $((base + 90 + $1)); }
say() { echo "ha: $*" >&2; }

wait_for() { # seconds, then a command that must come true (tried 5 times a second)
    local t="$1"
    shift
    for _ in $(seq $((t * 5))); do "$@" && return 0; sleep 0.2; done
    return 1
}
healthy() { curl -sf "$1" >/dev/null 2>&1; } # URL answers 2xx

start_etcd() {
    mkdir -p "$dir/etcd"
    nohup etcd --name cs-etcd --data-dir "$dir/etcd/data" \
        --listen-client-urls "http://127.0.0.1:$etcd_client" \
        --advertise-client-urls "http://127.0.0.1:$etcd_client" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "cs-etcd=http://127.0.0.1:$etcd_peer" \
        >>"$dir/etcd/etcd.log" 2>&1 &
    echo $! >"$dir/etcd/pid"
    wait_for 10 healthy "http://127.0.0.1:$etcd_client/health" && return 0
    say "etcd did not come up"
    return 1
}

# Patroni for node N (its patroni.yml written by up.sh), as `postgres`
# when run as root; records Patroni's own pid (not runuser's).
start_node() {
    local node="$dir/pg$1"
    if [ "$(id -u)" = 0 ]; then
        nohup runuser -u postgres -- patroni "$node/patroni.yml" >>"$node/patroni.log" 2>&1 &
    else
        nohup patroni "$node/patroni.yml" >>"$node/patroni.log" 2>&1 &
    fi
    local p
    for _ in $(seq 50); do
        # runuser's command line names the file too: skip it, or a kill
        # of the "Patroni" pid would leave Patroni running.
        for p in $(pgrep -f "patroni $node/patroni.yml"); do
            [ "$(cat "/proc/$p/comm" 2>/dev/null)" = runuser ] || { echo "$p" >"$node/pid"; return 0; }
        done
        sleep 0.1
    done
    say "Patroni of pg$1 did not start"
    return 1
}

# Daemon N on its port, the database URLs in its environment (never on a
# command line, where `ps` shows it to every user); waits for /healthz.
start_daemon() {
    local port d
    port="$(daemon_port_of "$1")" d="$dir/daemon$1"
    mkdir -p "$d"
    # Through pgbouncer when up.sh --pgbouncer set daemon_url.
    CARDSWITCH_DATABASE_URL="$daemon_url" CARDSWITCH_READ_DATABASE_URL="$read_url" \
        nohup "$bin" --config "$dir/daemon.toml" --keys-dir "$dir/keys" serve \
        --listen "127.0.0.1:$port" >>"$d/daemon.log" 2>&1 &
    echo $! >"$d/pid"
    wait_for 60 healthy "http://127.0.0.1:$port/healthz" && return 0
    say "daemon $1 is not healthy"
    return 1
}

# The node (1–3) whose PostgreSQL is the leader, per Patroni; empty if none.
leader_node() {
    local i
    for i in 1 2 3; do
        if healthy "http://127.0.0.1:$(api_port_of "$i")/primary"; then
            echo "$i"
            return 0
        fi
    done
}

# The application's URLs (libpq key=value form), from secrets.env's
# APP_PASSWORD: db_url through the write port, read_url through the read port.
# daemon_url: through pgbouncer when DIR has one (up.sh --pgbouncer).
app_urls() {
    local as="user=cardswitch password=$APP_PASSWORD dbname=cardswitch"
    db_url="host=127.0.0.1 port=$write_port $as"
    read_url="host=127.0.0.1 port=$read_port $as"
    daemon_url="$db_url"
    if [ -f "$dir/pgbouncer/pgbouncer.ini" ]; then
        daemon_url="host=127.0.0.1 port=$pgbouncer_port $as"
    fi
}
