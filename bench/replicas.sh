#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): two replicas on one PostgreSQL
# database. Replica A serves Check under load (h2load at full speed on one
# key, and the driver over LATCHKEY_BENCH_LOAD_KEYS keys so that A's usage
# flushes write many rows); replica B revokes keys that A has cached. Prints
# RevokeKey's latency on B and how long until A denies the key, from B's
# acknowledgement and from the request (p50/p99 over the rounds).
#
#   bench/replicas.sh
#
# Env knobs (besides bench/lib.sh's LATCHKEY_BENCH_PROFILE, _BUILD, _KEEP):
#   LATCHKEY_BENCH_ROUNDS=200          revocations measured
#   LATCHKEY_BENCH_LOAD_KEYS=2000      keys the background load cycles over
#   LATCHKEY_BENCH_H2LOAD_SHAPE="-c 2 -m 16"
#   DATABASE_URL                       PostgreSQL server: default 127.0.0.1:5432
#
# Targets (issue 13): RevokeKey p99 < 50 ms; denied on A within 100 ms.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib-store.sh
source "$ROOT/bench/lib-store.sh"

ROUNDS=${LATCHKEY_BENCH_ROUNDS:-200}
LOAD_KEYS=${LATCHKEY_BENCH_LOAD_KEYS:-2000}
H2LOAD_SHAPE=${LATCHKEY_BENCH_H2LOAD_SHAPE:--c 2 -m 16}

bench_setup
build_driver
bench_database
# Flushing often makes the usage writes as heavy as they get.
export LATCHKEY_CONFIG
LATCHKEY_CONFIG=$(mktemp "${TMPDIR:-/tmp}/latchkey-replicas.XXXXXX.toml")
printf 'usage_flush_interval_ms = 200\n' >"$LATCHKEY_CONFIG"
start_server # replica A
A_GRPC=$GRPC_ADDR
B_PID=""
store_cleanup() {
  local rc=$?
  if [[ -n "$B_PID" ]]; then
    kill -TERM "$B_PID" 2>/dev/null || true
    wait "$B_PID" 2>/dev/null || true
  fi
  [[ -n "${H2_PID:-}" ]] && kill "$H2_PID" 2>/dev/null
  drop_bench_database
  rm -f "$LATCHKEY_CONFIG"
  (exit "$rc")
  bench_cleanup
}
trap store_cleanup EXIT

# Replica B: same database and data dir (the development master key file).
"$BIN" serve --data-dir "$TMP/data" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  >"$TMP/b.out" 2>"$TMP/b.err" &
B_PID=$!
B_GRPC=""
for _ in $(seq 1 300); do
  line=$(grep -m1 '^latchkey listening grpc=' "$TMP/b.out" 2>/dev/null || true)
  if [[ -n "$line" ]]; then
    B_GRPC=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line")
    break
  fi
  kill -0 "$B_PID" 2>/dev/null || { cat "$TMP/b.err" >&2; die "replica B exited early"; }
  sleep 0.1
done
[[ -n "$B_GRPC" ]] || die "replica B did not start"
log "replica A $A_GRPC, replica B $B_GRPC"

ACCOUNT_ID=$(grpc latchkey.v1.AccountService/CreateAccount \
  '{"name":"bench","plan":"PRIME"}' "${AUTH[@]}" | json_get 'd["id"]') || die "CreateAccount failed"
SECRET=$(grpc latchkey.v1.KeyService/CreateKey \
  "{\"accountId\":\"$ACCOUNT_ID\",\"mode\":\"MODE_TEST\",\"kind\":\"KEY_KIND_SECRET\",\"name\":\"bench\",\"scopes\":[\"$PERMISSION\"]}" \
  "${AUTH[@]}" | json_get 'd["secret"]') || die "CreateKey failed"
python3 "$HELPER" frame "$TMP/check.bin" "1=$SECRET" "2=$PERMISSION"
# shellcheck disable=SC2086 # the shape is a list of flags
h2load $H2LOAD_SHAPE -t 1 -D $((ROUNDS + 600)) -d "$TMP/check.bin" "${GRPC_HEADERS[@]}" \
  "http://$A_GRPC/latchkey.v1.CheckService/Check" >"$TMP/h2load.out" 2>&1 &
H2_PID=$!
"$DRIVER" propagation "$A_GRPC" "$B_GRPC" "$TOKEN" "$ACCOUNT_ID" "$ROUNDS" "$LOAD_KEYS"
