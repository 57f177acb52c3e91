#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): load latchkey.v1.CheckService/Check
# on a cached, valid key with h2load and compare it with the same load on
# grpc.health.v1.Health/Check of the same server (the floor).
#
#   bench/check.sh
#
# Env knobs (see bench/README.md):
#   LATCHKEY_BENCH_PROFILE=release|debug   binary to build and load (release)
#   LATCHKEY_BENCH_BUILD=1|0               run cargo build first (1)
#   LATCHKEY_BENCH_DURATION=10             measured seconds per run (h2load -D)
#   LATCHKEY_BENCH_ROUNDS=5                rounds; each reports the median over rounds
#   LATCHKEY_BENCH_WARMUP=2                warm-up seconds per run (--warm-up-time)
#   LATCHKEY_BENCH_THROUGHPUT_SHAPE="-c 4 -m 16"
#   LATCHKEY_BENCH_LATENCY_SHAPE="-c 1 -m 1"
#   LATCHKEY_BENCH_MIN_RPS_RATIO=0.85      throughput target (check/health req/s)
#   LATCHKEY_BENCH_MAX_P99_RATIO=1.2       latency target (check/health p99)
#   LATCHKEY_BENCH_EXT_AUTHZ_MIN_RPS_RATIO=0.75  ext_authz throughput target (ext_authz/health req/s)
#   LATCHKEY_BENCH_RECORDING=1|0           also compare Check with outcome recording (audit
#                                          + usage) on against a second server with it off (1)
#   LATCHKEY_BENCH_RECORDING_MIN_RATIO=0.90  target (on/off req/s), for allows and for denials
#   LATCHKEY_BENCH_KEEP=0|1                keep the temp dir (h2load output, logs)
#   CARGO_TARGET_DIR                       default $HOME/.cache/latchkey-target
#
# Exit status: 0 both targets pass, 2 a target fails, 1 setup error or an
# invalid run (failed streams, non-2xx responses, a denied Check).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ROUNDS=${LATCHKEY_BENCH_ROUNDS:-5}
EXT_MIN_RPS_RATIO=${LATCHKEY_BENCH_EXT_AUTHZ_MIN_RPS_RATIO:-0.75}
THROUGHPUT_SHAPE=${LATCHKEY_BENCH_THROUGHPUT_SHAPE:--c 4 -m 16}
LATENCY_SHAPE=${LATCHKEY_BENCH_LATENCY_SHAPE:--c 1 -m 1}
MIN_RPS_RATIO=${LATCHKEY_BENCH_MIN_RPS_RATIO:-0.85}
MAX_P99_RATIO=${LATCHKEY_BENCH_MAX_P99_RATIO:-1.2}

bench_setup
start_server

# ---------------------------------------------------------------- setup

ACCOUNT_ID=$(grpc latchkey.v1.AccountService/CreateAccount \
  '{"name":"bench","plan":"PRIME"}' "${AUTH[@]}" | json_get 'd["id"]') \
  || die "CreateAccount failed"
KEY_JSON=$(grpc latchkey.v1.KeyService/CreateKey \
  "{\"accountId\":\"$ACCOUNT_ID\",\"mode\":\"MODE_TEST\",\"kind\":\"KEY_KIND_SECRET\",\"name\":\"bench\",\"scopes\":[\"$PERMISSION\"]}" \
  "${AUTH[@]}") || die "CreateKey failed"
SECRET=$(json_get 'd["secret"]' <<<"$KEY_JSON")
KEY_ID=$(json_get 'd["key"]["id"]' <<<"$KEY_JSON")
log "account $ACCOUNT_ID, key $KEY_ID"
grpc latchkey.v1.RouteService/CreateRule \
  "{\"method\":\"GET\",\"path\":\"/v2/feedback/{id}\",\"permission\":\"$PERMISSION\"}" \
  "${AUTH[@]}" >/dev/null || die "CreateRule failed"
EXT_PATH="/v2/feedback/42"

