#!/usr/bin/env python3
"""Helpers for bench/check.sh and bench/tokens.sh (Python standard library only).

Subcommands:

  frame OUT [N=STRING ...]
      Write a gRPC request frame to OUT: 1 byte compressed flag (0), 4 bytes
      big-endian length, then a protobuf message whose fields N are
      length-delimited strings. With no fields the message is empty and the
      frame is five zero bytes (e.g. grpc.health.v1.HealthCheckRequest{}).

  check-response FILE
      Decode a gRPC response body holding one latchkey.v1.CheckResponse,
      print it, and exit 0 only if allowed == true. Prints the frame's total
      size (bytes on the wire as DATA) as `frame_bytes=N` on the last line.

  h2load-summary FILE
      Print `done succeeded failed errored timeout s2xx data_bytes` parsed
      from an h2load stdout capture.

  report RUNS_TSV MIN_RPS_RATIO MAX_P99_RATIO [EXT_AUTHZ_MIN_RPS_RATIO]
      RUNS_TSV rows: label, shape, target, h2load stdout file, h2load
      --log-file. Validates every run (no failed/errored/timed-out streams,
      every logged response HTTP 200), prints the table and one ratio line
      per target. Exit 0 if all targets pass, 2 if a target fails, 1 if a
      run is invalid.

  ext-authz-response FILE
      As check-response, for one envoy.service.auth.v3.CheckResponse:
      exit 0 only if its status code is 0 and it carries an ok_response.

  stats H2LOAD_OUT LOG_FILE
      Print `rps p50_us p99_us ok bad cut` of one h2load run: its req/s and
      the latency percentiles of the HTTP 200 responses in its --log-file.
"""

import math
import statistics
import re
import sys


# --------------------------------------------------------------- protobuf

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_string_field(field, value):
    data = value.encode("utf-8")
    return varint((field << 3) | 2) + varint(len(data)) + data


def grpc_frame(message):
    return b"\x00" + len(message).to_bytes(4, "big") + message


def read_varint(buf, i):
    shift = 0
    n = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def parse_message(buf):
    """Return a list of (field, wire_type, value) for a protobuf message."""
    fields = []
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            ln, i = read_varint(buf, i)
            v, i = buf[i:i + ln], i + ln
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        fields.append((field, wt, v))
    return fields


REASONS = [
    "REASON_UNSPECIFIED", "REASON_ALLOWED", "REASON_CREDENTIAL_MISSING",
    "REASON_CREDENTIAL_MALFORMED", "REASON_CREDENTIAL_UNKNOWN",
    "REASON_KEY_REVOKED", "REASON_KEY_EXPIRED", "REASON_KEY_SUSPENDED",
    "REASON_KEY_ROTATED", "REASON_MODE_MISMATCH", "REASON_LIVE_MODE_INACTIVE",
    "REASON_IP_NOT_ALLOWED", "REASON_ORIGIN_NOT_ALLOWED",
    "REASON_PERMISSION_DENIED", "REASON_PLAN_NOT_ENTITLED",
    "REASON_RATE_LIMITED", "REASON_INTERNAL_ERROR",
]


def cmd_frame(args):
    out, specs = args[0], args[1:]
    msg = b""
    for spec in specs:
        num, _, value = spec.partition("=")
        msg += encode_string_field(int(num), value)
    with open(out, "wb") as f:
        f.write(grpc_frame(msg))
    return 0


def encode_message_field(num, payload):
    return varint((num << 3) | 2) + varint(len(payload)) + payload


def cmd_frame_ext_authz(args):
    """envoy.service.auth.v3.CheckRequest for `GET <path>` with a bearer key,
    from client 203.0.113.9, as Envoy would send it."""
    out, secret, path = args
    socket_address = encode_string_field(2, "203.0.113.9")
    peer = encode_message_field(1, encode_message_field(1, socket_address))
    header = encode_string_field(1, "authorization") + encode_string_field(2, f"Bearer {secret}")
    http = (encode_string_field(2, "GET") + encode_message_field(3, header)
            + encode_string_field(4, path) + encode_string_field(5, "api.example"))
    attributes = encode_message_field(1, peer) + encode_message_field(4, encode_message_field(2, http))
    with open(out, "wb") as f:
        f.write(grpc_frame(encode_message_field(1, attributes)))
    return 0


def cmd_check_response(args):
    with open(args[0], "rb") as f:
        body = f.read()
    if len(body) < 5:
        print(f"response body is {len(body)} bytes; no gRPC frame", file=sys.stderr)
        return 1
    if body[0] != 0:
        print("response frame is compressed; cannot decode", file=sys.stderr)
        return 1
    ln = int.from_bytes(body[1:5], "big")
    if len(body) != 5 + ln:
        print(f"response body is {len(body)} bytes, frame says {5 + ln}", file=sys.stderr)
        return 1
    allowed = False
    reason = 0
    message = ""
    for field, wt, v in parse_message(body[5:]):
        if field == 1 and wt == 0:
            allowed = bool(v)
        elif field == 2 and wt == 0:
            reason = v
        elif field == 4 and wt == 2:
            message = v.decode("utf-8", "replace")
    name = REASONS[reason] if reason < len(REASONS) else str(reason)
    print(f"allowed={str(allowed).lower()} reason={name} message={message!r}")
    print(f"frame_bytes={len(body)}")
    return 0 if allowed else 1


