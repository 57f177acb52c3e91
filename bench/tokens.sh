#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): client-credentials issuance on
# POST /oauth2/token for RS256, ES256 and EdDSA keys, beside this machine's
# signing limit from `openssl speed -multi $(nproc)`; then Check's p99 alone
# and while tokens are being minted.
#
#   bench/tokens.sh
#
# Env knobs (see bench/README.md):
#   LATCHKEY_BENCH_PROFILE=release|debug   binary to build and load (release)
#   LATCHKEY_BENCH_BUILD=1|0               run cargo build first (1)
#   LATCHKEY_BENCH_DURATION=10             measured seconds per run (h2load -D)
#   LATCHKEY_BENCH_WARMUP=2                warm-up seconds per run
#   LATCHKEY_BENCH_MINT_SHAPE="-c 8 -m 4"  issuance load
#   LATCHKEY_BENCH_CHECK_RPS=250           Check requests/s per client (2 clients)
#   LATCHKEY_BENCH_MIN_SIGN_RATIO=0.75     RS256 issuance / openssl RS256 signs
#   LATCHKEY_BENCH_MAX_CHECK_P99_RATIO=1.5 Check p99 while minting / alone
#   LATCHKEY_BENCH_MIN_JWT_RATIO=0.80      JWT Check req/s / health floor (-c 4 -m 16, interleaved rounds)
#   LATCHKEY_BENCH_KEEP=0|1                keep the temp dir
#   CARGO_TARGET_DIR                       default $HOME/.cache/latchkey-target
#
# Exit status: 0 both targets pass, 2 a target fails, 1 setup error or an
# invalid run (a non-200 token response, a denied Check).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

MINT_SHAPE=${LATCHKEY_BENCH_MINT_SHAPE:--c 8 -m 4}
CHECK_RPS=${LATCHKEY_BENCH_CHECK_RPS:-250}
MIN_SIGN_RATIO=${LATCHKEY_BENCH_MIN_SIGN_RATIO:-0.75}
MAX_CHECK_P99_RATIO=${LATCHKEY_BENCH_MAX_CHECK_P99_RATIO:-1.5}
MIN_JWT_RATIO=${LATCHKEY_BENCH_MIN_JWT_RATIO:-0.80}

bench_setup
command -v openssl >/dev/null || die "openssl is needed for the signing limit"

# ---------------------------------------------------------------- limits
# openssl speed -multi prints one summary line per algorithm; sign/s is the
# second-to-last field.
openssl_signs() { # openssl_signs ALGO PATTERN
  openssl speed -multi "$(nproc)" -seconds 5 "$1" 2>/dev/null \
    | awk -v pat="$2" '$0 ~ pat { v = $(NF - 1) } END { print v }'
}
log "measuring openssl's signing limit on $(nproc) cores"
LIMIT_RS256=$(openssl_signs rsa2048 '^rsa 2048 bits')
LIMIT_ES256=$(openssl_signs ecdsap256 'ecdsa .nistp256.')
LIMIT_EDDSA=$(openssl_signs ed25519 'EdDSA .Ed25519.')
[[ -n "$LIMIT_RS256" && -n "$LIMIT_ES256" && -n "$LIMIT_EDDSA" ]] \
  || die "cannot parse openssl speed output"

start_server

# ---------------------------------------------------------------- setup
ACCOUNT_ID=$(grpc latchkey.v1.AccountService/CreateAccount \
  '{"name":"bench","plan":"PRIME"}' "${AUTH[@]}" | json_get 'd["id"]') \
  || die "CreateAccount failed"
CLIENT_JSON=$(grpc latchkey.v1.TokenService/CreateClient \
  "{\"accountId\":\"$ACCOUNT_ID\",\"mode\":\"MODE_TEST\",\"name\":\"bench\",\"grantTypes\":[\"client_credentials\"],\"scopes\":[\"$PERMISSION\"]}" \
  "${AUTH[@]}") || die "CreateClient failed"
CLIENT_ID=$(json_get 'd["client"]["clientId"]' <<<"$CLIENT_JSON")
CLIENT_SECRET=$(json_get 'd["clientSecret"]' <<<"$CLIENT_JSON")
BASIC=$(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0)
TOKEN_URL="http://$HTTP_ADDR/oauth2/token"
MINT_BODY="$TMP/mint.form"
printf 'grant_type=client_credentials' >"$MINT_BODY"
MINT_HEADERS=(-H 'content-type: application/x-www-form-urlencoded' -H "authorization: Basic $BASIC")

