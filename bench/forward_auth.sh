#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): what forward auth adds behind
# nginx. The same client (h2load over HTTP/1.1) loads two nginx fronts of
# one app, both rendered from deploy/nginx/nginx.conf:
#
#   alone:        client → nginx → app
#   forward_auth: client → nginx → (auth_request → latchkey) → app
#
# The second differs from the first only by its `auth_request` line. The
# app is a second nginx answering 200 (echoing the principal header it
# received, which the checks below read), so neither front waits on a slow
# app. It prints p50/p99 at a moderate fixed rate, the latency forward auth
# adds, and the throughput ratio at saturation.
#
#   bench/forward_auth.sh
#
# Env knobs (see bench/README.md):
#   LATCHKEY_BENCH_PROFILE=release|debug        binary to build and load (release)
#   LATCHKEY_BENCH_BUILD=1|0                    run cargo build first (1)
#   LATCHKEY_BENCH_DURATION=10                  measured seconds per run (h2load -D)
#   LATCHKEY_BENCH_WARMUP=2                     warm-up seconds per run
#   LATCHKEY_BENCH_ROUNDS=3                     interleaved rounds
#   LATCHKEY_BENCH_LATENCY_SHAPE="-c 4 --rps 250"   the moderate load (1000 req/s)
#   LATCHKEY_BENCH_THROUGHPUT_SHAPE="-c 16"         saturation
#   LATCHKEY_BENCH_MAX_ADDED_P99_US=300         target: added p99 below this
#   LATCHKEY_BENCH_MIN_RPS_RATIO=0.5            target: throughput ratio at least this
#   LATCHKEY_BENCH_KEEP=0|1                     keep the temp dir
#   CARGO_TARGET_DIR                            default $HOME/.cache/latchkey-target
#
# Exit status: 0 both targets pass, 2 a target fails, 1 setup error or an
# invalid run (a response other than 200).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ROUNDS=${LATCHKEY_BENCH_ROUNDS:-3}
LATENCY_SHAPE=${LATCHKEY_BENCH_LATENCY_SHAPE:--c 4 --rps 250}
THROUGHPUT_SHAPE=${LATCHKEY_BENCH_THROUGHPUT_SHAPE:--c 16}
MAX_ADDED_P99_US=${LATCHKEY_BENCH_MAX_ADDED_P99_US:-300}
MIN_RPS_RATIO=${LATCHKEY_BENCH_MIN_RPS_RATIO:-0.5}

bench_setup
if ! command -v nginx >/dev/null; then
  log "installing nginx"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
NGINX=$(command -v nginx)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Forward auth on, flavor pinned, the public routes of nothing.
CONFIG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench-fa.XXXXXX")
printf '[forward_auth]\nflavor = "nginx"\ntrusted_proxies = ["127.0.0.1/32"]\n' >"$CONFIG_DIR/latchkey.toml"
export LATCHKEY_CONFIG="$CONFIG_DIR/latchkey.toml"
start_server --forward-auth-addr 127.0.0.1:0
unset LATCHKEY_CONFIG
FA_ADDR=$(sed -nE 's/^latchkey listening forward-auth=([^ ]+)$/\1/p' "$TMP/server.out" | head -n1)
[[ -n "$FA_ADDR" ]] || die "no 'latchkey listening forward-auth=' line"
mv "$CONFIG_DIR/latchkey.toml" "$TMP/" && rmdir "$CONFIG_DIR"
log "forward auth on $FA_ADDR"

# ---------------------------------------------------------------- setup
ACCOUNT_ID=$(grpc latchkey.v1.AccountService/CreateAccount \
  '{"name":"bench","plan":"PRIME"}' "${AUTH[@]}" | json_get 'd["id"]') || die "CreateAccount failed"
SECRET=$(grpc latchkey.v1.KeyService/CreateKey \
  "{\"accountId\":\"$ACCOUNT_ID\",\"mode\":\"MODE_TEST\",\"kind\":\"KEY_KIND_SECRET\",\"name\":\"bench\",\"scopes\":[\"$PERMISSION\"]}" \
  "${AUTH[@]}" | json_get 'd["secret"]') || die "CreateKey failed"
