#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): what observability costs the
# hot path. The same Check load (h2load on a cached, valid key) against three
# servers running side by side, the rounds interleaved (off, metrics,
# tracing, off, ...) so that a shared machine's drift hits all three:
#
#   off      no metrics listener, no OTLP export (metrics are not recorded)
#   metrics  --metrics-addr: every decision counted and timed
#   tracing  metrics off, OTLP trace export with OTEL_TRACES_SAMPLER=traceidratio
#            and OTEL_TRACES_SAMPLER_ARG=0.01 (1%), to an endpoint nobody
#            listens on (the exporter drops what it cannot send)
#
# and reports the median of each mode's per-round ratio to `off`. Targets: metrics >= 0.90, tracing >= 0.85.
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

# The three servers run side by side and the rounds interleave (off,
# metrics, tracing, off, ...), so that drift on a shared machine lands on
# every mode alike rather than on whichever ran last.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench-observe.XXXXXX")
PIDS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
stop_all() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [[ "$KEEP" == 1 ]] || rm -rf "$TMP"
  exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# launch MODE [serve flags...]: starts a server (env from the caller), makes
# its key and request body; sets ADDR_<MODE> and BODY_<MODE>.
launch() {
  local mode=$1 data="$TMP/$1" token line addr="" account secret
  shift
  mkdir -p "$data"
  token=$("$BIN" admin create-token --data-dir "$data" 2>"$data/token.err" | tr -d '[:space:]') \
    || { cat "$data/token.err" >&2; die "admin create-token ($mode) failed"; }
  "$BIN" serve --data-dir "$data" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 "$@" \
    >"$data/server.out" 2>"$data/server.err" &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    line=$(grep -m1 '^latchkey listening grpc=' "$data/server.out" 2>/dev/null || true)
    if [[ -n "$line" ]]; then addr=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line"); break; fi
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$data/server.err" >&2; die "$mode server exited early"; }
    sleep 0.1
  done
  [[ -n "$addr" ]] || die "$mode server did not start"
  GRPC_ADDR=$addr
  AUTH=(-H "authorization: Bearer $token")
  account=$(grpc latchkey.v1.AccountService/CreateAccount '{"name":"bench","plan":"PRIME"}' "${AUTH[@]}" \
    | json_get 'd["id"]') || die "CreateAccount ($mode) failed"
  secret=$(grpc latchkey.v1.KeyService/CreateKey \
    "{\"accountId\":\"$account\",\"mode\":\"MODE_TEST\",\"kind\":\"KEY_KIND_SECRET\",\"name\":\"bench\",\"scopes\":[\"$PERMISSION\"]}" \
    "${AUTH[@]}" | json_get 'd["secret"]') || die "CreateKey ($mode) failed"
  python3 "$HELPER" frame "$data/check.bin" "1=$secret" "2=$PERMISSION"
  printf -v "ADDR_$mode" '%s' "$addr"
  printf -v "BODY_$mode" '%s' "$data/check.bin"
  log "$mode server on $addr"
}

launch off
launch metrics --metrics-addr 127.0.0.1:0
(
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
  launch tracing
  # the subshell's variables do not come back: hand them over in a file
  printf '%s %s %s\n' "$ADDR_tracing" "$BODY_tracing" "${PIDS[-1]}" >"$TMP/tracing.env"
)
read -r ADDR_tracing BODY_tracing tracing_pid <"$TMP/tracing.env"
PIDS+=("$tracing_pid")

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  for mode in off metrics tracing; do
    addr_var="ADDR_$mode" body_var="BODY_$mode"
    out="$TMP/$mode-$round.out"
    # shellcheck disable=SC2086 # SHAPE is a list of h2load flags
    h2load $THROUGHPUT_SHAPE -t 1 -D "$DURATION" --warm-up-time "$WARMUP" \
      -d "${!body_var}" "${GRPC_HEADERS[@]}" "http://${!addr_var}/latchkey.v1.CheckService/Check" >"$out" 2>&1 \
      || { cat "$out" >&2; die "h2load failed"; }
    grep -q ' 0 failed, 0 errored, 0 timeout' "$out" || { cat "$out" >&2; die "h2load: failed requests"; }
    rps=$(sed -nE 's/^finished in [^,]+, ([0-9.]+) req\/s.*/\1/p' "$out")
    printf '%s\t%s\t%s\n' "$mode" "$round" "$rps" >>"$RESULTS"
    log "round $round $mode: $rps req/s"
  done
done

echo
echo "latchkey observability cost: $PROFILE build, Check throughput ($THROUGHPUT_SHAPE), median of $ROUNDS x ${DURATION}s"
python3 - "$RESULTS" "$METRICS_MIN" "$TRACING_MIN" <<'PY'
import statistics, sys
path, mmin, tmin = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
by = {}
for mode, rnd, rps in rows:
    by.setdefault(mode, {})[rnd] = float(rps)
off = by["off"]
rc = 0
print(f"{'mode':<18}{'req/s':>12}{'ratio':>8}{'target':>9}   per-round ratios")
print(f"{'off':<18}{statistics.median(off.values()):>12.0f}{1:>8.2f}")
for name, mode, target in (("metrics on", "metrics", mmin), ("tracing at 1%", "tracing", tmin)):
    ratios = [by[mode][r] / off[r] for r in sorted(off) if off[r]]
    ratio = statistics.median(ratios)
    ok = ratio >= target
    rc = rc or (0 if ok else 2)
    print(f"{name:<18}{statistics.median(by[mode].values()):>12.0f}{ratio:>8.2f}{'>= ' + str(target):>9} {'ok' if ok else 'FAIL'}   "
          + " ".join(f"{x:.2f}" for x in ratios))
sys.exit(rc)
PY