CHECK_JSON="{\"credential\":\"$SECRET\",\"permission\":\"$PERMISSION\"}"
# Sanity check through grpcurl: the load must measure an allow, not a deny.
verify_check_grpcurl() {
  local out
  out=$(grpc latchkey.v1.CheckService/Check "$CHECK_JSON") || die "Check via grpcurl failed"
  [[ "$(json_get 'd.get("allowed") is True' <<<"$out")" == True ]] \
    || die "Check via grpcurl did not allow: $out"
}
verify_check_grpcurl
EXT_JSON="{\"attributes\":{\"source\":{\"address\":{\"socketAddress\":{\"address\":\"203.0.113.9\"}}},\"request\":{\"http\":{\"method\":\"GET\",\"path\":\"$EXT_PATH\",\"host\":\"api.example\",\"headers\":{\"authorization\":\"Bearer $SECRET\"}}}}}"
verify_ext_authz_grpcurl() {
  grpc envoy.service.auth.v3.Authorization/Check "$EXT_JSON" | grep -q '"okResponse"' \
    || die "ext_authz Check via grpcurl did not allow"
}
verify_ext_authz_grpcurl
grpc grpc.health.v1.Health/Check '{}' | grep -q '"SERVING"' \
  || die "grpc.health.v1.Health/Check is not SERVING"

# ---------------------------------------------------------------- request bodies
CHECK_BODY="$TMP/check.bin"
HEALTH_BODY="$TMP/health.bin"
python3 "$HELPER" frame "$CHECK_BODY" "1=$SECRET" "2=$PERMISSION"
python3 "$HELPER" frame "$HEALTH_BODY"
EXT_BODY="$TMP/ext_authz.bin"
python3 "$HELPER" frame-ext-authz "$EXT_BODY" "$SECRET" "$EXT_PATH"
EXT_URL="http://$GRPC_ADDR/envoy.service.auth.v3.Authorization/Check"
CHECK_URL="http://$GRPC_ADDR/latchkey.v1.CheckService/Check"
HEALTH_URL="http://$GRPC_ADDR/grpc.health.v1.Health/Check"

# The exact bytes h2load will send, once through nghttp: grpc-status 0 and
# an allow, decoded by `h2bench.py DECODER`. Prints the size of one
# response's DATA.
verify_frame() { # verify_frame LABEL BODY URL DECODER
  local label=$1 body=$2 url=$3 decoder=$4 decoded
  nghttp -v -d "$body" "${GRPC_HEADERS[@]}" "$url" >"$TMP/nghttp-$label-v.txt" 2>&1 \
    || { cat "$TMP/nghttp-$label-v.txt" >&2; die "nghttp $label request failed"; }
  grep -aq 'grpc-status: 0' "$TMP/nghttp-$label-v.txt" \
    || { grep -aE 'recv \(stream_id=[0-9]+\)' "$TMP/nghttp-$label-v.txt" >&2; die "raw $label frame: grpc-status is not 0"; }
  nghttp -d "$body" "${GRPC_HEADERS[@]}" "$url" >"$TMP/$label-response.bin" \
    || die "nghttp $label request failed"
  decoded=$(python3 "$HELPER" "$decoder" "$TMP/$label-response.bin") \
    || { printf '%s\n' "$decoded" >&2; die "raw $label frame was not allowed"; }
  sed -n 's/^frame_bytes=//p' <<<"$decoded"
}
verify_check_frame() { CHECK_FRAME_BYTES=$(verify_frame check "$CHECK_BODY" "$CHECK_URL" check-response); }
verify_ext_frame() { EXT_FRAME_BYTES=$(verify_frame ext_authz "$EXT_BODY" "$EXT_URL" ext-authz-response); }
verify_check_frame
verify_ext_frame
log "raw frames allowed; responses are $CHECK_FRAME_BYTES (Check) and $EXT_FRAME_BYTES (ext_authz) bytes"

# A fixed-count run (no warm-up, so h2load's data-byte count is exact) whose
# every response must be the same allow response: catches a key that starts
# being denied (rate limit, cache bug) under concurrency. Also warms the server.
VERIFY_N=2000
verify_fixed_count() { # verify_fixed_count LABEL BODY URL FRAME_BYTES
  local label=$1 body=$2 url=$3 frame_bytes=$4
  h2load -n "$VERIFY_N" -c 4 -m 16 -d "$body" "${GRPC_HEADERS[@]}" "$url" \
    >"$TMP/verify-$label.out" 2>&1 || { cat "$TMP/verify-$label.out" >&2; die "h2load $label verification run failed"; }
  read -r v_done v_ok v_failed v_errored v_timeout v_2xx v_data \
    < <(python3 "$HELPER" h2load-summary "$TMP/verify-$label.out") \
    || die "cannot parse h2load $label verification output"
  if [[ "$v_done" != "$VERIFY_N" || "$v_ok" != "$VERIFY_N" || "$v_2xx" != "$VERIFY_N" \
        || "$v_failed" != 0 || "$v_errored" != 0 || "$v_timeout" != 0 ]]; then
    cat "$TMP/verify-$label.out" >&2
    die "h2load $label verification run: not all $VERIFY_N requests got 2xx"
  fi
  if [[ "$v_data" != "$((VERIFY_N * frame_bytes))" ]]; then
    die "h2load $label verification run: $v_data response bytes, expected $VERIFY_N x $frame_bytes (some responses were not the allow response)"
  fi
  log "verification: $VERIFY_N concurrent $label calls, all 2xx with the allow response"
}
verify_fixed_count check "$CHECK_BODY" "$CHECK_URL" "$CHECK_FRAME_BYTES"
verify_fixed_count ext_authz "$EXT_BODY" "$EXT_URL" "$EXT_FRAME_BYTES"

