"""podipc-mq-peer in Python: a message-queue participant of the conformance
suite (test/conformance), with the same commands and output as the C peer
(clients/c/build/podipc-mq-peer) and the suite's message format
(docs/clients.md, podipc.suite). One line per event, flushed at once:

    send SOCKET QUEUE ID COUNT SIZE [PRIORITY]   -> "sent COUNT"
    consume SOCKET QUEUE COUNT PREFETCH MODE     -> "ready", "msg ID SEQ DELIVERIES"..., "done N"
        MODE: ack, nack (without requeue: dead-lettered) or hold (never settled)
        COUNT 0: until the first end marker (producer id 0xFFFFFFFF), which is
        settled and reported like any message
    on failure                                   -> "error CLASS: message", exit status 1

If $PODIPC_BROKER_UID is set, the broker socket's peer UID is checked.
Run it as ``python3 -m podipc.mqpeer COMMAND ...``.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from . import mq, suite
from .errors import (
    AlreadySettledError,
    BrokerInternalError,
    BrokerShutdownError,
    BrokerUnavailableError,
    ClosedError,
    ConnectionLostError,
    ImpostorError,
    InvalidArgumentError,
    MessageTooLargeError,
    PodipcError,
    ProtocolError,
    QueueDeletedError,
    QueueFullError,
    StaleDeliveryError,
    TooManyConnectionsError,
    TooManyConsumersError,
    TooManyPendingError,
    UnknownQueueError,
    UnsupportedVersionError,
    WaitTimeoutError,
)

TIMEOUT = 30.0  # a peer never waits longer than this for one event

# The CLASS of an "error CLASS: message" line (docs/clients.md, the same as
# the C peer's); the first match wins, so a subclass comes before its base.
# A send held past its timeout on a full queue (QueueTimeoutError, both a
# QueueFullError and a WaitTimeoutError) is "queue_full", as in C and Go.
CLASSES: list[tuple[type[BaseException], str]] = [
    (ImpostorError, "impostor"),
    (QueueFullError, "queue_full"),
    (UnknownQueueError, "not_found"),
    (MessageTooLargeError, "too_large"),
    (TooManyPendingError, "too_many_pending"),
    (TooManyConsumersError, "too_many_consumers"),
    (TooManyConnectionsError, "too_many_connections"),
    (QueueDeletedError, "queue_deleted"),
    (BrokerShutdownError, "shutdown"),
    (BrokerInternalError, "internal"),
    (UnsupportedVersionError, "version"),
    (ProtocolError, "protocol"),
    (StaleDeliveryError, "stale"),
    (AlreadySettledError, "already_settled"),
    (BrokerUnavailableError, "unavailable"),
    (WaitTimeoutError, "timeout"),
    (ConnectionLostError, "closed"),
    (ClosedError, "closed"),
    (InvalidArgumentError, "invalid"),
    (ValueError, "corrupt"),  # a message that fails its check (podipc.suite.check)
    (OSError, "system"),
]


def error_class(e: BaseException) -> str:
    for cls, name in CLASSES:
        if isinstance(e, cls):
            return name
    return "internal"


def _int(name: str, v: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise InvalidArgumentError(f"{name} {v!r} is not a number") from None


def _send(path: str, queue: str, ident: str, count: str, size: str, priority: str = "0") -> int:
    n, sz, pid, prio = _int("COUNT", count), _int("SIZE", size), _int("ID", ident), _int("PRIORITY", priority)
    if sz < 16:
        raise InvalidArgumentError(f"size {sz} < 16, the message header's")
    with mq.Client(path) as c:
        pending: list[mq.Confirmation] = []
        for seq in range(n):
            pending.append(c.send_async(queue, suite.make(pid, seq, sz), priority=prio, timeout=TIMEOUT))
            if len(pending) >= 4096:  # keep the memory of a long run bounded
                for cf in pending:
                    cf.wait(TIMEOUT)
                pending.clear()
        for cf in pending:
            cf.wait(TIMEOUT)
    print(f"sent {n}")
    return 0


def _consume(path: str, queue: str, count: str, prefetch: str, mode: str) -> int:
    n, pf = _int("COUNT", count), _int("PREFETCH", prefetch)
    if mode not in ("ack", "nack", "hold"):
        raise InvalidArgumentError(f"mode {mode!r}, not ack, nack or hold")
    with mq.Client(path) as c, c.consume(queue, prefetch=pf, timeout=TIMEOUT) as k:
        print("ready")
        got = 0
        while n == 0 or got < n:
            d = k.receive(TIMEOUT)
            ident, seq = suite.check(d.body)
            print(f"msg {ident} {seq} {d.deliveries}")
            got += 1
            if mode == "ack":
                d.ack()
            elif mode == "nack":
                d.nack(requeue=False)
            if n == 0 and ident == suite.END:
                break
        c.ping(TIMEOUT)  # every settlement has reached the broker
    print(f"done {got}")
    return 0


_COMMANDS: dict[str, tuple[Callable[..., int], range]] = {
    "send": (_send, range(5, 7)),
    "consume": (_consume, range(5, 6)),
}


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in _COMMANDS or len(argv) - 1 not in _COMMANDS[argv[0]][1]:
        print(
            "usage: python3 -m podipc.mqpeer send SOCKET QUEUE ID COUNT SIZE [PRIORITY] |\n"
            "       consume SOCKET QUEUE COUNT PREFETCH ack|nack|hold",
            file=sys.stderr,
        )
        return 2
    fn, _ = _COMMANDS[argv[0]]
    try:
        return fn(*argv[1:])
    except (PodipcError, ValueError, OSError) as e:
        print(f"error {error_class(e)}: {e}")
        return 1


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    sys.exit(main(sys.argv[1:]))