def read_frame(path):
    """The message bytes of a file holding one uncompressed gRPC frame."""
    with open(path, "rb") as f:
        body = f.read()
    if len(body) < 5 or body[0] != 0:
        raise ValueError(f"{path}: not one uncompressed gRPC frame")
    ln = int.from_bytes(body[1:5], "big")
    if len(body) != 5 + ln:
        raise ValueError(f"{path}: {len(body)} bytes, frame says {5 + ln}")
    return body[5:], len(body)


def cmd_ext_authz_response(args):
    """An envoy.service.auth.v3.CheckResponse: allowed = status.code 0 and
    ok_response (field 3) present."""
    try:
        message, size = read_frame(args[0])
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    code = 0
    ok = denied = False
    for field, wt, v in parse_message(message):
        if field == 1 and wt == 2:
            for f2, w2, v2 in parse_message(v):
                if f2 == 1 and w2 == 0:
                    code = v2
        elif field == 2 and wt == 2:
            denied = True
        elif field == 3 and wt == 2:
            ok = True
    allowed = code == 0 and ok and not denied
    print(f"allowed={str(allowed).lower()} status_code={code}")
    print(f"frame_bytes={size}")
    return 0 if allowed else 1


# ------------------------------------------------------------------ h2load

def h2load_summary(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    s = {}
    m = re.search(r"^finished in ([0-9.]+)(\w+), ([0-9.]+) req/s", text, re.M)
    if m:
        s["rps"] = float(m.group(3))
    m = re.search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    if m:
        (s["total"], s["started"], s["done"], s["succeeded"], s["failed"],
         s["errored"], s["timeout"]) = map(int, m.groups())
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if m:
        s["2xx"], s["3xx"], s["4xx"], s["5xx"] = map(int, m.groups())
    m = re.search(r"^traffic: .*? \((\d+)\) data", text, re.M)
    if m:
        s["data"] = int(m.group(1))
    return s


def cmd_h2load_summary(args):
    s = h2load_summary(args[0])
    keys = ["done", "succeeded", "failed", "errored", "timeout", "2xx", "data"]
    if not all(k in s for k in keys):
        print(f"cannot parse h2load output {args[0]}", file=sys.stderr)
        return 1
    print(" ".join(str(s[k]) for k in keys))
    return 0


def percentile(sorted_vals, p):
    """Nearest-rank percentile: the smallest value with at least p% of the
    samples at or below it."""
    rank = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[rank - 1]


def load_log(path):
    """h2load --log-file: tab-separated start time (us since epoch), HTTP
    status (-1 for a failed stream), response time (us)."""
    times = []
    bad = 0
    cut = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 3:
                continue
            if cols[1] in ("-1", "0"):
                # No status: a stream still in flight when -D ran out, which
                # h2load resets (-1) or logs before its headers arrived (0).
                cut += 1
                continue
            if cols[1] != "200":
                bad += 1
                continue
            times.append(int(cols[2]))
    times.sort()
    return times, bad, cut


# At most this many streams are in flight when a timed run ends (-c 4 -m 16);
# h2load resets them, so they show up as neither 2xx nor log rows.
MAX_IN_FLIGHT = 64


def cmd_report(args):
    runs_path, min_rps_ratio, max_p99_ratio = args[0], float(args[1]), float(args[2])
    ext_min_rps_ratio = float(args[3]) if len(args) > 3 else None
    rows = []
    errors = []
    with open(runs_path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            label, shape, target, out_path, log_path = line.rstrip("\n").split("\t")
            s = h2load_summary(out_path)
            times, bad, cut = load_log(log_path)
            name = f"{target} {shape}"
            if "rps" not in s or "done" not in s:
                errors.append(f"{name}: cannot parse h2load output")
                continue
            if s["done"] == 0 or not times:
                errors.append(f"{name}: no completed requests")
            if s["failed"] or s["errored"] or s["timeout"]:
                errors.append(f"{name}: {s['failed']} failed, {s['errored']} errored, "
                              f"{s['timeout']} timed out")
            if cut > MAX_IN_FLIGHT:
                errors.append(f"{name}: {cut} requests without a response status")
            if bad or abs(s["done"] - s.get("2xx", 0)) > MAX_IN_FLIGHT:
                errors.append(f"{name}: {s['done'] - s.get('2xx', 0)} non-2xx responses "
                              f"({bad} non-200 in the log)")
            if times and abs(s["done"] - len(times)) > MAX_IN_FLIGHT:
                errors.append(f"{name}: log has {len(times)} rows, h2load says "
                              f"{s['done']} done ({cut} cut off at the end)")
            if not times:
                continue
            rows.append({
                "label": label, "shape": shape, "target": target,
                "rps": s["rps"], "n": len(times),
                "mean": sum(times) / len(times),
                "p50": percentile(times, 50), "p90": percentile(times, 90),
                "p99": percentile(times, 99),
            })

    # Each scenario ran once per round; rounds interleave the targets, so slow
    # drift of the machine hits both alike. Report the median of every column.
    groups = {}
    for r in rows:
        groups.setdefault((r["label"], r["target"]), []).append(r)
    rounds = max((len(g) for g in groups.values()), default=0)
    shapes = {r["label"]: r["shape"] for r in rows}
    THROUGHPUT_LABEL = shapes.get("throughput", "")  # noqa: N806
    LATENCY_LABEL = shapes.get("latency", "")  # noqa: N806

    def med(group, col):
        return statistics.median(r[col] for r in group)

    summary = {
        key: {
            "label": g[0]["label"], "shape": g[0]["shape"], "target": g[0]["target"],
            "rps": med(g, "rps"), "n": sum(r["n"] for r in g), "mean": med(g, "mean"),
            "p50": med(g, "p50"), "p90": med(g, "p90"), "p99": med(g, "p99"),
        }
        for key, g in groups.items()
    }

    hdr = f"{'scenario':<28} {'req/s':>10} {'n':>9} {'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9}"
    print(hdr)
    print("-" * len(hdr))
    for r in summary.values():
        print(f"{r['target'] + ' ' * max(1, 7 - len(r['target'])) + r['shape']:<28} {r['rps']:>10.0f} {r['n']:>9} "
              f"{fmt_us(r['mean']):>9} {fmt_us(r['p50']):>9} {fmt_us(r['p90']):>9} "
              f"{fmt_us(r['p99']):>9}")
    print(f"(each column: median of {rounds} round(s); latencies: per-request response "
          "time from h2load --log-file, nearest-rank percentiles; verdicts: median of "
          "the per-round check/health ratios)")
    print()

    def round_ratios(label, col, target="check"):
        """target/health of each round: the two ran back to back, so each
        ratio compares like with like; the verdict is their median."""
        health, check = groups.get((label, "health"), []), groups.get((label, target), [])
        return [c[col] / h[col] for h, c in zip(health, check) if h[col]]

    verdicts = []

    def verdict(name, shape, what, ratios, target, at_least):
        """Prints one verdict line: the median of the per-round ratios against
        its target (a floor when `at_least`, else a ceiling)."""
        if not ratios or target is None:
            return
        ratio = statistics.median(ratios)
        ok = ratio >= target if at_least else ratio <= target
        verdicts.append(ok)
        print(f"{name:<10} ({shape}): {what} = {ratio:.3f}  "
              f"(target {'>=' if at_least else '<='} {target:.2f})  {'PASS' if ok else 'FAIL'}"
              f"   rounds: {' '.join(f'{r:.3f}' for r in ratios)}")

    verdict("throughput", THROUGHPUT_LABEL, "check req/s / health req/s",
            round_ratios("throughput", "rps"), min_rps_ratio, True)
    verdict("ext_authz", THROUGHPUT_LABEL, "ext_authz req/s / health req/s",
            round_ratios("throughput", "rps", "ext_authz"), ext_min_rps_ratio, True)
    verdict("latency", LATENCY_LABEL, "check p99 / health p99",
            round_ratios("latency", "p99"), max_p99_ratio, False)

    if errors:
        print()
        for e in errors:
            print(f"INVALID RUN: {e}", file=sys.stderr)
        return 1
    return 0 if verdicts and all(verdicts) else 2


def fmt_us(us):
    if us >= 10000:
        return f"{us / 1000:.1f}ms"
    if us >= 1000:
        return f"{us / 1000:.2f}ms"
    return f"{us:.0f}us"


def cmd_stats(args):
    """stats H2LOAD_OUT LOG_FILE: `rps p50_us p99_us ok bad cut` of one run."""
    s = h2load_summary(args[0])
    if "rps" not in s:
        print(f"cannot parse h2load output {args[0]}", file=sys.stderr)
        return 1
    times, bad, cut = load_log(args[1])
    if not times:
        print(f"no successful requests in {args[1]}", file=sys.stderr)
        return 1
    print(f"{s['rps']:.1f} {percentile(times, 50)} {percentile(times, 99)} {len(times)} {bad} {cut}")
    return 0


COMMANDS = {
    "frame": (cmd_frame, 1),
    "frame-ext-authz": (cmd_frame_ext_authz, 3),
    "check-response": (cmd_check_response, 1),
    "h2load-summary": (cmd_h2load_summary, 1),
    "report": (cmd_report, 3),
    "stats": (cmd_stats, 2),
    "ext-authz-response": (cmd_ext_authz_response, 1),
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 64
    fn, nargs = COMMANDS[argv[1]]
    if len(argv) - 2 < nargs:
        print(__doc__, file=sys.stderr)
        return 64
    return fn(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