# ---------------------------------------------------------------- measure
RUNS="$TMP/runs.tsv"
: >"$RUNS"
run_load() { # run_load LABEL SHAPE TARGET BODY URL ROUND
  local label=$1 shape=$2 target=$3 body=$4 url=$5 round=$6
  local out="$TMP/$label-$target-$round.out" logf="$TMP/$label-$target-$round.log"
  log "h2load $shape $target: ${WARMUP}s warm-up + ${DURATION}s"
  # shellcheck disable=SC2086 # SHAPE is a list of h2load flags
  h2load $shape -t 1 -D "$DURATION" --warm-up-time "$WARMUP" --log-file "$logf" \
    -d "$body" "${GRPC_HEADERS[@]}" "$url" >"$out" 2>&1 \
    || { cat "$out" >&2; die "h2load failed"; }
  printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$shape" "$target" "$out" "$logf" >>"$RUNS"
}

# Rounds interleave floor and Check, so drift in the machine's load hits both;
# the report takes the median of each column over the rounds.
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  run_load "throughput" "$THROUGHPUT_SHAPE" health "$HEALTH_BODY" "$HEALTH_URL" "$round"
  run_load "throughput" "$THROUGHPUT_SHAPE" check "$CHECK_BODY" "$CHECK_URL" "$round"
  run_load "throughput" "$THROUGHPUT_SHAPE" ext_authz "$EXT_BODY" "$EXT_URL" "$round"
  run_load "latency" "$LATENCY_SHAPE" health "$HEALTH_BODY" "$HEALTH_URL" "$round"
  run_load "latency" "$LATENCY_SHAPE" check "$CHECK_BODY" "$CHECK_URL" "$round"
done

