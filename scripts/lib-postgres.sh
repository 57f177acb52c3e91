# shellcheck shell=bash disable=SC2034  # LATCHKEY_PG_SOURCE is read by scripts/test.sh
# Finds (or starts) a PostgreSQL server for the test suite.  Sourced by
# scripts/test.sh; not meant to be run on its own.
#
#   latchkey_pg_setup     exports DATABASE_URL, in this order of preference:
#                           1. DATABASE_URL already set: used as is;
#                           2. a server answering on 127.0.0.1:5432:
#                              postgres://postgres@127.0.0.1:5432/postgres;
#                           3. PostgreSQL server binaries (initdb, pg_ctl on
#                              PATH or under /usr/lib/postgresql/*/bin): a
#                              throwaway cluster in a temp dir on a free port;
#                           4. otherwise: a clear error, return 1.
#                         Sets LATCHKEY_PG_SOURCE to env|local|throwaway.
#   latchkey_pg_cleanup   stops and removes the throwaway cluster, if any.
#                         Idempotent; call it from an EXIT trap.
#
# Knobs:
#   LATCHKEY_TEST_FORCE_THROWAWAY_PG=1  skip step 2 (pretend nothing answers on
#                                       5432), to exercise step 3.
#   LATCHKEY_PG_KEEP=1                  leave the throwaway cluster's files
#                                       behind (for post-mortems).

LATCHKEY_PG_DIR=""
LATCHKEY_PG_BINDIR=""
LATCHKEY_PG_SOURCE=""

_pg_log() { printf '[postgres] %s\n' "$*" >&2; }

# Prints /usr/lib/postgresql/*/bin, newest version first (Debian/Ubuntu keep
# server binaries off PATH).
_pg_versioned_bindirs() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -d "$dir" ]] && printf '%s\n' "$dir"
  done | sort -V -r
}

# Prints the directory holding initdb and pg_ctl, or returns 1.
_pg_find_bindir() {
  local dir
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  for dir in $(_pg_versioned_bindirs); do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

# Prints the path of a client tool (pg_isready, psql), or returns 1.
_pg_find_tool() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  for dir in $(_pg_versioned_bindirs); do
    if [[ -x "$dir/$name" ]]; then
      printf '%s\n' "$dir/$name"
      return 0
    fi
  done
  return 1
}

# True when a PostgreSQL server accepts connections at host:port.
_pg_answers() {
  local host=$1 port=$2 tool
  if tool=$(_pg_find_tool pg_isready); then
    "$tool" -q -h "$host" -p "$port" -t 3 >/dev/null 2>&1
  elif tool=$(_pg_find_tool psql); then
    PGCONNECT_TIMEOUT=3 "$tool" -h "$host" -p "$port" -U postgres -d postgres \
      -Atqc 'select 1' >/dev/null 2>&1
  else
    # No client tools: settle for "something listens there".
    timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" >/dev/null 2>&1
  fi
}

# Prints a TCP port that was free on 127.0.0.1 a moment ago.
_pg_free_port() {
  local py
  py=$(command -v python3 || command -v python || true)
  if [[ -n "$py" ]]; then
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" >/dev/null 2>&1; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  return 1
}

# Runs a command as the cluster's owner: initdb and postgres refuse to run as
# root, so under root that is the `postgres` system user.
# Runs from / so that the owner is not left in a directory it cannot read.
_pg_as_owner() (
  cd /
  if [[ $(id -u) -ne 0 ]]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  else
    su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
  fi
)

# Prints the URL with any password replaced by ***.
latchkey_redact_url() {
  printf '%s\n' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'
}

