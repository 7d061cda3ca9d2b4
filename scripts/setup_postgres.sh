#!/usr/bin/env bash
# Installs (when missing) and starts a private PostgreSQL server for the tests,
# idempotently, and writes its URL to $VENV/postgres.url. The server keeps its data
# in $VENV/pgdata and listens on 127.0.0.1 only, on $PGPORT or, when something else
# (another checkout's server, say) holds that port, the next free one.
#
#   sudo VENV=.venv scripts/setup_postgres.sh
#
# Root is needed for the package and to run the server as the postgres user (the
# server refuses to run as root). CI starts from zero: this does everything there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PGPORT=${PGPORT:-54329}
DATA="$PWD/$VENV/pgdata"
URL_FILE="$VENV/postgres.url"
say() { echo "setup_postgres: $*"; }
die() { echo "setup_postgres: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (the package, and the postgres user); try: sudo $0"
mkdir -p "$VENV"

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
    say "installing postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg() { su postgres -s /bin/sh -c "$*"; }

if [ ! -f "$DATA/PG_VERSION" ]; then
    say "creating a cluster in $DATA"
    mkdir -p "$DATA"
    chown postgres:postgres "$DATA"
    chmod 700 "$DATA"
    as_pg "$bindir/initdb -D '$DATA' -U postgres --auth=trust -E UTF8 >/dev/null"
fi
# the postgres user must reach the data directory through the repository's path
d="$DATA"
while [ "$d" != "/" ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if as_pg "$bindir/pg_ctl -D '$DATA' status" >/dev/null 2>&1; then
    PGPORT=$(sed -n 4p "$DATA/postmaster.pid")
    say "already running on port $PGPORT"
else
    while port_in_use "$PGPORT"; do PGPORT=$((PGPORT + 1)); done
    say "starting on 127.0.0.1:$PGPORT"
    as_pg "$bindir/pg_ctl -D '$DATA' -l '$DATA/server.log' -w -t 60 \
        -o \"-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='$DATA' -c max_connections=200 -c fsync=on\" start" >/dev/null
fi
for _ in $(seq 1 60); do
    if as_pg "$bindir/pg_isready -h 127.0.0.1 -p $PGPORT" >/dev/null 2>&1; then
        echo "postgresql://postgres@127.0.0.1:$PGPORT/postgres" > "$URL_FILE"
        say "ready: $(cat "$URL_FILE")"
        exit 0
    fi
    sleep 0.5
done
die "the server did not answer on port $PGPORT (see $DATA/server.log)"
