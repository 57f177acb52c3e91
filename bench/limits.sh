#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): the cost of rate limits on the
# hot path. On one server, with h2load, interleaved per round:
#   health    grpc.health.v1.Health/Check (the floor)
#   check     CheckService/Check on an unlimited key (test mode)
#   limited   CheckService/Check on a key with its own limit that the load
#             never reaches (10^9 per second): every call runs the GCRA step
#   rls       envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit
#             with one descriptor that a configured rule counts
#   redis     the limited Check on a second server that shares its limits
#             through Redis (REDIS_URL, else 127.0.0.1:6379 if it answers,
#             else a throwaway redis-server; the row is skipped without one)
# and prints req/s and p50/p99 of each, with limited/health and rls/health
# against their targets (>= 0.85 each) and redis/health (>= 0.75). Then the
# accuracy of one global limit across two Redis-backed replicas: both are
# flooded with ShouldRateLimit on a 200/s descriptor for the run's duration,
# and what they allowed together is compared with burst + rate × time
# (target: within 5%).
#
#   bench/limits.sh
#
# Knobs (as bench/check.sh; see bench/README.md):
#   LATCHKEY_BENCH_PROFILE=release|debug, LATCHKEY_BENCH_BUILD=1|0,
#   LATCHKEY_BENCH_DURATION=10, LATCHKEY_BENCH_WARMUP=2, LATCHKEY_BENCH_ROUNDS=3,
#   LATCHKEY_BENCH_THROUGHPUT_SHAPE="-c 4 -m 16",
#   LATCHKEY_BENCH_LIMITS_MIN_RATIO=0.85, LATCHKEY_BENCH_REDIS_MIN_RATIO=0.75,
#   LATCHKEY_BENCH_KEEP=0|1
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
REDIS_MIN_RATIO=${LATCHKEY_BENCH_REDIS_MIN_RATIO:-0.75}
ACCURACY_RATE=200

bench_setup
VENV_PY=${LATCHKEY_VENV:-/root/.cache/latchkey-venv}/bin/python
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