# One token through curl-free HTTP/2: it must be a 200 with an access token.
mint_once() {
  nghttp -d "$MINT_BODY" "${MINT_HEADERS[@]}" "$TOKEN_URL" >"$TMP/mint-once.json" 2>"$TMP/mint-once.err" \
    || { cat "$TMP/mint-once.err" >&2; die "minting a token failed"; }
  json_get 'd["access_token"]' <"$TMP/mint-once.json" \
    || { cat "$TMP/mint-once.json" >&2; die "no access token in the token response"; }
}
ACCESS_TOKEN=$(mint_once)

# Check on that token (a JWT), allowed: the latency probe.
CHECK_BODY="$TMP/check.bin"
python3 "$HELPER" frame "$CHECK_BODY" "1=$ACCESS_TOKEN" "2=$PERMISSION"
CHECK_URL="http://$GRPC_ADDR/latchkey.v1.CheckService/Check"
nghttp -d "$CHECK_BODY" "${GRPC_HEADERS[@]}" "$CHECK_URL" >"$TMP/check-response.bin" \
  || die "nghttp Check request failed"
python3 "$HELPER" check-response "$TMP/check-response.bin" >/dev/null \
  || die "Check did not allow the minted token"

# ---------------------------------------------------------------- measure
RESULTS="$TMP/results.txt"
: >"$RESULTS"
run() { # run NAME SHAPE BODY URL HEADERS... -> "rps p50 p99 ok bad cut"
  local name=$1 shape=$2 body=$3 url=$4
  shift 4
  # shellcheck disable=SC2086 # SHAPE is a list of h2load flags
  h2load $shape -t 1 -D "$DURATION" --warm-up-time "$WARMUP" --log-file "$TMP/$name.log" \
    -d "$body" "$@" "$url" >"$TMP/$name.out" 2>&1 \
    || { cat "$TMP/$name.out" >&2; die "h2load $name failed"; }
  local stats
  stats=$(python3 "$HELPER" stats "$TMP/$name.out" "$TMP/$name.log") || die "cannot read $name"
  read -r _ _ _ _ bad _ <<<"$stats"
  ((bad == 0)) || { grep -E 'status codes' "$TMP/$name.out" >&2; die "$name: non-200 responses"; }
  printf '%s\n' "$stats"
}

declare -A MINT
for alg in RS256 ES256 EdDSA; do
  grpc latchkey.v1.TokenService/RotateSigningKey "{\"algorithm\":\"$alg\"}" "${AUTH[@]}" >/dev/null \
    || die "RotateSigningKey $alg failed"
  got=$(mint_once | cut -d. -f1 | tr '_-' '/+' | base64 -d 2>/dev/null | json_get 'd["alg"]') || true
  [[ "$got" == "$alg" ]] || die "after rotating to $alg the token says '$got'"
  log "issuance, $alg: h2load $MINT_SHAPE, ${WARMUP}s warm-up + ${DURATION}s"
  MINT[$alg]=$(run "mint-$alg" "$MINT_SHAPE" "$MINT_BODY" "$TOKEN_URL" "${MINT_HEADERS[@]}")
done

CHECK_SHAPE="-c 2 -m 1 --rps $CHECK_RPS"
log "Check alone: h2load $CHECK_SHAPE"
CHECK_ALONE=$(run check-alone "$CHECK_SHAPE" "$CHECK_BODY" "$CHECK_URL" "${GRPC_HEADERS[@]}")
log "Check while RS256 tokens are minted"
grpc latchkey.v1.TokenService/RotateSigningKey '{"algorithm":"RS256"}' "${AUTH[@]}" >/dev/null \
  || die "RotateSigningKey RS256 failed"
# shellcheck disable=SC2086
h2load $MINT_SHAPE -t 1 -D "$((DURATION + WARMUP + 2))" -d "$MINT_BODY" "${MINT_HEADERS[@]}" \
  "$TOKEN_URL" >"$TMP/mint-background.out" 2>&1 &