# ---------------------------------------------------------------- recording on vs off
# Check with outcome recording (usage analytics, aggregated audit denials) on
# -- this server -- against a second server of the same build started with
# `[usage] record_outcomes = false`, same shape, rounds interleaved: for
# allows, and for a flood of denials (an unknown, well-formed credential).
RECORDING=${LATCHKEY_BENCH_RECORDING:-1}
RECORDING_MIN_RATIO=${LATCHKEY_BENCH_RECORDING_MIN_RATIO:-0.90}
OFF_PID=""
stop_off_server() {
  local rc=$?
  if [[ -n "$OFF_PID" ]] && kill -0 "$OFF_PID" 2>/dev/null; then
    kill -TERM "$OFF_PID" 2>/dev/null || true
    wait "$OFF_PID" 2>/dev/null || true
  fi
  return "$rc"
}
if [[ "$RECORDING" == 1 ]]; then
  trap 'stop_off_server; bench_cleanup' EXIT
  off_data="$TMP/data-off"
  mkdir -p "$off_data"
  printf '[usage]\nrecord_outcomes = false\n' >"$TMP/recording-off.toml"
  OFF_TOKEN=$("$BIN" admin create-token --data-dir "$off_data" 2>"$TMP/off-token.err" | tr -d '[:space:]') \
    || { cat "$TMP/off-token.err" >&2; die "admin create-token (recording off) failed"; }
  "$BIN" serve --config "$TMP/recording-off.toml" --data-dir "$off_data" \
    --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$TMP/off.out" 2>"$TMP/off.err" &
  OFF_PID=$!
  OFF_ADDR=""
  for _ in $(seq 1 300); do
    line=$(grep -m1 '^latchkey listening grpc=' "$TMP/off.out" 2>/dev/null || true)
    if [[ -n "$line" ]]; then OFF_ADDR=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line"); break; fi
    kill -0 "$OFF_PID" 2>/dev/null || { cat "$TMP/off.err" >&2; die "recording-off server exited early"; }
    sleep 0.1
  done
  [[ -n "$OFF_ADDR" ]] || die "recording-off server did not start"
  ON_ADDR=$GRPC_ADDR
  GRPC_ADDR=$OFF_ADDR
  OFF_AUTH=(-H "authorization: Bearer $OFF_TOKEN")
  off_account=$(grpc latchkey.v1.AccountService/CreateAccount '{"name":"bench","plan":"PRIME"}' \
    "${OFF_AUTH[@]}" | json_get 'd["id"]') || die "CreateAccount (recording off) failed"
  OFF_SECRET=$(grpc latchkey.v1.KeyService/CreateKey \
    "{\"accountId\":\"$off_account\",\"mode\":\"MODE_TEST\",\"kind\":\"KEY_KIND_SECRET\",\"name\":\"bench\",\"scopes\":[\"$PERMISSION\"]}" \
    "${OFF_AUTH[@]}" | json_get 'd["secret"]') || die "CreateKey (recording off) failed"
  GRPC_ADDR=$ON_ADDR
  CHECK_OFF_BODY="$TMP/check-off.bin"
  DENY_BODY="$TMP/deny.bin"
  python3 "$HELPER" frame "$CHECK_OFF_BODY" "1=$OFF_SECRET" "2=$PERMISSION"
  # The same secret with its tail changed: fails its checksum, denied before any lookup.
  python3 "$HELPER" frame "$DENY_BODY" "1=${SECRET%??????????}0000000000" "2=$PERMISSION"
  ON_CHECK_URL=$CHECK_URL
  OFF_CHECK_URL="http://$OFF_ADDR/latchkey.v1.CheckService/Check"
  verify_frame recording-off "$CHECK_OFF_BODY" "$OFF_CHECK_URL" check-response >/dev/null
  MAIN_RUNS=$RUNS
  RUNS="$TMP/recording.tsv"
  : >"$RUNS"
  for round in $(seq 1 "$ROUNDS"); do
    log "recording round $round of $ROUNDS"
    run_load "allow" "$THROUGHPUT_SHAPE" off "$CHECK_OFF_BODY" "$OFF_CHECK_URL" "$round"
    run_load "allow" "$THROUGHPUT_SHAPE" on "$CHECK_BODY" "$ON_CHECK_URL" "$round"
    run_load "deny" "$THROUGHPUT_SHAPE" off "$DENY_BODY" "$OFF_CHECK_URL" "$round"
    run_load "deny" "$THROUGHPUT_SHAPE" on "$DENY_BODY" "$ON_CHECK_URL" "$round"
  done
  RECORDING_RUNS=$RUNS
  RUNS=$MAIN_RUNS
fi

# Prints the recording rows; exit 2 when a ratio misses the target.
recording_report() {
  python3 - "$HELPER" "$RECORDING_RUNS" "$RECORDING_MIN_RATIO" <<'PY'
import statistics, subprocess, sys
helper, runs, target = sys.argv[1], sys.argv[2], float(sys.argv[3])
rps = {}
for line in open(runs):
    label, _shape, side, out, logf = line.rstrip("\n").split("\t")
    stats = subprocess.run(["python3", helper, "stats", out, logf], capture_output=True, text=True)
    if stats.returncode != 0:
        print(stats.stderr, file=sys.stderr)
        sys.exit(1)
    rps.setdefault((label, side), []).append(float(stats.stdout.split()[0]))
rc = 0
print(f"{'recording':<10} {'off req/s':>12} {'on req/s':>12} {'on/off':>8} {'target':>8}")
for label in ("allow", "deny"):
    off = statistics.median(rps[(label, "off")])
    on = statistics.median(rps[(label, "on")])
    ratio = on / off if off else 0.0
    ok = ratio >= target
    rc = rc if ok else 2
    print(f"{label:<10} {off:>12.0f} {on:>12.0f} {ratio:>8.2f} {'>=' + str(target):>8} {'ok' if ok else 'MISSED'}")
sys.exit(rc)
PY
}

# After the load the key must still be allowed (grpcurl and the raw frame).
verify_check_grpcurl
verify_check_frame
verify_ext_frame
verify_ext_authz_grpcurl

echo
echo "latchkey Check benchmark: $PROFILE build, ${DURATION}s per run after ${WARMUP}s warm-up," \
  "h2load and server sharing $(nproc) cores"
rc=0
python3 "$HELPER" report "$RUNS" "$MIN_RPS_RATIO" "$MAX_P99_RATIO" "$EXT_MIN_RPS_RATIO" || rc=$?
if [[ "$RECORDING" == 1 ]]; then
  echo
  rrc=0
  recording_report || rrc=$?
  [[ "$rrc" == 1 ]] && rc=1
  [[ "$rrc" == 2 && "$rc" == 0 ]] && rc=2
fi
exit "$rc"