# Redis: REDIS_URL, else the local one, else a throwaway redis-server.
REDIS=${REDIS_URL:-}
EXTRA_PIDS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
stop_extra() {
  local pid
  for pid in "${EXTRA_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  bench_cleanup
}
trap stop_extra EXIT
if [[ -z "$REDIS" ]] && [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; then
  REDIS="redis://127.0.0.1:6379"
fi
if [[ -z "$REDIS" ]] && command -v redis-server >/dev/null; then
  RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >/dev/null 2>&1 &
  EXTRA_PIDS+=($!)
  for _ in $(seq 1 50); do
    [[ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" == PONG ]] && { REDIS="redis://127.0.0.1:$RPORT"; break; }
    sleep 0.1
  done
fi
REPLICAS=()
if [[ -n "$REDIS" ]]; then
  # Two more servers on the same SQLite data (they only read the keys),
  # sharing their limits through Redis.
  cat >"$TMP/redis.toml" <<TOML
[rate_limits]
redis_url = "$REDIS"
replicas = 2

[[rate_limits.descriptors]]
domain = "bench"
entries = [{ key = "remote_address" }]
requests = 1000000000
per_seconds = 1

[[rate_limits.descriptors]]
domain = "accuracy"
entries = [{ key = "run" }]
requests = $ACCURACY_RATE
per_seconds = 1
TOML
  for r in 1 2; do
    "$BIN" serve --data-dir "$TMP/data" --config "$TMP/redis.toml" --no-migrate \
      --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$TMP/replica$r.out" 2>"$TMP/replica$r.err" &
    EXTRA_PIDS+=($!)
  done
  for r in 1 2; do
    addr=""
    for _ in $(seq 1 300); do
      addr=$(sed -nE 's/^latchkey listening grpc=([^ ]+).*/\1/p' "$TMP/replica$r.out" | head -1)
      [[ -n "$addr" ]] && break
      sleep 0.1
    done
    [[ -n "$addr" ]] || { cat "$TMP/replica$r.err" >&2; die "Redis-backed replica $r did not start"; }
    REPLICAS+=("$addr")
  done
  # Until the first batch answers, a replica enforces its share; wait for it.
  for r in 1 2; do
    http=$(sed -nE 's/^latchkey listening .* http=([^ ]+).*/\1/p' "$TMP/replica$r.out" | head -1)
    for _ in $(seq 1 100); do
      curl -fsS "http://$http/readyz" 2>/dev/null | grep -q '"rate_limits":"global"' && break
      sleep 0.1
    done
    curl -fsS "http://$http/readyz" | grep -q '"rate_limits":"global"' || die "replica $r never reached Redis"
  done
  log "Redis-backed replicas: ${REPLICAS[*]} on $(sed -E 's#//[^@]*@#//***@#' <<<"$REDIS")"
else
  log "no Redis (REDIS_URL, 127.0.0.1:6379 or redis-server): skipping the Redis rows"
fi

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
run_load() { # run_load TARGET BODY PATH ROUND [ADDR]
  local target=$1 body=$2 path=$3 round=$4 addr=${5:-$GRPC_ADDR}
  local out="$TMP/$target-$round.out" logf="$TMP/$target-$round.log"
  log "h2load $SHAPE $target: ${WARMUP}s warm-up + ${DURATION}s"
  # shellcheck disable=SC2086 # SHAPE is a list of h2load flags
  h2load $SHAPE -t 1 -D "$DURATION" --warm-up-time "$WARMUP" --log-file "$logf" \
    -d "$body" "${GRPC_HEADERS[@]}" "http://$addr/$path" >"$out" 2>&1 \
    || { cat "$out" >&2; die "h2load failed"; }
  printf '%s\t%s\t%s\t%s\n' "$target" "$round" "$out" "$logf" >>"$RUNS"
}
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  run_load health "$TMP/health.bin" grpc.health.v1.Health/Check "$round"
  run_load check "$TMP/plain.bin" latchkey.v1.CheckService/Check "$round"
  run_load limited "$TMP/limited.bin" latchkey.v1.CheckService/Check "$round"
  run_load rls "$TMP/rls.bin" envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit "$round"
  if ((${#REPLICAS[@]})); then
    run_load redis "$TMP/limited.bin" latchkey.v1.CheckService/Check "$round" "${REPLICAS[0]}"
  fi
done
verify

# Accuracy: both replicas flooded on one 200/s descriptor (burst 200).
ACCURACY=""
if ((${#REPLICAS[@]})); then
  log "accuracy: two replicas, ${ACCURACY_RATE}/s, ${DURATION}s"
  ACCURACY=$("$VENV_PY" - "$DURATION" "$ACCURACY_RATE" "${REPLICAS[@]}" <<'PY'
import secrets, sys, threading, time
import grpc
duration, rate, addrs = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def field(n, b): return bytes([n << 3 | 2]) + bytes([len(b)]) + b
run = secrets.token_hex(8).encode()
req = field(1, b"accuracy") + field(2, field(1, field(1, b"run") + field(2, run)))
counts = [0, 0]
stop = time.monotonic() + duration
def flood(i, addr):
    ch = grpc.insecure_channel(addr)
    call = ch.unary_unary("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
                          request_serializer=None, response_deserializer=None)
    while time.monotonic() < stop:
        resp = call(req, timeout=5)
        # overall_code = 1 (varint); OK = 1.
        if resp[:2] == b"\x08\x01":
            counts[i] += 1
start = time.monotonic()
threads = [threading.Thread(target=flood, args=(i % 2, a)) for i, a in enumerate(addrs * 2)]
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.monotonic() - start
allowed = sum(counts)
expected = rate + rate * elapsed
print(f"{allowed} {expected:.0f} {allowed / expected:.4f}")
PY
  ) || die "the accuracy run failed"
fi

echo
echo "latchkey rate-limit benchmark: $PROFILE build, ${DURATION}s per run after ${WARMUP}s" \
  "warm-up, $ROUNDS round(s), h2load $SHAPE and server sharing $(nproc) cores"
python3 - "$RUNS" "$HELPER" "$MIN_RATIO" "$REDIS_MIN_RATIO" "$ACCURACY" <<'PY'
import statistics, subprocess, sys
runs, helper, target = sys.argv[1], sys.argv[2], float(sys.argv[3])
redis_target, accuracy = float(sys.argv[4]), sys.argv[5]
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
if "redis" not in stats:
    print(f"{'redis':<10} {'n/a':>10}   (no Redis to run against)")
print()
verdicts = []
for name, what in [("check", "plain Check / health"), ("limited", "limited Check / health"),
                   ("rls", "ShouldRateLimit / health"), ("redis", "Redis-backed Check / health")]:
    ratios = [c[0] / h[0] for h, c in zip(stats.get("health", []), stats.get(name, [])) if h[0]]
    if not ratios:
        continue
    ratio = statistics.median(ratios)
    line = f"{what:<26} = {ratio:.3f}"
    if name != "check":
        want = redis_target if name == "redis" else target
        ok = ratio >= want
        verdicts.append(ok)
        line += f"  (target >= {want:.2f})  {'PASS' if ok else 'FAIL'}"
    print(line + "   rounds: " + " ".join(f"{r:.3f}" for r in ratios))
if accuracy:
    allowed, expected, ratio = accuracy.split()
    ok = abs(float(ratio) - 1) <= 0.05
    verdicts.append(ok)
    print(f"two replicas allowed {allowed} of a global {expected} (burst + rate x time) = {float(ratio):.3f}"
          f"  (target within 5%)  {'PASS' if ok else 'FAIL'}")
for b in bad:
    print(f"INVALID RUN: {b}", file=sys.stderr)
sys.exit(1 if bad else (0 if verdicts and all(verdicts) else 2))
PY
