"""podipc-shm-peer in Python: a participant of the conformance suite
(test/conformance) with the same commands and output as the C peer
(clients/c/tools/shm_peer.c) and the same message format (docs/clients.md):

    bytes 0-3   producer id (0xFFFFFFFF: the end marker, one per consumer)
    bytes 4-7   sequence number, from 0 per producer
    bytes 8-11  CRC-32C of bytes 16..len
    bytes 12-15 zero
    bytes 16..  payload: byte k is (id*31 + seq*7 + k) mod 256

Run it as ``python3 -m podipc.peer COMMAND PATH ...``.
"""

from __future__ import annotations

import signal
import struct
import sys
from typing import Callable, Sequence

from . import shm
from .errors import (
    CorruptError,
    LappedError,
    NotChannelError,
    NotRegularError,
    PodipcError,
    TruncatedError,
    VersionError,
)

TIMEOUT = 30.0  # a peer never waits longer than this
END = 0xFFFFFFFF
_HEADER = struct.Struct("<IIII")


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
    out = bytearray()
    k = 16
    while k < size:
        start = (ident * 31 + seq * 7 + k) & 0xFF
        take = min(256, size - k)
        out += _CYCLE[start : start + take]
        k += take
    return bytes(out)


def fill(buf: memoryview, ident: int, seq: int, size: int) -> None:
    body = payload(ident, seq, size)
    buf[16:size] = body
    _HEADER.pack_into(buf, 0, ident, seq, crc32c(body), 0)


def check(msg: memoryview | bytes) -> tuple[int, int]:
    """The message's producer id and sequence; ValueError if malformed."""
    if len(msg) < 16:
        raise ValueError(f"a message of {len(msg)} bytes, shorter than the 16-byte header")
    ident, seq, crc, _ = _HEADER.unpack_from(msg, 0)
    if ident == END:
        return ident, seq
    body = bytes(msg[16:])
    if crc != crc32c(body) or body != payload(ident, seq, len(msg)):
        raise ValueError(f"message {ident}/{seq} of {len(msg)} bytes is damaged")
    return ident, seq


def _produce(path: str, ident: str, count: str, size: str) -> int:
    n, sz = int(count), int(size)
    with shm.Channel.open(path) as ch, ch.producer() as p:
        for seq in range(n):
            with p.reserve(timeout=TIMEOUT) as r:  # zero copy: written in place
                if not 16 <= sz <= len(r.buffer):
                    print(f"podipc-shm-peer: size {sz} outside [16, {len(r.buffer)}]", file=sys.stderr)
                    return 1
                fill(r.buffer, int(ident), seq, sz)
                r.commit(sz)
    print(f"sent {n}")
    return 0


def _end(path: str, n: str) -> int:
    with shm.Channel.open(path) as ch, ch.producer() as p:
        for _ in range(int(n)):
            p.send(_HEADER.pack(END, 0, 0, 0), timeout=TIMEOUT)
    return 0


def _consume(path: str) -> int:
    with shm.Channel.open(path) as ch, ch.consumer() as c:
        while True:
            with c.borrow(timeout=TIMEOUT) as view:
                ident, seq = check(view)
            if ident == END:
                return 0
            print(f"got {ident} {seq}")


def _subscribe(path: str, count: str, *wait: str) -> int:
    n = int(count)
    with shm.Channel.open(path) as ch, ch.subscribe() as s:
        print("ready", flush=True)
        if wait == ("wait",) and not sys.stdin.readline():
            return 1
        received = lost = 0
        last = -1
        while last + 1 < n:
            try:
                msg = s.recv(timeout=TIMEOUT)
            except LappedError as e:
                lost += e.lost
                last += e.lost
                continue
            ident, seq = check(msg)
            if ident != 0 or (last >= 0 and seq != last + 1):
                print(f"podipc-shm-peer: message {ident}/{seq} after {last}", file=sys.stderr)
                return 1
            last = seq
            received += 1
    print(f"received {received} lost {lost}")
    return 0


def _wait_to_be_killed() -> int:
    while True:
        signal.pause()


def _hold(path: str) -> int:
    ch = shm.Channel.open(path)
    c = ch.consumer()
    b = c.borrow(timeout=TIMEOUT)
    ident, seq = check(b.view)
    print(f"held {ident} {seq}", flush=True)
    return _wait_to_be_killed()


def _reserve(path: str) -> int:
    ch = shm.Channel.open(path)
    p = ch.producer()
    r = p.reserve(timeout=TIMEOUT)
    r.buffer[:] = b"\xab" * len(r.buffer)  # half-written garbage nobody may ever read
    print("reserved", flush=True)
    return _wait_to_be_killed()


_CLASSES: list[tuple[type[PodipcError], str]] = [
    (TruncatedError, "truncated"),  # before CorruptError, its base
    (NotChannelError, "not-channel"),
    (VersionError, "version"),
    (CorruptError, "corrupt"),
    (NotRegularError, "not-regular"),
]


def _validate(path: str) -> int:
    try:
        shm.Channel.open(path).close()
    except PodipcError as e:
        for cls, name in _CLASSES:
            if isinstance(e, cls):
                print(name)
                return 0
        raise
    print("ok")
    return 0


def _stats(path: str) -> int:
    with shm.Channel.open(path) as ch:
        st = ch.stats()
    print(
        f"sent {st.sent} received {st.received} lost {st.lost} redelivered {st.redelivered} "
        f"abandoned {st.abandoned} reaped {st.reaped} depth {st.depth} producers {st.producers} "
        f"consumers {st.consumers} subscribers {st.subscribers} dead {st.dead_peers}"
    )
    return 0


_COMMANDS: dict[str, tuple[Callable[..., int], range]] = {
    "produce": (_produce, range(4, 5)),
    "end": (_end, range(2, 3)),
    "consume": (_consume, range(1, 2)),
    "subscribe": (_subscribe, range(2, 4)),
    "hold": (_hold, range(1, 2)),
    "reserve": (_reserve, range(1, 2)),
    "validate": (_validate, range(1, 2)),
    "stats": (_stats, range(1, 2)),
}


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2 or argv[0] not in _COMMANDS or len(argv) - 1 not in _COMMANDS[argv[0]][1]:
        print(
            "usage: python3 -m podipc.peer produce PATH ID COUNT SIZE | end PATH N | consume PATH |\n"
            "       subscribe PATH COUNT [wait] | hold PATH | reserve PATH | validate PATH | stats PATH",
            file=sys.stderr,
        )
        return 2
    fn, _ = _COMMANDS[argv[0]]
    try:
        return fn(*argv[1:])
    except (PodipcError, ValueError, OSError) as e:
        print(f"podipc-shm-peer: {argv[0]}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    sys.exit(main(sys.argv[1:]))
