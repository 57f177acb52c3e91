# Shared by bench/scale.sh and bench/replicas.sh (sourced after bench/lib.sh):
# a fresh PostgreSQL database for the run, the load driver, bulk-loaded keys.
# shellcheck shell=bash

PG_ADMIN=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PSQL=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n1)
[[ -x "$PSQL" ]] || die "psql is needed (apt-get install postgresql-client)"
DRIVER="$CARGO_TARGET_DIR/${PROFILE}/examples/store_load"

# `url` with its database replaced by `name`.
with_database() { sed -E "s#^(postgres(ql)?://[^/]+)/[^?]*#\1/$2#" <<<"$1"; }

# Creates BENCH_DB and exports LATCHKEY_DATABASE_URL for every latchkey command.
bench_database() {
  BENCH_DB="lk_bench_$(date +%s)_$$"
  "$PSQL" "$PG_ADMIN" -qc "CREATE DATABASE $BENCH_DB" >/dev/null
  export LATCHKEY_DATABASE_URL
  LATCHKEY_DATABASE_URL=$(with_database "$PG_ADMIN" "$BENCH_DB")
  log "database $BENCH_DB on $(sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$PG_ADMIN")"
}

drop_bench_database() {
  [[ -n "${BENCH_DB:-}" ]] || return 0
  "$PSQL" "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
}

build_driver() {
  if [[ "$BUILD" == 1 ]]; then
    (cd "$ROOT" && cargo build "${CARGO_FLAGS[@]}" --example store_load)
  fi
  [[ -x "$DRIVER" ]] || die "no load driver at $DRIVER"
}

# bulk_keys N TEMPLATE_KEY_ID OUT: N more keys like the template key (same
# account, scopes, expiry), written straight into api_keys with COPY; their
# secrets (valid format and checksum, see src/crypto/keyfmt.rs) go to OUT.
bulk_keys() {
  local n=$1 template=$2 out=$3 hashes="$TMP/hashes.tsv"
  python3 - "$n" "$out" "$hashes" <<'PY'
import hashlib, secrets, sys, zlib
n, out, hashes = int(sys.argv[1]), sys.argv[2], sys.argv[3]
alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
with open(out, "w") as o, open(hashes, "w") as h:
    for i in range(n):
        signed = "lk_test_sk_" + "".join(secrets.choice(alphabet) for _ in range(30))
        value, check = zlib.crc32(signed.encode()), []
        for _ in range(6):
            check.append(alphabet[value % 62])
            value //= 62
        key = signed + "".join(reversed(check))
        o.write(key + "\n")
        h.write(f"{i}\t{hashlib.sha256(key.encode()).hexdigest()}\n")
PY
  "$PSQL" "$LATCHKEY_DATABASE_URL" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE bulk (i bigint, hash text);
\copy bulk FROM '$hashes'
INSERT INTO api_keys
SELECT (jsonb_populate_record(t, jsonb_build_object(
          'id', 'key_bulk_' || b.i, 'key_hash', b.hash, 'masked', 'lk_test_sk_…bulk'))).*
FROM bulk b, api_keys t WHERE t.id = '$template';
SQL
  # Measured as a table that has been there a while, not as one loaded a
  # second ago: VACUUM sets the rows' hint bits and visibility (else the
  # first read of every page writes it again), and the checkpoint writes out
  # what the load dirtied, so that neither lands inside the measurement.
  "$PSQL" "$LATCHKEY_DATABASE_URL" -q -v ON_ERROR_STOP=1 -c "VACUUM (ANALYZE) api_keys"
  "$PSQL" "$LATCHKEY_DATABASE_URL" -q -c "CHECKPOINT" 2>/dev/null \
    || log "CHECKPOINT refused (not a superuser): measuring with the load's dirty pages"
}
