#!/usr/bin/env bash
# Benchmark (not a test; CI never runs it): the webhook delivery worker's
# throughput. One `latchkey serve` (release build) with
# `webhooks.allow_insecure_targets` on; the driver (bench/webhook_load.rs)
# runs a local HTTP receiver that verifies every Standard Webhooks
# signature, creates an endpoint for it in the server's database, enqueues
# LATCHKEY_BENCH_EVENTS events into the outbox and waits until the server
# has delivered them all. Prints deliveries/s from the first enqueue to the
# last delivery, against the target.
#
#   bench/webhooks.sh
#
# Env knobs (besides bench/lib.sh's LATCHKEY_BENCH_PROFILE, _BUILD, _KEEP):
#   LATCHKEY_BENCH_EVENTS=5000          events enqueued per round
#   LATCHKEY_BENCH_ROUNDS=3             rounds (a fresh server each); the median is reported
#   LATCHKEY_BENCH_STORE=sqlite         or postgres (DATABASE_URL: the server, default local)
#   LATCHKEY_BENCH_WEBHOOK_TARGET=500   deliveries/s
#
# Target (issue 16, item 8): the delivery worker sustains ≥ 500 deliveries/s
# to a local receiver. Exit status: 0 when met, 1 when missed, 2 when a
# round lost or duplicated an event or a signature did not verify.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

EVENTS=${LATCHKEY_BENCH_EVENTS:-5000}
ROUNDS=${LATCHKEY_BENCH_ROUNDS:-3}
STORE=${LATCHKEY_BENCH_STORE:-sqlite}
TARGET=${LATCHKEY_BENCH_WEBHOOK_TARGET:-500}
WEBHOOK_DRIVER="$CARGO_TARGET_DIR/${PROFILE}/examples/webhook_load"

if [[ "$BUILD" == 1 ]]; then
  log "cargo build ${CARGO_FLAGS[*]} --bin latchkey --example webhook_load (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build "${CARGO_FLAGS[@]}" --bin latchkey --example webhook_load)
fi
[[ -x "$BIN" ]] || die "no binary at $BIN"
[[ -x "$WEBHOOK_DRIVER" ]] || die "no driver at $WEBHOOK_DRIVER"

CONFIG=$(mktemp "${TMPDIR:-/tmp}/latchkey-webhooks.XXXXXX.toml")
printf '[webhooks]\nallow_insecure_targets = true\n' >"$CONFIG"
export LATCHKEY_CONFIG=$CONFIG

case "$STORE" in
  sqlite) ;;
  # shellcheck source=bench/lib-store.sh
  postgres) source "$ROOT/bench/lib-store.sh" ;;
  *) die "LATCHKEY_BENCH_STORE must be sqlite or postgres, not '$STORE'" ;;
esac

rates=()
lost=0
for round in $(seq 1 "$ROUNDS"); do
  if [[ "$STORE" == postgres ]]; then
    bench_database
  fi
  # A fresh server (and data dir) per round, in a subshell so that its EXIT
  # trap stops it before the next round.
  line=$(
    start_server
    "$WEBHOOK_DRIVER" "$TMP/data" "$EVENTS" 120 || true
  )
  if [[ "$STORE" == postgres ]]; then
    drop_bench_database
  fi
  log "round $round: $line"
  [[ "$line" == *"deliveries_per_s="* ]] || die "the driver printed no result"
  delivered=$(sed -E 's/.* delivered=([0-9]+).*/\1/' <<<"$line")
  dups=$(sed -E 's/.* duplicates=([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.* bad_signatures=([0-9]+).*/\1/' <<<"$line")
  if [[ "$delivered" != "$EVENTS" || "$dups" != 0 || "$bad" != 0 ]]; then
    lost=1
  fi
  rates+=("$(sed -E 's/.*deliveries_per_s=([0-9]+).*/\1/' <<<"$line")")
done
rm -f "$CONFIG"

median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
printf '\n%-28s %10s %10s  %s\n' "webhook deliveries" "per s" "target" "rounds (per s)"
printf '%-28s %10s %10s  %s\n' "$STORE, $EVENTS events" "$median" "≥ $TARGET" "${rates[*]}"
if [[ "$lost" == 1 ]]; then
  printf 'FAIL: a round lost or duplicated an event, or a signature did not verify\n'
  exit 2
fi
if (( median >= TARGET )); then
  printf 'PASS: %s deliveries/s ≥ %s\n' "$median" "$TARGET"
else
  printf 'MISS: %s deliveries/s < %s\n' "$median" "$TARGET"
  exit 1
fi
