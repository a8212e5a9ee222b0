#!/usr/bin/env bash
# Installs (when missing) and starts a private PostgreSQL and Redis for the test suite.
# Writes .test-services/env with EPR_TEST_DATABASE_URL and EPR_TEST_REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="$PWD/.test-services"
PG_PORT="${EPR_TEST_PG_PORT:-55432}"
REDIS_PORT="${EPR_TEST_REDIS_PORT:-56379}"
PG_DIR="/tmp/epr-gateway-test-pg-$PG_PORT"

install_missing() {
    local missing=()
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    # The patient's page is tested in a real headless Chromium (Debian's, driven by its chromedriver).
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    # The technical user's SAML signature is verified by an independent XML-DSig implementation (libxmlsec1).
    command -v xmlsec1 >/dev/null 2>&1 || missing+=(xmlsec1)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} (apt-get)"
        if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
        mkdir -p "$PG_DIR"
        [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
        as_postgres "$bindir/initdb" -D "$PG_DIR/data" -U epr --auth=trust -E UTF8 >/dev/null
    fi
    if ! as_postgres "$bindir/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
        as_postgres "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
            -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200" start >/dev/null
    fi
    as_postgres "$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U epr -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='epr_test'" | grep -q 1 \
        || as_postgres "$bindir/createdb" -h 127.0.0.1 -p "$PG_PORT" -U epr epr_test
}

start_redis() {
    if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
            --dir "$STATE" --logfile "$STATE/redis.log" >/dev/null
        for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    fi
}

# axe-core (accessibility rules), injected into each portal page by the browser tests; pinned.
AXE_VERSION="4.14.1"
install_axe() {
    local target="$PWD/.browser-tools"
    if [ ! -f "$target/node_modules/axe-core/axe.min.js" ] || \
       ! grep -q "\"version\": \"$AXE_VERSION\"" "$target/node_modules/axe-core/package.json"; then
        echo "installing axe-core $AXE_VERSION (npm)"
        mkdir -p "$target"
        npm install --prefix "$target" --no-audit --no-fund --save-exact --silent "axe-core@$AXE_VERSION" >/dev/null
    fi
}

stop_all() {
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bindir" ] && [ -d "$PG_DIR/data" ] && as_postgres "$bindir/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    command -v redis-cli >/dev/null && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

case "${1:-start}" in
    start)
        mkdir -p "$STATE"
        install_missing
        install_axe
        start_postgres
        start_redis
        cat > "$STATE/env" <<ENV
export EPR_TEST_DATABASE_URL="postgresql+psycopg://epr@127.0.0.1:$PG_PORT/epr_test"
export EPR_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export EPR_TEST_AXE="$PWD/.browser-tools/node_modules/axe-core/axe.min.js"
ENV
        echo "test services: PostgreSQL :$PG_PORT, Redis :$REDIS_PORT"
        ;;
    stop) stop_all ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
