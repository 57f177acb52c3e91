#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input with cargo-fuzz (libFuzzer, nightly
# toolchain), each target for a bounded time. Not part of CI (.ci/run).
#
#   bench/fuzz.sh                 every target, LATCHKEY_FUZZ_SECONDS each (default 60)
#   bench/fuzz.sh key_format ...  just these
#
# Targets (fuzz/fuzz_targets/): key_format, jwt_header, signature_header,
# signed_url, path_normalize, ext_authz_decode. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script; replay it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# The corpus grows in fuzz/corpus/<target>/ (not committed).
#
# Environment: LATCHKEY_FUZZ_SECONDS (per target), LATCHKEY_FUZZ_JOBS (libFuzzer
# workers, default 1), LATCHKEY_FUZZ_SANITIZER (none | address; default none:
# the crate forbids unsafe code, and without ASan the build is far cheaper),
# CARGO_TARGET_DIR (default fuzz/target). Builds in dev mode (--dev): the
# targets are cheap, and a cold release build of the crate takes many minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT/fuzz"

SECONDS_EACH=${LATCHKEY_FUZZ_SECONDS:-60}
JOBS=${LATCHKEY_FUZZ_JOBS:-1}
SANITIZER=${LATCHKEY_FUZZ_SANITIZER:-none}
ALL=(key_format jwt_header signature_header signed_url path_normalize ext_authz_decode)
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL[@]}")

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
  cargo install --locked cargo-fuzz
fi

# More than one worker: libFuzzer's -jobs mode (each worker logs to fuzz-N.log).
PARALLEL=()
[[ $JOBS -gt 1 ]] && PARALLEL=(-jobs="$JOBS" -workers="$JOBS")

failed=()
for t in "${TARGETS[@]}"; do
  echo "== $t: ${SECONDS_EACH}s" >&2
  mkdir -p "corpus/$t"
  if ! cargo +nightly fuzz run --dev -s "$SANITIZER" "$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" "${PARALLEL[@]}" \
      -max_len=4096 -timeout=10 -print_final_stats=1; then
    failed+=("$t")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#TARGETS[@]} targets, ${SECONDS_EACH}s each, no crash" >&2
