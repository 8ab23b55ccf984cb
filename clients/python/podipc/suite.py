"""The conformance suite's message format (docs/clients.md), shared by the
shared-memory peer (podipc.peer) and the message-queue peer (podipc.mqpeer):

    bytes 0-3   producer id (0xFFFFFFFF: the end marker)
    bytes 4-7   sequence number, from 0 per producer
    bytes 8-11  CRC-32C of bytes 16..len
    bytes 12-15 zero
    bytes 16..  payload: byte k is (id*31 + seq*7 + k) mod 256
"""

from __future__ import annotations

import functools
import struct

END = 0xFFFFFFFF
HEADER = struct.Struct("<IIII")


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


_CRC_TABLE = _crc_table()
_CYCLE = bytes(range(256)) * 2


def crc32c(data: bytes | memoryview) -> int:
    c = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in bytes(data):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def payload(ident: int, seq: int, size: int) -> bytes:
    """Bytes 16..size of message seq of producer ident."""
    return _payload((ident * 31 + seq * 7) & 0xFF, size)[0]


@functools.lru_cache(maxsize=1024)
def _payload(start: int, size: int) -> tuple[bytes, int]:
    # The payload depends on (id*31 + seq*7) mod 256 alone: 256 payloads
    # per size, each with its checksum computed once.
    out = bytearray()
    k = 16
    while k < size:
        first = (start + k) & 0xFF
        take = min(256, size - k)
        out += _CYCLE[first : first + take]
        k += take
    body = bytes(out)
    return body, crc32c(body)


def make(ident: int, seq: int, size: int) -> bytes:
    """Message seq of producer ident, size bytes (>= 16) long."""
    body, crc = _payload((ident * 31 + seq * 7) & 0xFF, size)
    return HEADER.pack(ident, seq, crc, 0) + body


def fill(buf: memoryview, ident: int, seq: int, size: int) -> None:
    """Writes message seq of producer ident into buf[:size]."""
    body, crc = _payload((ident * 31 + seq * 7) & 0xFF, size)
    buf[16:size] = body
    HEADER.pack_into(buf, 0, ident, seq, crc, 0)


def check(msg: memoryview | bytes) -> tuple[int, int]:
    """The message's producer id and sequence; ValueError if malformed."""
    if len(msg) < 16:
        raise ValueError(f"a message of {len(msg)} bytes, shorter than the 16-byte header")
    ident, seq, crc, _ = HEADER.unpack_from(msg, 0)
    if ident == END:
        return ident, seq
    body, want = _payload((ident * 31 + seq * 7) & 0xFF, len(msg))
    if crc != want or msg[16:] != body:
        raise ValueError(f"message {ident}/{seq} of {len(msg)} bytes is damaged")
    return ident, seq
