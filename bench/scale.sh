#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): many keys in PostgreSQL. Bulk-loads
# LATCHKEY_BENCH_KEYS keys, then looks each up once cold (first paced at
# LATCHKEY_BENCH_COLD_RATE per second, then as fast as LATCHKEY_BENCH_CONCURRENCY
# calls in flight allow), and all of them once more warm. Prints cold and warm
# latency percentiles and the server's RSS growth per cached key. The first
# second of paced cold lookups is a warm-up, not measured (the server opens its
# pool's connections then), and its keys are not looked up again.
#
#   bench/scale.sh
#
# Env knobs (besides bench/lib.sh's LATCHKEY_BENCH_PROFILE, _BUILD, _KEEP):
#   LATCHKEY_BENCH_KEYS=1000000        keys loaded and looked up
#   LATCHKEY_BENCH_COLD_RATE=2000      paced cold lookups per second
#   LATCHKEY_BENCH_COLD_SECONDS=10     how long the paced phase lasts
#   LATCHKEY_BENCH_CONCURRENCY=32      calls in flight in the other phases
#   LATCHKEY_BENCH_CONNECTIONS=1       connections the driver spreads them over
#   LATCHKEY_BENCH_DRIVER_THREADS=2    the driver's threads (1: tokio's
#                                      current_thread)
#   LATCHKEY_BENCH_SERVER_TOML=''      more server config, appended after the
#                                      [cache] table, e.g. $'[usage]\nrecord_outcomes = false'
#                                      to see what outcome recording costs
#   DATABASE_URL                       PostgreSQL server (a database is created
#                                      and dropped): default 127.0.0.1:5432
#
# Also printed, from the server's /metrics (so the server config has a
# [metrics] table of the script's own: LATCHKEY_BENCH_SERVER_TOML must not add
# one): the lookup statements of the whole run, their mean time from call to
# answer, keys per statement (how much the loader batched), and outcomes the
# server dropped unrecorded (in the warm phase only, at ~34,000 calls/s of
# distinct keys: a 5 s round holds more than usage.max_groups = 100,000
# groups; the cold phases record every outcome).
#
# Targets (issue 13): bytes per cached key ≤ 1024; cold p99 < 5 ms at
# 2,000/s and at 32 in flight; ≥ 10,000 cold lookups/s.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib-store.sh
source "$ROOT/bench/lib-store.sh"

KEYS=${LATCHKEY_BENCH_KEYS:-1000000}
COLD_RATE=${LATCHKEY_BENCH_COLD_RATE:-2000}
COLD_SECONDS=${LATCHKEY_BENCH_COLD_SECONDS:-10}
CONCURRENCY=${LATCHKEY_BENCH_CONCURRENCY:-32}

bench_setup
build_driver
bench_database
CONFIG=$(mktemp "${TMPDIR:-/tmp}/latchkey-scale.XXXXXX.toml")
METRICS_ADDR="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# Every key stays cached for the whole run.
cat >"$CONFIG" <<TOML
[metrics]
enabled = true
addr = "$METRICS_ADDR"

[cache]
max_entries = $((KEYS * 2 + 1000))
ttl_seconds = 3600
negative_ttl_seconds = 5
${LATCHKEY_BENCH_SERVER_TOML:-}
TOML
export LATCHKEY_CONFIG=$CONFIG
trap 'drop_bench_database; rm -f "$CONFIG"' EXIT
start_server
# start_server installed its own EXIT trap: ours runs first, then it.
store_cleanup() {
  local rc=$?
  drop_bench_database
  rm -f "$CONFIG"
  (exit "$rc")
  bench_cleanup
}
trap store_cleanup EXIT

ACCOUNT_ID=$(grpc latchkey.v1.AccountService/CreateAccount \
  '{"name":"bench","plan":"PRIME"}' "${AUTH[@]}" | json_get 'd["id"]') || die "CreateAccount failed"
TEMPLATE=$(grpc latchkey.v1.KeyService/CreateKey \
  "{\"accountId\":\"$ACCOUNT_ID\",\"mode\":\"MODE_TEST\",\"kind\":\"KEY_KIND_SECRET\",\"name\":\"bench\",\"scopes\":[\"$PERMISSION\"]}" \
  "${AUTH[@]}" | json_get 'd["key"]["id"]') || die "CreateKey failed"
log "bulk-loading $KEYS keys"
bulk_keys "$KEYS" "$TEMPLATE" "$TMP/secrets.txt"
log "looking them up ($PROFILE build, server pid $SERVER_PID)"
"$DRIVER" scale "$GRPC_ADDR" "$TMP/secrets.txt" "$SERVER_PID" "$COLD_RATE" "$COLD_SECONDS" "$CONCURRENCY"
# The store's find_key histogram counts lookup statements (a batch is one).
python3 - "http://$METRICS_ADDR/metrics" "$KEYS" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
def value(name):
    m = re.search(r'^latchkey_store_call_duration_seconds_%s\{op="find_key"\} (\S+)$' % name, text, re.M)
    return float(m.group(1)) if m else 0.0
n, total = value("count"), value("sum")
if n:
    print(f"lookup_statements={n:.0f} mean={total / n * 1e6:.0f}us keys_per_statement={int(sys.argv[2]) / n:.1f}")
# Outcomes the server could not record (ring full, or more distinct usage
# groups in one flush round than usage.max_groups): their calls were
# answered, but their usage counts were not written, so the run did less
# store work than a server that kept them all.
m = re.search(r'^latchkey_audit_dropped_total (\S+)$', text, re.M)
if m:
    print(f"outcomes_dropped={float(m.group(1)):.0f}")
PY
