#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the store tests and print where it is.
#
#   eval "$(bash .ci/postgres.sh)"          # sets MUSICRL_TEST_POSTGRES_URL (+ _DIR for stopping)
#   bash .ci/postgres.sh stop "$MUSICRL_TEST_POSTGRES_DIR"
#
# Installs Debian's postgresql (--no-install-recommends) when initdb/pg_ctl are missing, creates a
# cluster in a fresh temp dir owned by the `postgres` user (initdb refuses to run as root), listens
# on 127.0.0.1 only, on the first free port from $MUSICRL_PG_PORT (default 55432), with a random
# password for a dedicated user and database. Durability settings are off: the data is thrown away.
# Only the `export` lines go to stdout; everything else goes to stderr.
set -euo pipefail
exec 3>&1 1>&2  # fd 3 = the caller's stdout (for the exports); our own chatter goes to stderr

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return 0; fi
    done
    return 1
}

as_pg() {  # run a command as the cluster owner (root cannot own a cluster)
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [[ ${1:-} == stop ]]; then
    dir=${2:?usage: postgres.sh stop DATA_DIR}
    bindir=$(find_bindir) || { log "no PostgreSQL binaries found"; exit 1; }
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop 3>&- || true
    rm -rf "$dir"
    exit 0
fi

if ! bindir=$(find_bindir); then
    log "installing Debian postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bindir=$(find_bindir) || { log "postgresql installed but initdb/pg_ctl not found"; exit 1; }
fi
log "using $bindir"

if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi

port_in_use() { (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${MUSICRL_PG_PORT:-55432}
for _ in $(seq 1 200); do
    port_in_use "$port" || break
    port=$((port + 1))
done
if port_in_use "$port"; then log "no free port found"; exit 1; fi

base=$(mktemp -d "${TMPDIR:-/tmp}/musicrl-pg.XXXXXX")
chmod 755 "$base"
if [[ $(id -u) -eq 0 ]]; then chown postgres: "$base"; fi
password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
user=musicrl
db=musicrl_test

as_pg "$bindir/initdb" -D "$base/data" -U postgres \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$bindir/pg_ctl" -D "$base/data" -l "$base/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $base -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start </dev/null >/dev/null 3>&- || { cat "$base/server.log" >&2; exit 1; }

for _ in $(seq 1 60); do
    as_pg "$bindir/pg_isready" -q -h "$base" -p "$port" && break
    sleep 0.5
done
as_pg "$bindir/pg_isready" -h "$base" -p "$port" >&2

as_pg "$bindir/psql" -q -h "$base" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE $user LOGIN PASSWORD '$password' CREATEDB;
CREATE DATABASE $db OWNER $user;
SQL
log "server up on 127.0.0.1:$port (data in $base; stop with: bash .ci/postgres.sh stop $base)"

echo "export MUSICRL_TEST_POSTGRES_URL=postgresql+psycopg://$user:$password@127.0.0.1:$port/$db" >&3
echo "export MUSICRL_TEST_POSTGRES_DIR=$base" >&3
