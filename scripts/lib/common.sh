# Shared by the scripts: the project root, and installing what is missing from Debian's packages.

HALLMARK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# ensure_packages PKG...: installs the Debian packages that are not installed yet.
ensure_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The system packages the build uses: SQLite, libcrypto (RSA-OAEP for TPM credentials) and the
# tpm2-tss libraries the agent's TPM attestor links, and libxmlsec1 for NVIDIA RIM signatures.
HALLMARK_PACKAGES=(openssl libsqlite3-dev sqlite3 libssl-dev libtss2-dev libxmlsec1-dev)
# And what the tests add: a software TPM and tpm2-tools, the tests' own hand on it, and cfssl,
# the peer the benchmark (and its smoke run) signs against; jq, to read audit exports as an outside party would.
HALLMARK_TEST_PACKAGES=(swtpm swtpm-tools tpm2-tools xmlsec1 golang-cfssl jq postgresql)

# start_test_postgres: a throwaway PostgreSQL cluster for the tests that need the real server
# (Tests/HallmarkTestSupport/TestPostgres.swift): initdb in a temporary directory as an
# unprivileged user, a Unix socket in that directory only, no system service. Exports
# HALLMARK_TEST_PG_HOST and HALLMARK_TEST_PG_USER; stop_test_postgres stops it and removes it.
start_test_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$bin" ] || { echo "PostgreSQL is not installed" >&2; return 1; }
    HALLMARK_PG_BIN=$bin
    HALLMARK_PG_DIR=$(mktemp -d /tmp/hallmark-pg-XXXXXX)
    HALLMARK_PG_AS=()
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses root.
        chown nobody: "$HALLMARK_PG_DIR"
        HALLMARK_PG_AS=(runuser -u nobody --)
    fi
    "${HALLMARK_PG_AS[@]}" "$bin/initdb" -D "$HALLMARK_PG_DIR/data" -U hallmark -A trust -E UTF8 --no-sync --no-instructions \
        > "$HALLMARK_PG_DIR/setup.log" 2>&1 </dev/null \
        && "${HALLMARK_PG_AS[@]}" "$bin/pg_ctl" -D "$HALLMARK_PG_DIR/data" -l "$HALLMARK_PG_DIR/server.log" -w -t 60 \
            -o "-k $HALLMARK_PG_DIR -c listen_addresses='' -F" start >> "$HALLMARK_PG_DIR/setup.log" 2>&1 </dev/null \
        || { cat "$HALLMARK_PG_DIR/setup.log" >&2; return 1; }
    export HALLMARK_TEST_PG_HOST=$HALLMARK_PG_DIR HALLMARK_TEST_PG_USER=hallmark
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on $HALLMARK_PG_DIR"
}

stop_test_postgres() {
    [ -n "${HALLMARK_PG_DIR:-}" ] || return 0
    "${HALLMARK_PG_AS[@]}" "$HALLMARK_PG_BIN/pg_ctl" -D "$HALLMARK_PG_DIR/data" -m immediate stop >/dev/null 2>&1 </dev/null
    rm -rf "$HALLMARK_PG_DIR"
    HALLMARK_PG_DIR=
}