grpc latchkey.v1.RouteService/CreateRule \
  "{\"method\":\"GET\",\"path\":\"/v2/feedback/{id}\",\"permission\":\"$PERMISSION\"}" "${AUTH[@]}" >/dev/null \
  || die "CreateRule failed"

# The app: nginx answering 200 with the principal header it was given.
APP_PORT=$(free_port)
mkdir -p "$TMP/app"
cat >"$TMP/app/nginx.conf" <<EOF
worker_processes 1;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$APP_PORT;
        location / {
            add_header X-Seen-Account-Id "\$http_x_latchkey_account_id" always;
            return 200 "ok\n";
        }
    }
}
EOF

# The two fronts, from the example: worker_processes 1 each (the machine
# has two cores for everything), access log off, temp paths in TMP.
render_front() { # render_front NAME PORT KEEP_AUTH
  local dir="$TMP/$1" port=$2 keep_auth=$3
  mkdir -p "$dir"
  python3 - "$ROOT/deploy/nginx/nginx.conf" "$dir/nginx.conf" "$FA_ADDR" "127.0.0.1:$APP_PORT" "$port" "$dir" "$keep_auth" <<'PY'
import sys
src, dst, fa, app, port, d, keep = sys.argv[1:]
text = open(src).read()
subs = [
    ("worker_processes auto;", "worker_processes 1;"),
    ("http {\n", "http {\n    access_log off;\n" + "".join(
        f"    {k}_temp_path {d}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))),
    ("server 127.0.0.1:8081;", f"server {fa};"),
    ("server 127.0.0.1:3000;", f"server {app};"),
    ("listen 8000;", f"listen 127.0.0.1:{port};"),
]
if keep != "1":
    subs.append(("            auth_request /_latchkey;\n", ""))
for old, new in subs:
    if text.count(old) != 1:
        sys.exit(f"deploy/nginx/nginx.conf should contain {old!r} once")
    text = text.replace(old, new)
open(dst, "w").write(text)
PY
}
ALONE_PORT=$(free_port)
FA_PORT=$(free_port)
render_front alone "$ALONE_PORT" 0
render_front forward_auth "$FA_PORT" 1

NGINX_PIDS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
stop_nginx() {
  local pid
  for pid in "${NGINX_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
# The nginx processes go first, then lib.sh's cleanup (the server, TMP),
# which exits with the status the script ended with (errexit off: under
# set -e, the `(exit $rc)` that hands the status on would end the trap).
trap 'rc=$?; set +e; stop_nginx; (exit $rc); bench_cleanup' EXIT
start_nginx() { # start_nginx DIR PORT
  local dir=$1 port=$2
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
    -g "daemon off; pid $dir/nginx.pid; error_log $dir/error.log warn;" 2>>"$dir/error.log" &
  NGINX_PIDS+=($!)
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$dir/error.log" >&2
  die "nginx in $dir did not listen on $port"
}
start_nginx "$TMP/app" "$APP_PORT"
start_nginx "$TMP/alone" "$ALONE_PORT"
start_nginx "$TMP/forward_auth" "$FA_PORT"

PATH_Q="/v2/feedback/42"
ALONE_URL="http://127.0.0.1:$ALONE_PORT$PATH_Q"
FA_URL="http://127.0.0.1:$FA_PORT$PATH_Q"
REQ_HEADERS=(-H "authorization: Bearer $SECRET" -H "host: api.example")
# h2load --h1 sends its own Host from the URL and would add a `host:` given
# with -H as a second one, which nginx refuses with 400 and a closed
# connection (after which h2load --log-file never finishes): it takes the
# Host from `:authority`.
H2_HEADERS=(-H "authorization: Bearer $SECRET" -H ":authority: api.example")

# ---------------------------------------------------------------- checks
# Through forward auth the app sees the key's account; without the key the
# front refuses (so the auth_request line really is in the loaded path).
seen=$(curl -s -o /dev/null -w '%{http_code} ' -D - "${REQ_HEADERS[@]}" "$FA_URL" \
  | tr -d '\r' | awk 'tolower($1)=="x-seen-account-id:" {print $2}')
[[ "$seen" == "$ACCOUNT_ID" ]] || die "the app did not see the principal through forward auth (got '$seen')"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "host: api.example" "$FA_URL")
[[ "$code" == 401 ]] || die "without a key the forward-auth front answered $code, not 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "host: api.example" "$ALONE_URL")
[[ "$code" == 200 ]] || die "the front alone answered $code, not 200"
log "checks: forward auth passes the principal and refuses without a key; the front alone passes"

# ---------------------------------------------------------------- measure
RESULTS="$TMP/results.tsv"
: >"$RESULTS"
run_load() { # run_load SHAPE_NAME SHAPE TARGET URL ROUND
  local name=$1 shape=$2 target=$3 url=$4 round=$5
  local out="$TMP/$name-$target-$round.out" logf="$TMP/$name-$target-$round.log" stats
  log "h2load --h1 $shape $target: ${WARMUP}s warm-up + ${DURATION}s"
  # shellcheck disable=SC2086 # SHAPE is a list of h2load flags
  # A run that outlives its duration by a minute is a hang, not a result.
  timeout $((WARMUP + DURATION + 60)) h2load --h1 $shape -t 1 -D "$DURATION" --warm-up-time "$WARMUP" --log-file "$logf" \
    "${H2_HEADERS[@]}" "$url" >"$out" 2>&1 || { cat "$out" >&2; die "h2load failed"; }
  stats=$(python3 "$HELPER" stats "$out" "$logf") || die "cannot read the $target run"
  read -r rps p50 p99 ok bad cut <<<"$stats"
  [[ "$bad" == 0 ]] || die "$target ($name): $bad responses were not 200"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$target" "$round" "$rps" "$p50" "$p99" "$ok" >>"$RESULTS"
}
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  run_load latency "$LATENCY_SHAPE" alone "$ALONE_URL" "$round"
  run_load latency "$LATENCY_SHAPE" forward_auth "$FA_URL" "$round"
  run_load throughput "$THROUGHPUT_SHAPE" alone "$ALONE_URL" "$round"
  run_load throughput "$THROUGHPUT_SHAPE" forward_auth "$FA_URL" "$round"
done

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$MAX_ADDED_P99_US" "$MIN_RPS_RATIO" "$LATENCY_SHAPE" "$THROUGHPUT_SHAPE" <<'PY'
import statistics, sys
path, max_added, min_ratio, lat_shape, thr_shape = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
def med(shape, target, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == shape and r[1] == target)
a50, a99 = med("latency", "alone", 4), med("latency", "alone", 5)
f50, f99 = med("latency", "forward_auth", 4), med("latency", "forward_auth", 5)
ar, fr = med("throughput", "alone", 3), med("throughput", "forward_auth", 3)
rounds = len({r[2] for r in rows})
print(f"forward auth behind nginx, medians of {rounds} rounds (h2load --h1, nearest-rank percentiles)")
print(f"{'':<22}{'nginx alone':>14}{'with forward auth':>20}{'added':>10}")
print(f"{'p50 (' + lat_shape + ')':<22}{a50/1000:>11.3f} ms{f50/1000:>17.3f} ms{(f50-a50)/1000:>7.3f} ms")
print(f"{'p99 (' + lat_shape + ')':<22}{a99/1000:>11.3f} ms{f99/1000:>17.3f} ms{(f99-a99)/1000:>7.3f} ms")
print(f"{'req/s (' + thr_shape + ')':<22}{ar:>14.0f}{fr:>20.0f}   ratio {fr/ar:.2f}")
ok_lat = (f99 - a99) < max_added
ok_thr = fr / ar >= min_ratio
print(f"added p99 < {max_added/1000:.3f} ms: {'PASS' if ok_lat else 'FAIL'}; "
      f"throughput ratio >= {min_ratio}: {'PASS' if ok_thr else 'FAIL'}")
sys.exit(0 if ok_lat and ok_thr else 2)
PY