MINT_PID=$!
sleep 1
CHECK_LOADED=$(run check-loaded "$CHECK_SHAPE" "$CHECK_BODY" "$CHECK_URL" "${GRPC_HEADERS[@]}")
wait "$MINT_PID" || { cat "$TMP/mint-background.out" >&2; die "background minting failed"; }
grep -q '^status codes: [1-9][0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$TMP/mint-background.out" \
  || { grep 'status codes' "$TMP/mint-background.out" >&2; die "background minting: non-2xx responses"; }

# JWT Check throughput beside the same server's health floor (issue 10:
# JWT Check >= 0.80 of the floor), rounds interleaved.
HEALTH_BODY="$TMP/health.bin"
python3 "$HELPER" frame "$HEALTH_BODY"
HEALTH_URL="http://$GRPC_ADDR/grpc.health.v1.Health/Check"
JWT_SHAPE=${LATCHKEY_BENCH_JWT_SHAPE:--c 4 -m 16}
JWT_ROUNDS=${LATCHKEY_BENCH_ROUNDS:-3}
JWT_RATIOS=()
for round in $(seq 1 "$JWT_ROUNDS"); do
  log "JWT Check vs health floor, round $round of $JWT_ROUNDS: h2load $JWT_SHAPE"
  floor=$(run "floor-$round" "$JWT_SHAPE" "$HEALTH_BODY" "$HEALTH_URL" "${GRPC_HEADERS[@]}")
  jwt=$(run "jwt-$round" "$JWT_SHAPE" "$CHECK_BODY" "$CHECK_URL" "${GRPC_HEADERS[@]}")
  JWT_RATIOS+=("${floor%% *} ${jwt%% *}")
done

# ---------------------------------------------------------------- report
echo
echo "latchkey token benchmark: $PROFILE build, ${DURATION}s per run after ${WARMUP}s warm-up," \
  "h2load and server sharing $(nproc) cores"
python3 - "$MIN_SIGN_RATIO" "$MAX_CHECK_P99_RATIO" \
  "RS256 $LIMIT_RS256 ${MINT[RS256]}" "ES256 $LIMIT_ES256 ${MINT[ES256]}" \
  "EdDSA $LIMIT_EDDSA ${MINT[EdDSA]}" "$CHECK_ALONE" "$CHECK_LOADED" "$MIN_JWT_RATIO" \
  "${JWT_RATIOS[@]}" <<'PY'
import statistics, sys
min_ratio, max_p99 = float(sys.argv[1]), float(sys.argv[2])
min_jwt = float(sys.argv[8])
pairs = [tuple(map(float, a.split())) for a in sys.argv[9:]]
print(f"{'issuance':10} {'tokens/s':>9} {'p99':>9} {'openssl signs/s':>16} {'ratio':>6}")
rs_ratio = None
for row in sys.argv[3:6]:
    alg, limit, rps, _p50, p99, *_ = row.split()
    ratio = float(rps) / float(limit)
    if alg == "RS256":
        rs_ratio = ratio
    print(f"{alg:10} {float(rps):9.0f} {int(p99)/1000:7.2f}ms {float(limit):16.0f} {ratio:6.2f}")
alone = sys.argv[6].split()
loaded = sys.argv[7].split()
p99_ratio = int(loaded[2]) / int(alone[2])
print(f"Check p99 alone {int(alone[2])/1000:.2f}ms ({float(alone[0]):.0f} req/s), "
      f"while minting {int(loaded[2])/1000:.2f}ms ({float(loaded[0]):.0f} req/s): ratio {p99_ratio:.2f}")
ok1 = rs_ratio >= min_ratio
ok2 = p99_ratio <= max_p99
print(f"RS256 issuance / openssl limit: {rs_ratio:.2f} (target >= {min_ratio}) {'PASS' if ok1 else 'FAIL'}")
print(f"Check p99 while minting / alone: {p99_ratio:.2f} (target <= {max_p99}) {'PASS' if ok2 else 'FAIL'}")
jwt_ratios = [j / f for f, j in pairs if f]
jwt_ratio = statistics.median(jwt_ratios)
ok3 = jwt_ratio >= min_jwt
print(f"JWT Check req/s / health floor: {jwt_ratio:.2f} (target >= {min_jwt}) {'PASS' if ok3 else 'FAIL'}"
      f"   rounds: {' '.join(f'{r:.2f}' for r in jwt_ratios)}; floor {statistics.median(f for f, _ in pairs):.0f} req/s")
sys.exit(0 if ok1 and ok2 and ok3 else 2)
PY
