#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): the cost of rate limits on the
# hot path. On one server, with h2load, interleaved per round:
#   health    grpc.health.v1.Health/Check (the floor)
#   check     CheckService/Check on an unlimited key (test mode)
#   limited   CheckService/Check on a key with its own limit that the load
#             never reaches (10^9 per second): every call runs the GCRA step
#   rls       envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit
#             with one descriptor that a configured rule counts
# and prints req/s and p50/p99 of each, with limited/health and rls/health
# against their targets (>= 0.85 each). Redis-backed limits are not built
# yet, so that row is reported as such.
#
#   bench/limits.sh
#
# Knobs (as bench/check.sh; see bench/README.md):
#   LATCHKEY_BENCH_PROFILE=release|debug, LATCHKEY_BENCH_BUILD=1|0,
#   LATCHKEY_BENCH_DURATION=10, LATCHKEY_BENCH_WARMUP=2, LATCHKEY_BENCH_ROUNDS=3,
#   LATCHKEY_BENCH_THROUGHPUT_SHAPE="-c 4 -m 16",
#   LATCHKEY_BENCH_LIMITS_MIN_RATIO=0.85, LATCHKEY_BENCH_KEEP=0|1
#
# Exit status: 0 targets pass, 2 a target fails, 1 setup error or an invalid
# run (failed streams, non-2xx, a denied Check or an OVER_LIMIT answer).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ROUNDS=${LATCHKEY_BENCH_ROUNDS:-3}
SHAPE=${LATCHKEY_BENCH_THROUGHPUT_SHAPE:--c 4 -m 16}
MIN_RATIO=${LATCHKEY_BENCH_LIMITS_MIN_RATIO:-0.85}

bench_setup
CONFIG=$(mktemp "${TMPDIR:-/tmp}/latchkey-limits.XXXXXX.toml")
cat >"$CONFIG" <<'TOML'
[[rate_limits.descriptors]]
domain = "bench"
entries = [{ key = "remote_address" }]
requests = 1000000000
per_seconds = 1
TOML
start_server --config "$CONFIG"
mv "$CONFIG" "$TMP/latchkey.toml"

ACCOUNT_ID=$(grpc latchkey.v1.AccountService/CreateAccount \
  '{"name":"bench","plan":"PRIME"}' "${AUTH[@]}" | json_get 'd["id"]') || die "CreateAccount failed"
new_key() { # new_key EXTRA_JSON → the secret
  grpc latchkey.v1.KeyService/CreateKey \
    "{\"accountId\":\"$ACCOUNT_ID\",\"mode\":\"MODE_TEST\",\"kind\":\"KEY_KIND_SECRET\",\"name\":\"bench\",\"scopes\":[\"$PERMISSION\"]$1}" \
    "${AUTH[@]}" | json_get 'd["secret"]'
}
PLAIN=$(new_key "") || die "CreateKey failed"
LIMITED=$(new_key ',"rateLimit":{"requests":"1000000000","perSeconds":"1"}') || die "CreateKey failed"

verify() { # the load must measure allows, with the limit step for LIMITED
  local out
  out=$(grpc latchkey.v1.CheckService/Check "{\"credential\":\"$PLAIN\",\"permission\":\"$PERMISSION\"}")
  [[ "$(json_get 'd.get("allowed") is True and "rateLimit" not in d' <<<"$out")" == True ]] \
    || die "the unlimited key's Check: $out"
  out=$(grpc latchkey.v1.CheckService/Check "{\"credential\":\"$LIMITED\",\"permission\":\"$PERMISSION\"}")
  [[ "$(json_get 'd.get("allowed") is True and d["rateLimit"]["limit"] == "1000000000"' <<<"$out")" == True ]] \
    || die "the limited key's Check: $out"
  out=$(grpc envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit \
    '{"domain":"bench","descriptors":[{"entries":[{"key":"remote_address","value":"10.0.0.7"}]}]}')
  [[ "$(json_get 'd.get("overallCode") == "OK" and d["statuses"][0]["currentLimit"]["requestsPerUnit"] == 1000000000' <<<"$out")" == True ]] \
    || die "ShouldRateLimit: $out"
}
verify

