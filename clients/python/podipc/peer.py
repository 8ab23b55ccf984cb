"""podipc-shm-peer in Python: a participant of the conformance suite
(test/conformance) with the same commands and output as the C peer
(clients/c/tools/shm_peer.c) and the same message format (docs/clients.md,
podipc.suite; the end marker is sent once per consumer).

Run it as ``python3 -m podipc.peer COMMAND PATH ...``.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable, Sequence

from . import shm, suite
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
END = suite.END
_HEADER = suite.HEADER
check = suite.check
fill = suite.fill


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
