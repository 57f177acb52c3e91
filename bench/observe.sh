#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): what observability costs the
# hot path. The same Check load (h2load on a cached, valid key) against three
# servers in turn:
#
#   off      no metrics listener, no OTLP export (metrics are not recorded)
#   metrics  --metrics-addr: every decision counted and timed
#   tracing  metrics off, OTLP trace export with OTEL_TRACES_SAMPLER=traceidratio
#            and OTEL_TRACES_SAMPLER_ARG=0.01 (1%), to an endpoint nobody
#            listens on (the exporter drops what it cannot send)
#
# and reports each as a ratio of `off`. Targets: metrics >= 0.90, tracing >= 0.85.
#
#   bench/observe.sh
#
# Env knobs: those of bench/check.sh (LATCHKEY_BENCH_PROFILE, _BUILD,
# _DURATION, _ROUNDS, _WARMUP, _THROUGHPUT_SHAPE, _KEEP), and
#   LATCHKEY_BENCH_METRICS_MIN_RATIO=0.90
#   LATCHKEY_BENCH_TRACING_MIN_RATIO=0.85
#
# Exit status: 0 both targets pass, 2 a target fails, 1 setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ROUNDS=${LATCHKEY_BENCH_ROUNDS:-5}
THROUGHPUT_SHAPE=${LATCHKEY_BENCH_THROUGHPUT_SHAPE:--c 4 -m 16}
METRICS_MIN=${LATCHKEY_BENCH_METRICS_MIN_RATIO:-0.90}
TRACING_MIN=${LATCHKEY_BENCH_TRACING_MIN_RATIO:-0.85}

bench_setup

# measure MODE [serve flags...]: median Check req/s over the rounds, on stdout.
measure() (
  start_server "$@"
  local account key_json secret body out rps=()
  account=$(grpc latchkey.v1.AccountService/CreateAccount '{"name":"bench","plan":"PRIME"}' "${AUTH[@]}" \
    | json_get 'd["id"]') || die "CreateAccount failed"
  key_json=$(grpc latchkey.v1.KeyService/CreateKey \
    "{\"accountId\":\"$account\",\"mode\":\"MODE_TEST\",\"kind\":\"KEY_KIND_SECRET\",\"name\":\"bench\",\"scopes\":[\"$PERMISSION\"]}" \
    "${AUTH[@]}") || die "CreateKey failed"
  secret=$(json_get 'd["secret"]' <<<"$key_json")
  body="$TMP/check.bin"
  python3 "$HELPER" frame "$body" "1=$secret" "2=$PERMISSION"
  for round in $(seq 1 "$ROUNDS"); do
    out="$TMP/check-$round.out"
    # shellcheck disable=SC2086 # SHAPE is a list of h2load flags
    h2load $THROUGHPUT_SHAPE -t 1 -D "$DURATION" --warm-up-time "$WARMUP" \
      -d "$body" "${GRPC_HEADERS[@]}" "http://$GRPC_ADDR/latchkey.v1.CheckService/Check" >"$out" 2>&1 \
      || { cat "$out" >&2; die "h2load failed"; }
    grep -q ' 0 failed, 0 errored, 0 timeout' "$out" || { cat "$out" >&2; die "h2load: failed requests"; }
    rps+=("$(sed -nE 's/^finished in [^,]+, ([0-9.]+) req\/s.*/\1/p' "$out")")
    log "round $round: ${rps[-1]} req/s"
  done
  printf '%s\n' "${rps[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
)

log "mode off"
OFF=$(measure)
log "mode metrics"
METRICS=$(measure --metrics-addr 127.0.0.1:0)
log "mode tracing (1%)"
TRACING=$(
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
  measure
)

echo
echo "latchkey observability cost: $PROFILE build, Check throughput ($THROUGHPUT_SHAPE), median of $ROUNDS x ${DURATION}s"
python3 - "$OFF" "$METRICS" "$TRACING" "$METRICS_MIN" "$TRACING_MIN" <<'PY'
import sys
off, metrics, tracing, mmin, tmin = map(float, sys.argv[1:])
rc = 0
print(f"{'mode':<18}{'req/s':>12}{'ratio':>8}{'target':>9}")
print(f"{'off':<18}{off:>12.0f}{1:>8.2f}{'':>9}")
for name, v, target in (("metrics on", metrics, mmin), ("tracing at 1%", tracing, tmin)):
    ratio = v / off if off else 0.0
    ok = ratio >= target
    rc = rc or (0 if ok else 2)
    print(f"{name:<18}{v:>12.0f}{ratio:>8.2f}{'>= ' + str(target):>9} {'ok' if ok else 'FAIL'}")
sys.exit(rc)
PY