# Request bodies: Check as bench/check.sh frames it; ShouldRateLimit by hand
# (domain = 1, descriptors = 2 { entries = 1 { key = 1, value = 2 } }).
python3 "$HELPER" frame "$TMP/plain.bin" "1=$PLAIN" "2=$PERMISSION"
python3 "$HELPER" frame "$TMP/limited.bin" "1=$LIMITED" "2=$PERMISSION"
python3 "$HELPER" frame "$TMP/health.bin"
python3 - "$TMP/rls.bin" <<'PY'
import struct, sys
def field(n, b): return bytes([n << 3 | 2]) + bytes([len(b)]) + b
entry = field(1, b"remote_address") + field(2, b"10.0.0.7")
msg = field(1, b"bench") + field(2, field(1, entry))
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY

RUNS="$TMP/runs.tsv"
: >"$RUNS"
run_load() { # run_load TARGET BODY PATH ROUND
  local target=$1 body=$2 path=$3 round=$4
  local out="$TMP/$target-$round.out" logf="$TMP/$target-$round.log"
  log "h2load $SHAPE $target: ${WARMUP}s warm-up + ${DURATION}s"
  # shellcheck disable=SC2086 # SHAPE is a list of h2load flags
  h2load $SHAPE -t 1 -D "$DURATION" --warm-up-time "$WARMUP" --log-file "$logf" \
    -d "$body" "${GRPC_HEADERS[@]}" "http://$GRPC_ADDR/$path" >"$out" 2>&1 \
    || { cat "$out" >&2; die "h2load failed"; }
  printf '%s\t%s\t%s\t%s\n' "$target" "$round" "$out" "$logf" >>"$RUNS"
}
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  run_load health "$TMP/health.bin" grpc.health.v1.Health/Check "$round"
  run_load check "$TMP/plain.bin" latchkey.v1.CheckService/Check "$round"
  run_load limited "$TMP/limited.bin" latchkey.v1.CheckService/Check "$round"
  run_load rls "$TMP/rls.bin" envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit "$round"
done
verify

echo
echo "latchkey rate-limit benchmark: $PROFILE build, ${DURATION}s per run after ${WARMUP}s" \
  "warm-up, $ROUNDS round(s), h2load $SHAPE and server sharing $(nproc) cores"
python3 - "$RUNS" "$HELPER" "$MIN_RATIO" <<'PY'
import statistics, subprocess, sys
runs, helper, target = sys.argv[1], sys.argv[2], float(sys.argv[3])
stats = {}
bad = []
for line in open(runs):
    name, rnd, out, logf = line.rstrip("\n").split("\t")
    r = subprocess.run(["python3", helper, "stats", out, logf], capture_output=True, text=True)
    if r.returncode:
        bad.append(f"{name} round {rnd}: {r.stderr.strip()}")
        continue
    rps, p50, p99, ok, non200, cut = r.stdout.split()
    if int(non200):
        bad.append(f"{name} round {rnd}: {non200} non-200 responses")
    stats.setdefault(name, []).append((float(rps), int(p50), int(p99)))
print(f"{'scenario':<10} {'req/s':>10} {'p50':>8} {'p99':>8}")
for name, rows in stats.items():
    print(f"{name:<10} {statistics.median(r[0] for r in rows):>10.0f} "
          f"{statistics.median(r[1] for r in rows):>6}us {statistics.median(r[2] for r in rows):>6}us")
print(f"{'redis':<10} {'n/a':>10}   (Redis-backed limits are not built yet)")
print()
verdicts = []
for name, what in [("check", "plain Check / health"), ("limited", "limited Check / health"),
                   ("rls", "ShouldRateLimit / health")]:
    ratios = [c[0] / h[0] for h, c in zip(stats.get("health", []), stats.get(name, [])) if h[0]]
    if not ratios:
        continue
    ratio = statistics.median(ratios)
    line = f"{what:<26} = {ratio:.3f}"
    if name != "check":
        ok = ratio >= target
        verdicts.append(ok)
        line += f"  (target >= {target:.2f})  {'PASS' if ok else 'FAIL'}"
    print(line + "   rounds: " + " ".join(f"{r:.3f}" for r in ratios))
for b in bad:
    print(f"INVALID RUN: {b}", file=sys.stderr)
sys.exit(1 if bad else (0 if verdicts and all(verdicts) else 2))
PY