_pg_start_throwaway() {
  local bindir=$1 port attempt
  if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    _pg_log "running as root, but there is no 'postgres' user to own a throwaway cluster"
    _pg_log "(initdb refuses root). Create one (useradd -r postgres) or set DATABASE_URL."
    return 1
  fi

  # /tmp rather than $TMPDIR: the socket path must stay short (< 108 bytes)
  # and the postgres user must be able to reach it.
  LATCHKEY_PG_DIR=$(mktemp -d /tmp/latchkey-pg.XXXXXX)
  LATCHKEY_PG_BINDIR=$bindir
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$LATCHKEY_PG_DIR"
  fi
  chmod 700 "$LATCHKEY_PG_DIR"

  _pg_log "starting a throwaway cluster in $LATCHKEY_PG_DIR ($bindir)"
  if ! _pg_as_owner "$bindir/initdb" -D "$LATCHKEY_PG_DIR/data" --auth=trust -U postgres \
      --no-sync --encoding=UTF8 --locale=C >"$LATCHKEY_PG_DIR/initdb.log" 2>&1; then
    _pg_log "initdb failed:"
    cat "$LATCHKEY_PG_DIR/initdb.log" >&2
    return 1
  fi

  # The port was free a moment ago; another process may take it first, so
  # retry with a fresh one.
  for attempt in 1 2 3; do
    port=$(_pg_free_port) || { _pg_log "could not find a free port"; return 1; }
    if _pg_as_owner "$bindir/pg_ctl" -D "$LATCHKEY_PG_DIR/data" -l "$LATCHKEY_PG_DIR/server.log" \
        -w -t 60 -o "-k $LATCHKEY_PG_DIR -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null 2>&1; then
      export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
      _pg_log "throwaway cluster up on 127.0.0.1:$port"
      return 0
    fi
    _pg_log "pg_ctl start failed on port $port (attempt $attempt)"
  done
  _pg_log "server log:"
  tail -n 30 "$LATCHKEY_PG_DIR/server.log" >&2 || true
  return 1
}

latchkey_pg_cleanup() {
  [[ -n "$LATCHKEY_PG_DIR" ]] || return 0
  local dir=$LATCHKEY_PG_DIR
  LATCHKEY_PG_DIR=""
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    _pg_as_owner "$LATCHKEY_PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop \
      >/dev/null 2>&1 || _pg_log "could not stop the throwaway cluster in $dir"
  fi
  if [[ "${LATCHKEY_PG_KEEP:-}" == 1 ]]; then
    _pg_log "kept the throwaway cluster's files in $dir"
  else
    rm -rf "$dir"
  fi
}

latchkey_pg_setup() {
  local bindir
  if [[ -n "${DATABASE_URL:-}" ]]; then
    LATCHKEY_PG_SOURCE="env"
    _pg_log "using DATABASE_URL from the environment: $(latchkey_redact_url "$DATABASE_URL")"
  elif [[ "${LATCHKEY_TEST_FORCE_THROWAWAY_PG:-}" != 1 ]] && _pg_answers 127.0.0.1 5432; then
    LATCHKEY_PG_SOURCE="local"
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    _pg_log "using the server on 127.0.0.1:5432"
  elif bindir=$(_pg_find_bindir); then
    LATCHKEY_PG_SOURCE="throwaway"
    _pg_start_throwaway "$bindir" || return 1
  else
    if [[ "${LATCHKEY_TEST_FORCE_THROWAWAY_PG:-}" == 1 ]]; then
      _pg_log "LATCHKEY_TEST_FORCE_THROWAWAY_PG=1 asks for a throwaway cluster, but"
    else
      _pg_log "no PostgreSQL available: DATABASE_URL is unset, nothing answers on"
      _pg_log "127.0.0.1:5432, and"
    fi
    _pg_log "no server binaries (initdb, pg_ctl) were found on PATH or under"
    _pg_log "/usr/lib/postgresql/*/bin. Install them (apt-get install postgresql)"
    _pg_log "or point DATABASE_URL at a server whose role may CREATE DATABASE."
    return 1
  fi

  # The Rust tests create a database per test: check the role may do that.
  local psql ok
  if psql=$(_pg_find_tool psql); then
    if ! ok=$(PGCONNECT_TIMEOUT=5 "$psql" "$DATABASE_URL" -Atqc \
        'select rolsuper or rolcreatedb from pg_roles where rolname = current_user' 2>&1); then
      _pg_log "cannot connect to $(latchkey_redact_url "$DATABASE_URL"): $ok"
      return 1
    fi
    if [[ "$ok" != t ]]; then
      _pg_log "the role in $(latchkey_redact_url "$DATABASE_URL") may not CREATE DATABASE"
      return 1
    fi
  fi
}
