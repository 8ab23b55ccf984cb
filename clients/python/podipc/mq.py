"""podipc message queues: a client of the sidecar's broker in pure Python.

It speaks the broker's wire protocol (docs/mq-protocol.md) over the pod's
Unix socket with the standard library alone (no libpodipc)::

    from podipc import mq

    with mq.Client() as c:                        # $PODIPC_MQ_SOCKET or $PODIPC_DIR/mq.sock
        c.send("jobs", b"work item", priority=5)  # waits for the broker's SEND_OK
        pending = [c.send_async("jobs", body) for body in bodies]
        for cf in pending:
            cf.wait(timeout=10)
        with c.consume("jobs", prefetch=128) as consumer:
            for d in consumer:                    # Delivery: d.body is bytes
                handle(d.body)
                d.ack()

Threads: a Client, its Consumers and Deliveries may be used from any number
of threads. Each connection has a reader thread, which parses what arrives
from one large buffer and dispatches it, and a writer thread, which sends the
frames that pipelined sends and acknowledgements queue meanwhile in one
write. Timeouts are seconds: None waits for ever.

Unless reconnect=None, a Client rides through a broker restart as the Go
client (pkg/mq) does: it dials again with backoff for a window, sends again
the requests the old broker had not answered, and re-attaches its
consumers; acknowledging a delivery of the lost connection raises
StaleDeliveryError (the broker redelivers it).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import random
import socket
import struct
import threading
import time
from typing import Callable, Iterator

from .errors import (
    AlreadySettledError,
    BrokerShutdownError,
    BrokerUnavailableError,
    ClosedError,
    ConnectionLostError,
    ImpostorError,
    InvalidArgumentError,
    MessageTooLargeError,
    MQError,
    PodipcError,
    ProtocolError,
    StaleDeliveryError,
    TooManyConsumersError,
    UnknownQueueError,
    UnsupportedVersionError,
    WaitTimeoutError,
    from_mq_code,
)

__all__ = [
    "Client",
    "Confirmation",
    "Consumer",
    "DEFAULT_PREFETCH",
    "Delivery",
    "Limits",
    "MAX_PRIORITY",
    "ReconnectPolicy",
    "Stats",
    "default_socket_path",
]

log = logging.getLogger("podipc.mq")

MAX_PRIORITY = 9
MAX_QUEUE_NAME = 255
DEFAULT_PREFETCH = 64
VERSION = 1
_MAGIC = b"PDMQ"

# Frame types.
_SEND, _CONSUME, _CANCEL, _ACK, _NACK, _CREDIT, _PING = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
_SEND_OK, _CONSUME_OK, _CANCEL_OK, _DELIVER = 0x81, 0x82, 0x83, 0x84
_ERROR, _CONSUMER_CLOSED, _PONG, _GOAWAY = 0x85, 0x86, 0x87, 0x88

_MODE_AT_LEAST_ONCE, _MODE_AT_MOST_ONCE = 1, 2
_MAX_ERROR_TEXT = 1024
_CODE_SHUTTING_DOWN, _CODE_UNKNOWN_QUEUE, _CODE_BAD_REQUEST = 7, 1, 6

_HELLO = struct.Struct("<4sHHI")
_WELCOME = struct.Struct("<4sHHIIIIII")
_HEADER = struct.Struct("<IB")
_LEN = struct.Struct("<I")
_SEND_HDR = struct.Struct("<IBIBBII")  # length, type, req, priority, queue_len, ttl_ms, timeout_ms
_CONSUME_HDR = struct.Struct("<IBIIIB")  # length, type, req, consumer, prefetch, queue_len
_U32X2 = struct.Struct("<IBII")  # CANCEL and CREDIT: length, type, u32, u32
_ACK_HDR = struct.Struct("<IBI")
_NACK_HDR = struct.Struct("<IBIB")
_PING_FRAME = struct.Struct("<IBQ")
_TAG = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_SEND_OK_P = struct.Struct("<IQ")
_CONSUME_OK_P = struct.Struct("<IBI")
_DELIVER_P = struct.Struct("<IQQqIB")
_ERROR_P = struct.Struct("<IH")
_GOAWAY_P = struct.Struct("<H")
_PONG_P = struct.Struct("<Q")

_READ_BUFFER = 256 << 10  # one recv takes up to this much, parsed as many frames
_WRITE_TIMEOUT = 30.0  # a broker that does not read for this long is given up
_MAX_MERGED_TAGS = 4096
_ANSWER_GRACE = 1.0  # how much longer than a send's timeout send() waits for the broker's verdict
_RETRY_DELAY = 0.1  # before sending again a request answered "unknown queue" after a reconnection


def default_socket_path() -> str:
    """The broker's socket: $PODIPC_MQ_SOCKET, else mq.sock in $PODIPC_DIR."""
    p = os.environ.get("PODIPC_MQ_SOCKET")
    if p:
        return p
    d = os.environ.get("PODIPC_DIR")
    if d:
        return os.path.join(d, "mq.sock")
    raise InvalidArgumentError(
        "mq: no broker socket: pass path, or set PODIPC_MQ_SOCKET or PODIPC_DIR (the injector sets them)"
    )


def _broker_uid_from_env() -> int:
    v = os.environ.get("PODIPC_BROKER_UID", "")
    if not v:
        return -1
    if not v.isdigit() or int(v) >= 1 << 31:
        raise InvalidArgumentError(f"mq: PODIPC_BROKER_UID={v!r} is not a UID")
    return int(v)


@dataclasses.dataclass(frozen=True)
class Limits:
    """The broker's limits for a connection, from its WELCOME."""

    version: int
    max_frame: int
    max_message: int
    max_pending_sends: int
    max_pending_bytes: int
    max_prefetch: int
    max_consumers: int


@dataclasses.dataclass(frozen=True)
class ReconnectPolicy:
    """How a Client rides through the loss of its broker (a sidecar restart).

    window: how long the client tries to reach the broker after losing it;
    when it passes, the client closes (waiting calls raise
    ConnectionLostError). Attempts are min_backoff to max_backoff apart
    (doubling, with jitter). declare_wait: how long after a reconnection an
    "unknown queue" answer is taken to mean the restarted broker has not
    declared the queue yet, and the request is tried again. The defaults are
    the Go client's."""

    window: float = 60.0
    min_backoff: float = 0.05
    max_backoff: float = 2.0
    declare_wait: float = 5.0

    def __post_init__(self) -> None:
        if self.window <= 0 or self.min_backoff <= 0 or self.max_backoff < self.min_backoff or self.declare_wait < 0:
            raise InvalidArgumentError(f"mq: invalid reconnect policy {self}")


@dataclasses.dataclass(frozen=True)
class Stats:
    """A client's connection counters."""

    connected: bool
    disconnects: int
    reconnects: int
    resent: int
    stale_dropped: int


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0 or math.isnan(timeout):
        raise InvalidArgumentError(f"mq: timeout {timeout} < 0")
    return time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _timeout_ms(deadline: float | None) -> tuple[int, bool]:
    """The wire's send timeout for deadline (0: none), rounded up; False if it passed."""
    if deadline is None:
        return 0, True
    left = deadline - time.monotonic()
    if left <= 0:
        return 0, False
    return min(max(math.ceil(left * 1000), 1), (1 << 32) - 1), True


def _check_queue(queue: str) -> bytes:
    qb = queue.encode()
    if not 1 <= len(qb) <= MAX_QUEUE_NAME:
        raise InvalidArgumentError(f"mq: queue name of {len(qb)} bytes, not 1..{MAX_QUEUE_NAME}")
    return qb


class Confirmation:
    """The broker's answer to a request: for send_async, its SEND_OK or ERROR.

    wait(timeout) returns the message's id in its queue, or raises the
    broker's error (QueueFullError, UnknownQueueError, ...), WaitTimeoutError
    if the timeout passes first (the send stays in flight), or
    ConnectionLostError. May be waited for from any thread."""

    __slots__ = (
        "_client", "_done", "_error", "_id", "req", "_size", "_is_send", "_enc", "_resend",
        "_attach", "_then", "mode", "prefetch",
    )

    def __init__(self, client: Client, size: int = 0, is_send: bool = False) -> None:
        self._client = client
        self._done = False
        self._error: PodipcError | None = None
        self._id = 0
        self.req = 0
        self._size = size
        self._is_send = is_send
        # What a reconnection sends again: the frame for a request id.
        self._enc: Callable[[int], bytes | None] | None = None
        self._resend = False
        self._attach: Consumer | None = None
        self._then: Callable[[Confirmation], None] | None = None
        self.mode = 0
        self.prefetch = 0

    def done(self) -> bool:
        """Whether the broker has answered (or the client closed)."""
        return self._done

    def wait(self, timeout: float | None = None) -> int:
        if not self._done:
            self._client._wait_for(lambda: self._done, _deadline(timeout), "the broker's answer")
        if self._error is not None:
            raise self._error
        return self._id

    @property
    def id(self) -> int:
        """The message's id once answered without error (waits for the answer)."""
        return self.wait()


class Delivery:
    """A message handed to a consumer. body is bytes the application owns
    (copied out of the read buffer). ack() and nack() are pipelined: they
    return once the frame is queued on the connection; Client.ping() waits
    until the broker has applied them."""

    __slots__ = ("body", "id", "priority", "deliveries", "enqueued_at_ns", "_consumer", "_tag", "_gen", "_settled")

    def __init__(
        self, consumer: Consumer, tag: int, ident: int, enqueued_at_ns: int, deliveries: int, priority: int,
        body: bytes, gen: int,
    ) -> None:
        self.body = body
        self.id = ident
        self.priority = priority
        self.deliveries = deliveries
        self.enqueued_at_ns = enqueued_at_ns
        self._consumer = consumer
        self._tag = tag
        self._gen = gen
        self._settled = False

    @property
    def redelivered(self) -> bool:
        return self.deliveries > 1

    @property
    def enqueued_at(self) -> float:
        """When the broker queued the message, in seconds since the epoch."""
        return self.enqueued_at_ns / 1e9

    def ack(self) -> None:
        """Acknowledges the message: the broker forgets it. Nothing to do on an
        at-most-once queue."""
        self._settle(_ACK, False)

    def nack(self, *, requeue: bool) -> None:
        """Rejects the message: with requeue it goes back to the head of its
        priority (counting towards MaxRedeliveries), without it is
        dead-lettered (or discarded if the queue has no dead-letter queue)."""
        self._settle(_NACK, requeue)

    def _settle(self, kind: int, requeue: bool) -> None:
        k = self._consumer
        if k._at_most_once:
            return
        if self._settled:
            raise AlreadySettledError(f"mq: message {self.id} of queue {k.queue} is already settled")
        self._settled = True
        c = k._client
        with c._lock:
            if k._closed_by is not None:
                raise k._closed_by
            conn = c._conn
            if self._gen != conn.gen or not c._connected:
                raise StaleDeliveryError(
                    f"mq: message {self.id} of queue {k.queue} came on a connection lost since; "
                    "the broker redelivers it"
                )
            conn.settle(kind, k.id, requeue, self._tag)


class Consumer:
    """One consumer attached to a queue: an iterator of Deliveries and a
    context manager (leaving it cancels the consumer). Iteration ends when
    the consumer is closed by close(); a queue deleted by the broker raises
    QueueDeletedError once the deliveries already received are taken. May be
    shared between threads (each delivery goes to one receive call)."""

    def __init__(self, client: Client, cid: int, queue: str, qb: bytes, want_prefetch: int) -> None:
        self._client = client
        self.id = cid
        self.queue = queue
        self._qb = qb
        self._want_prefetch = want_prefetch
        self.prefetch = 0  # the broker's grant
        self._at_most_once = False
        self._ready: collections.deque[Delivery] = collections.deque()
        self._attached = False
        self._closed_by: PodipcError | None = None
        # Called, with the client's lock held, when a delivery arrives or the
        # consumer ends (podipc.aio wakes its event loop with it).
        self._on_ready: Callable[[], None] | None = None

    @property
    def at_most_once(self) -> bool:
        """Whether the queue delivers at most once (ack and nack then do nothing)."""
        return self._at_most_once

    def receive(self, timeout: float | None = None) -> Delivery:
        """The next delivery; WaitTimeoutError if none comes within timeout
        (0: only what has arrived already)."""
        c = self._client
        deadline = _deadline(timeout)
        while True:
            d = self._take()
            if d is not None:
                return d
            c._flush()  # acknowledgements free the broker to send more
            c._wait_for(lambda: bool(self._ready) or self._closed_by is not None, deadline, "a delivery")
            if not self._ready and self._closed_by is not None:
                raise self._closed_by from None

    def _take(self) -> Delivery | None:
        """The next delivery that has arrived, or None; never waits. Drops those
        of a lost connection, and grants an at-most-once queue credit for one."""
        c = self._client
        while True:
            try:
                d = self._ready.popleft()
            except IndexError:
                return None
            if self._at_most_once:
                with c._lock:
                    if c._connected and self._closed_by is None:
                        c._conn.settle(_CREDIT, self.id, False, 0)
                return d
            if d._gen == c._conn.gen:
                return d
            c._stale_dropped += 1  # the broker redelivers it

    def __iter__(self) -> Iterator[Delivery]:
        return self

    def __next__(self) -> Delivery:
        try:
            return self.receive()
        except ClosedError as e:
            if isinstance(e, ConnectionLostError):
                raise
            raise StopIteration from None

    def close(self) -> None:
        """Detaches the consumer: the broker redelivers to others what this one
        has not acknowledged. Deliveries not yet received are dropped."""
        c = self._client
        with c._lock:
            active = c._consumers.get(self.id) is self
            if active:
                del c._consumers[self.id]
                if c._connected:
                    c._conn.append(_U32X2.pack(9, _CANCEL, 0, self.id), flush=False)
            self._finish(ClosedError(f"mq: consumer of {self.queue!r} closed"))
            self._ready.clear()
        if active:
            c._flush()

    def _finish(self, err: PodipcError) -> None:
        """With the client's lock held: the consumer ends with err."""
        if self._closed_by is None:
            self._closed_by = err
            self._client._cv.notify_all()
            if self._on_ready is not None:
                self._on_ready()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Conn:
    """One connection to the broker: its socket, limits, outgoing buffer and
    the threads serving it. The outgoing buffer is guarded by out_lock;
    frames are written in the order they were appended."""

    def __init__(self, client: Client, sock: socket.socket, limits: Limits, gen: int) -> None:
        self.client = client
        self.sock = sock
        self.limits = limits
        self.gen = gen
        self.out_lock = threading.Lock()
        self.out_cv = threading.Condition(self.out_lock)
        self.send_lock = threading.Lock()  # one write at a time, in order
        self.outbox = bytearray()
        self.writer_busy = False
        self.dead = False
        # The last frame in outbox, if settlements can be merged into it.
        self.mark = -1
        self.last: tuple[int, int, bool] = (0, 0, False)
        self.last_count = 0
        self.max_tags = min(_MAX_MERGED_TAGS, (limits.max_frame - 6) // 8)
        self.reader = threading.Thread(target=client._read_loop, args=(self,), name="podipc-mq-reader", daemon=True)
        self.writer = threading.Thread(target=self._write_loop, name="podipc-mq-writer", daemon=True)

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def append(self, frame: bytes | bytearray, flush: bool) -> None:
        """Queues frame; wakes the writer thread unless the caller flushes."""
        with self.out_lock:
            if self.dead:
                return  # the next connection sends what matters again
            self.outbox += frame
            self.mark = -1
            if not flush:
                self._wake()

    def append_send(self, hdr: bytes, qb: bytes, body: bytes | memoryview) -> None:
        with self.out_lock:
            if self.dead:
                return
            out = self.outbox
            out += hdr
            out += qb
            out += body
            self.mark = -1

    def settle(self, kind: int, consumer: int, requeue: bool, tag: int) -> None:
        """Queues an ACK, NACK or CREDIT, merged into the previous frame when
        that is a settlement of the same kind and consumer."""
        with self.out_lock:
            if self.dead:
                return
            out = self.outbox
            if self.mark >= 0 and self.last == (kind, consumer, requeue) and self.last_count < self.max_tags:
                if kind == _CREDIT:
                    n = _U32.unpack_from(out, self.mark + 9)[0]
                    _U32.pack_into(out, self.mark + 9, n + 1)
                else:
                    out += _TAG.pack(tag)
                    _U32.pack_into(out, self.mark, len(out) - self.mark - 4)
                self.last_count += 1
                return  # the writer was woken for the frame already
            self.mark = len(out)
            self.last, self.last_count = (kind, consumer, requeue), 1
            if kind == _ACK:
                out += _ACK_HDR.pack(13, _ACK, consumer)
                out += _TAG.pack(tag)
            elif kind == _NACK:
                out += _NACK_HDR.pack(14, _NACK, consumer, 1 if requeue else 0)
                out += _TAG.pack(tag)
            else:
                out += _U32X2.pack(9, _CREDIT, consumer, 1)
            self._wake()

    def _wake(self) -> None:
        if not self.writer_busy:
            self.writer_busy = True
            self.out_cv.notify()

    def flush(self) -> None:
        """Writes what is queued, from the calling thread."""
        with self.send_lock:
            with self.out_lock:
                if not self.outbox or self.dead:
                    return
                data, self.outbox, self.mark = self.outbox, bytearray(), -1
            self._write(data)

    def _write(self, data: bytearray) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.client._connection_lost(self, ConnectionLostError(f"mq: write to the broker: {e}"))

    def _write_loop(self) -> None:
        while True:
            with self.out_lock:
                while not self.outbox and not self.dead:
                    self.writer_busy = False
                    self.out_cv.wait()
                if self.dead:
                    return
                self.writer_busy = True
            with self.send_lock:
                with self.out_lock:
                    data, self.outbox, self.mark = self.outbox, bytearray(), -1
                if data:
                    self._write(data)

    def kill(self) -> None:
        """Gives the connection up: nothing more is written, the threads end."""
        with self.out_lock:
            self.dead = True
            self.outbox = bytearray()
            self.out_cv.notify()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _dial(path: str, broker_uid: int, timeout: float | None) -> tuple[socket.socket, Limits]:
    """Connects to the broker at path, checks its UID and does the handshake."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise BrokerUnavailableError(f"mq: dial {path}: {e.strerror or e}") from e
        except socket.timeout as e:
            raise WaitTimeoutError(f"mq: dial {path}: timed out") from e
        if broker_uid >= 0:
            pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != broker_uid:
                raise ImpostorError(
                    f"mq: dial {path}: broker socket served by an impostor: pid {pid} as uid {uid}, "
                    f"the sidecar runs as uid {broker_uid}"
                )
        limits = _handshake(sock, path)
        sock.settimeout(None)
        # A broker that stops reading fails a write after this long (EAGAIN)
        # instead of blocking the writer for ever.
        sec = int(_WRITE_TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", sec, 0))
        return sock, limits
    except BaseException:
        sock.close()
        raise


def _handshake(sock: socket.socket, path: str) -> Limits:
    try:
        sock.sendall(_HELLO.pack(_MAGIC, VERSION, VERSION, 0))
        buf = bytearray()
        while len(buf) < _WELCOME.size:
            chunk = sock.recv(_WELCOME.size - len(buf))
            if not chunk:
                raise ConnectionLostError(f"mq: handshake with {path}: the broker closed the connection")
            buf += chunk
    except socket.timeout as e:
        raise WaitTimeoutError(f"mq: handshake with {path}: timed out") from e
    except OSError as e:
        raise ConnectionLostError(f"mq: handshake with {path}: {e}") from e
    magic, version, status, *rest = _WELCOME.unpack(buf)
    if magic != _MAGIC:
        raise ProtocolError(f"mq: handshake with {path}: bad WELCOME magic {bytes(magic)!r}")
    if status != 0:
        raise from_mq_code(status, "connection refused")
    if version != VERSION:
        raise UnsupportedVersionError(f"mq: handshake with {path}: broker chose version {version}", 12)
    limits = Limits(version, *rest)
    if limits.max_frame < _HEADER.size + 33 or limits.max_prefetch < 1:
        raise ProtocolError(f"mq: handshake with {path}: unusable limits {limits}")
    return limits


class Client:
    """A connection to the broker; a context manager. See the module's
    documentation for threading and reconnection.

    path: the broker's socket (default: default_socket_path()).
    broker_uid: refuse, with ImpostorError, a socket served by a process of
    another UID (checked with SO_PEERCRED on every connection); default
    $PODIPC_BROKER_UID if set; negative: no check.
    timeout: bounds the connection and handshake.
    reconnect: a ReconnectPolicy, or None to close on the first loss."""

    def __init__(
        self,
        path: str | None = None,
        *,
        broker_uid: int | None = None,
        timeout: float | None = 5.0,
        reconnect: ReconnectPolicy | None = ReconnectPolicy(),
    ) -> None:
        self.path = path if path is not None else default_socket_path()
        self._broker_uid = broker_uid if broker_uid is not None else _broker_uid_from_env()
        self._policy = reconnect
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._calls: dict[int, Confirmation] = {}
        self._next_req = 0
        self._consumers: dict[int, Consumer] = {}
        self._next_consumer = 0
        self._pending_sends = 0
        self._pending_bytes = 0
        self._window_waiters = 0
        self._waiters = 0
        self._error: PodipcError | None = None
        self._goaway: MQError | None = None
        self._connected = True
        self._resumed_at = 0.0
        self._retrying: set[Confirmation] = set()
        self._disconnects = self._reconnects = self._resent = self._stale_dropped = 0
        self._reconnector: threading.Thread | None = None
        sock, limits = _dial(self.path, self._broker_uid, timeout)
        self._conn = _Conn(self, sock, limits, 0)
        self._conn.start()

    # -- public API ---------------------------------------------------------

    @property
    def limits(self) -> Limits:
        """The current connection's WELCOME limits."""
        return self._conn.limits

    def stats(self) -> Stats:
        with self._lock:
            return Stats(
                self._connected and self._error is None, self._disconnects, self._reconnects, self._resent,
                self._stale_dropped,
            )

    def send(
        self, queue: str, body: bytes | bytearray | memoryview, priority: int = 0, ttl: float | None = None,
        timeout: float | None = None,
    ) -> int:
        """Sends body to queue and waits for the broker's confirmation; returns
        the message's id in its queue. timeout bounds the whole call: the wait
        for room in the send window and, on a full Block queue, how long the
        broker may hold the send (QueueTimeoutError)."""
        deadline = _deadline(timeout)
        cf = self._send_async(queue, body, priority, ttl, deadline)
        assert cf is not None
        # The broker answers a send it held to its timeout with QueueTimeoutError:
        # give that answer a moment to arrive.
        return cf.wait(None if deadline is None else max(0.0, deadline - time.monotonic()) + _ANSWER_GRACE)

    def send_async(
        self, queue: str, body: bytes | bytearray | memoryview, priority: int = 0, ttl: float | None = None,
        timeout: float | None = None,
    ) -> Confirmation:
        """Sends body to queue without waiting for its confirmation, so that many
        sends are in flight (pipelined, written in batches). It blocks only
        while the connection's send window (the broker's max_pending_sends and
        max_pending_bytes) is full; timeout bounds that wait and the broker's
        hold of a send to a full Block queue. The body is copied (kept for a
        resend after a reconnection)."""
        cf = self._send_async(queue, body, priority, ttl, _deadline(timeout))
        assert cf is not None
        return cf

    def ping(self, timeout: float | None = None) -> None:
        """A round trip to the broker. Because the broker handles a connection's
        frames in order, it also means every earlier ack and nack was applied."""
        cf = Confirmation(self)
        cf._enc = lambda req: _PING_FRAME.pack(9, _PING, req)
        self._call(cf, _deadline(timeout))

    def consume(self, queue: str, prefetch: int = DEFAULT_PREFETCH, timeout: float | None = None) -> Consumer:
        """Attaches a consumer to queue and waits for the broker's CONSUME_OK.
        prefetch bounds the deliveries sent ahead of acknowledgements
        (at-least-once) or of receive calls (at-most-once); the broker may
        lower it (Consumer.prefetch is its grant)."""
        qb = _check_queue(queue)
        if prefetch < 1:
            raise InvalidArgumentError(f"mq: prefetch {prefetch} < 1")
        deadline = _deadline(timeout)
        with self._lock:
            self._check_open()
            limits = self._conn.limits
            if len(self._consumers) >= limits.max_consumers:
                raise TooManyConsumersError(f"mq: the broker allows {limits.max_consumers} consumers per connection")
            while True:
                self._next_consumer = (self._next_consumer + 1) & 0xFFFFFFFF
                if self._next_consumer and self._next_consumer not in self._consumers:
                    break
            k = Consumer(self, self._next_consumer, queue, qb, min(prefetch, limits.max_prefetch))
            self._consumers[k.id] = k
        cf = Confirmation(self)
        cf._attach = k
        want = k._want_prefetch
        cf._enc = lambda req: _CONSUME_HDR.pack(14 + len(qb), _CONSUME, req, k.id, want, len(qb)) + qb
        try:
            self._call(cf, deadline)
        except BaseException:
            k.close()
            raise
        return k

    def close(self) -> None:
        """Flushes queued acknowledgements and closes the connection. Waiting
        calls raise ClosedError; the broker redelivers what was not acknowledged."""
        self._conn.flush()
        self._terminate(ClosedError("mq: client closed"))
        for t in (self._reconnector, self._conn.reader):
            if t is not None and t.ident is not None and t is not threading.current_thread():
                t.join()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error

    def _add_call(self, cf: Confirmation) -> int:
        """With the lock held: gives cf a request id and registers it."""
        while True:
            self._next_req = (self._next_req + 1) & 0xFFFFFFFF
            if self._next_req and self._next_req not in self._calls:
                break
        cf.req = self._next_req
        self._calls[cf.req] = cf
        return cf.req

    def _send_async(
        self, queue: str, body: bytes | bytearray | memoryview, priority: int, ttl: float | None,
        deadline: float | None, wait: bool = True,
    ) -> Confirmation | None:
        """Queues a send. Unless wait, it returns None instead of waiting for
        room in the send window, and leaves the writing to the writer thread
        (podipc.aio calls it so from its event loop, which must not block)."""
        qb = _check_queue(queue)
        if not 0 <= priority <= MAX_PRIORITY:
            raise InvalidArgumentError(f"mq: priority {priority} not in 0..{MAX_PRIORITY}")
        ttl_ms = 0
        if ttl is not None:
            if not 0 <= ttl * 1000 < 1 << 32:
                raise InvalidArgumentError(f"mq: TTL {ttl} s out of range")
            ttl_ms = max(1, round(ttl * 1000)) if ttl > 0 else 0
        if not isinstance(body, bytes):
            body = bytes(body)  # the caller may change its buffer; a resend needs the original
        size = len(body)
        limits = self._conn.limits
        if size > limits.max_message or _SEND_HDR.size + len(qb) + size - 4 > limits.max_frame:
            raise MessageTooLargeError(f"mq: a body of {size} bytes, the broker's limit is {limits.max_message}", 3)
        cf = Confirmation(self, size, True)
        kept = body

        def enc(req: int) -> bytes | None:
            timeout_ms, ok = _timeout_ms(deadline)
            if not ok:
                return None
            return _SEND_HDR.pack(15 + len(qb) + size, _SEND, req, priority, len(qb), ttl_ms, timeout_ms) + qb + kept

        cf._enc = enc
        with self._lock:
            while True:
                self._check_open()
                limits = self._conn.limits
                if self._pending_sends == 0 or (
                    self._pending_sends < limits.max_pending_sends
                    and self._pending_bytes + size <= limits.max_pending_bytes
                ):
                    break
                if not wait:
                    return None
                self._window_waiters += 1
                try:
                    self._wait_locked(deadline, "room in the send window")
                finally:
                    self._window_waiters -= 1
            timeout_ms, ok = _timeout_ms(deadline)
            if not ok:
                timeout_ms = 1  # the broker answers at once if the queue is full
            self._pending_sends += 1
            self._pending_bytes += size
            req = self._add_call(cf)
            pipelined = self._pending_sends > 1
            conn = self._conn
            if self._connected:
                conn.append_send(
                    _SEND_HDR.pack(15 + len(qb) + size, _SEND, req, priority, len(qb), ttl_ms, timeout_ms), qb, body
                )
        if pipelined or not wait:
            with conn.out_lock:
                conn._wake()  # the writer thread batches this frame with those that follow
        else:
            conn.flush()
        return cf

    def _call(self, cf: Confirmation, deadline: float | None) -> None:
        """Sends cf's request and waits for its answer."""
        enc = cf._enc
        assert enc is not None
        with self._lock:
            self._check_open()
            req = self._add_call(cf)
            conn = self._conn
            if self._connected:
                frame = enc(req)
                assert frame is not None
                conn.append(frame, flush=True)
        conn.flush()
        try:
            cf.wait(_left(deadline))
        except WaitTimeoutError:
            with self._lock:
                if self._calls.get(cf.req) is cf:
                    del self._calls[cf.req]
                self._retrying.discard(cf)
            raise

    def _flush(self) -> None:
        self._conn.flush()

    def _wait_for(self, ready: Callable[[], bool], deadline: float | None, what: str) -> None:
        with self._lock:
            while not ready():
                self._wait_locked(deadline, what)

    def _wait_locked(self, deadline: float | None, what: str) -> None:
        """With the lock held: waits once for a notification. Raises the
        client's error if it is closed, WaitTimeoutError at the deadline."""
        if self._error is not None:
            raise self._error
        left = _left(deadline)
        if left == 0:
            raise WaitTimeoutError(f"mq: timed out waiting for {what}")
        self._waiters += 1
        try:
            self._cv.wait(left)
        finally:
            self._waiters -= 1

    def _release_send(self, cf: Confirmation) -> None:
        """With the lock held: takes an answered send out of the window."""
        if cf._is_send:
            self._pending_sends -= 1
            self._pending_bytes -= cf._size

    # -- reading ------------------------------------------------------------

    def _read_loop(self, conn: _Conn) -> None:
        try:
            err = self._read_frames(conn)
        except PodipcError as e:
            err = e
        except Exception as e:  # a bug must not leave callers waiting for ever
            log.exception("podipc.mq reader failed")
            err = ConnectionLostError(f"mq: reader failed: {e!r}")
        self._connection_lost(conn, err)
        conn.kill()
        conn.sock.close()

    def _read_frames(self, conn: _Conn) -> PodipcError:
        """Reads and handles frames until the connection ends; returns why."""
        max_frame = conn.limits.max_frame
        buf = bytearray(_READ_BUFFER)
        view = memoryview(buf)
        start = end = 0
        sock = conn.sock
        unpack_len = _LEN.unpack_from
        while True:
            if end == len(buf):
                if start > 0:  # move the partial frame to the front
                    buf[: end - start] = buf[start:end]
                    end -= start
                    start = 0
                else:  # a frame larger than the buffer: grow with what has arrived
                    view.release()
                    need = _LEN.unpack_from(buf, 0)[0] + 4
                    buf.extend(bytes(min(need, 2 * len(buf)) - len(buf)))
                    view = memoryview(buf)
            try:
                n = sock.recv_into(view[end:])
            except OSError as e:
                return ConnectionLostError(f"mq: connection lost: {e}")
            if n == 0:
                if self._goaway is not None:
                    return self._goaway
                if start < end:
                    return ConnectionLostError("mq: connection lost inside a frame")
                return ConnectionLostError("mq: the broker closed the connection")
            end += n
            with self._lock:
                if conn.gen != self._conn.gen or self._error is not None:
                    return ConnectionLostError("mq: connection given up")
                woken = False
                while end - start >= 4:
                    length = unpack_len(buf, start)[0]
                    if length == 0 or length > max_frame:
                        return ProtocolError(f"mq: frame length {length}, limit {max_frame}")
                    if end - start < 4 + length:
                        break
                    self._handle(conn, buf[start + 4], view, start + 5, start + 4 + length)
                    woken = True
                    start += 4 + length
                if woken and self._waiters:
                    self._cv.notify_all()
            if start == end:
                start = end = 0
                if len(buf) > _READ_BUFFER:
                    view.release()
                    buf = bytearray(_READ_BUFFER)
                    view = memoryview(buf)

    def _handle(self, conn: _Conn, typ: int, buf: memoryview, p: int, e: int) -> None:
        """With the lock held: handles the frame of type typ whose payload is buf[p:e]."""
        n = e - p
        if typ == _DELIVER:
            if n < _DELIVER_P.size:
                raise ProtocolError(f"mq: DELIVER payload of {n} bytes")
            cid, tag, ident, enq, deliveries, prio = _DELIVER_P.unpack_from(buf, p)
            if deliveries == 0 or prio > MAX_PRIORITY:
                raise ProtocolError(f"mq: DELIVER deliveries {deliveries} priority {prio}")
            k = self._consumers.get(cid)
            if k is None:
                return  # cancelled locally; the broker requeues it
            if len(k._ready) >= 2 * max(k.prefetch, k._want_prefetch):
                raise ProtocolError(f"mq: the broker exceeded consumer {cid}'s prefetch {k.prefetch}")
            k._ready.append(Delivery(k, tag, ident, enq, deliveries, prio, bytes(buf[p + 33 : e]), conn.gen))
            if k._on_ready is not None:
                k._on_ready()
        elif typ == _SEND_OK:
            if n != _SEND_OK_P.size:
                raise ProtocolError(f"mq: SEND_OK payload of {n} bytes")
            req, ident = _SEND_OK_P.unpack_from(buf, p)
            cf = self._calls.pop(req, None)
            if cf is not None:
                cf._id = ident
                self._resolve(cf, None)
        elif typ == _ERROR:
            req, code, text = self._parse_error(buf, p, e, "ERROR")
            err = from_mq_code(code, text)
            cf = self._calls.pop(req, None)
            if cf is None:
                if req == 0:
                    log.error("podipc.mq: the broker reported a connection error: %s", err)
                return
            if not self._keep_for_resend(cf, err):
                self._resolve(cf, err)
        elif typ == _CONSUME_OK:
            if n != _CONSUME_OK_P.size:
                raise ProtocolError(f"mq: CONSUME_OK payload of {n} bytes")
            req, mode, prefetch = _CONSUME_OK_P.unpack_from(buf, p)
            if mode not in (_MODE_AT_LEAST_ONCE, _MODE_AT_MOST_ONCE) or prefetch == 0:
                raise ProtocolError(f"mq: CONSUME_OK mode {mode} prefetch {prefetch}")
            cf = self._calls.pop(req, None)
            if cf is not None:
                cf.mode, cf.prefetch = mode, prefetch
                k = cf._attach
                if k is not None and self._consumers.get(k.id) is k:
                    k._attached = True
                    k.prefetch = prefetch
                    k._at_most_once = mode == _MODE_AT_MOST_ONCE
                elif k is not None:  # closed meanwhile: detach it again
                    conn.append(_U32X2.pack(9, _CANCEL, 0, k.id), flush=False)
                self._resolve(cf, None)
        elif typ == _CANCEL_OK:
            if n != 4:
                raise ProtocolError(f"mq: CANCEL_OK payload of {n} bytes")
            cf = self._calls.pop(_U32.unpack_from(buf, p)[0], None)
            if cf is not None:
                self._resolve(cf, None)
        elif typ == _PONG:
            if n != 8:
                raise ProtocolError(f"mq: PONG payload of {n} bytes")
            token = _PONG_P.unpack_from(buf, p)[0]
            cf = self._calls.pop(token, None) if token < 1 << 32 else None
            if cf is not None:
                self._resolve(cf, None)
        elif typ == _CONSUMER_CLOSED:
            cid, code, text = self._parse_error(buf, p, e, "CONSUMER_CLOSED")
            k = self._consumers.pop(cid, None)
            if k is not None:
                k._finish(from_mq_code(code, text))
        elif typ == _GOAWAY:
            if not 2 <= n <= 2 + _MAX_ERROR_TEXT:
                raise ProtocolError(f"mq: GOAWAY payload of {n} bytes")
            code = _GOAWAY_P.unpack_from(buf, p)[0]
            text = bytes(buf[p + 2 : e]).decode(errors="replace")
            self._goaway = from_mq_code(code, text)
            log.info("podipc.mq: the broker is closing the connection: %s", self._goaway)
        else:
            raise ProtocolError(f"mq: unexpected frame type 0x{typ:02x}")

    @staticmethod
    def _parse_error(buf: memoryview, p: int, e: int, name: str) -> tuple[int, int, str]:
        n = e - p
        if not 6 <= n <= 6 + _MAX_ERROR_TEXT:
            raise ProtocolError(f"mq: {name} payload of {n} bytes")
        ident, code = _ERROR_P.unpack_from(buf, p)
        if code == 0:
            raise ProtocolError(f"mq: {name} with code 0")
        return ident, code, bytes(buf[p + 6 : e]).decode(errors="replace")

    def _resolve(self, cf: Confirmation, err: PodipcError | None) -> None:
        """With the lock held: records cf's answer (the waiters are notified
        by the caller)."""
        self._release_send(cf)
        cf._error = err
        cf._done = True
        then = cf._then
        if then is not None:
            then(cf)

    # -- losing and regaining the broker -------------------------------------

    def _terminate(self, err: PodipcError) -> None:
        with self._lock:
            if self._error is not None:
                return
            if self._goaway is not None and isinstance(err, ConnectionLostError):
                err = self._goaway
            self._error = err
            calls = list(self._calls.values()) + list(self._retrying)
            self._calls.clear()
            self._retrying.clear()
            for cf in calls:
                self._resolve(cf, err)
            for k in list(self._consumers.values()):
                k._finish(err)
            self._consumers.clear()
            self._cv.notify_all()
            conn = self._conn
        conn.kill()

    def _connection_lost(self, conn: _Conn, err: PodipcError) -> None:
        """conn failed with err (its reader or a writer found out): the client
        closes, or, if it reconnects, gives conn up and starts reconnecting."""
        with self._lock:
            handled = self._error is not None or conn is not self._conn or not self._connected
            fatal = not handled and (self._policy is None or isinstance(err, ProtocolError))
            if not handled and not fatal:
                if self._goaway is not None and err is not self._goaway:
                    err = ConnectionLostError(f"{err} ({self._goaway})")
                self._goaway = None
                self._connected = False
                self._disconnects += 1
                self._reconnector = threading.Thread(
                    target=self._reconnect, args=(conn, err), name="podipc-mq-reconnect", daemon=True
                )
                self._reconnector.start()
        if fatal:
            if isinstance(err, ProtocolError):
                log.error("podipc.mq: closing the connection: %s", err)
            self._terminate(err)
        conn.kill()

    def _reconnect(self, old: _Conn, cause: PodipcError) -> None:
        policy = self._policy
        assert policy is not None
        log.warning("podipc.mq: lost the broker at %s (%s); reconnecting for %.0f s", self.path, cause, policy.window)
        old.reader.join()
        give_up = time.monotonic() + policy.window
        backoff = policy.min_backoff
        attempt = 0
        while True:
            attempt += 1
            if self._error is not None:
                return
            try:
                sock, limits = _dial(self.path, self._broker_uid, min(5.0, max(0.01, give_up - time.monotonic())))
            except ImpostorError as e:
                self._terminate(e)
                return
            except PodipcError as e:
                last: PodipcError = e
            else:
                if self._resume(sock, limits):
                    log.info("podipc.mq: reconnected to the broker at %s after %d attempts", self.path, attempt)
                return
            wait = backoff / 2 + random.uniform(0, backoff / 2)
            if give_up - time.monotonic() < wait:
                self._terminate(
                    ConnectionLostError(
                        f"mq: no broker at {self.path} for {policy.window} s (lost: {cause}; last attempt: {last})"
                    )
                )
                return
            with self._lock:
                if self._error is None:
                    self._cv.wait(wait)  # close() notifies
            backoff = min(2 * backoff, policy.max_backoff)

    def _resume(self, sock: socket.socket, limits: Limits) -> bool:
        """Makes sock the connection: sends again, in their order, the requests
        left unanswered and re-attaches the consumers."""
        with self._lock:
            if self._error is not None:
                sock.close()
                return False
            conn = _Conn(self, sock, limits, self._conn.gen + 1)
            self._conn = conn
            self._connected = True
            self._reconnects += 1
            self._resumed_at = time.monotonic()
            pending = sorted(self._calls.values(), key=lambda cf: cf.req)
            self._calls.clear()
            out = bytearray()
            for cf in pending:
                assert cf._enc is not None
                frame = cf._enc(self._add_call(cf))
                if frame is None:
                    del self._calls[cf.req]
                    self._resolve(cf, WaitTimeoutError("mq: the send's timeout passed while reconnecting"))
                    continue
                out += frame
                self._resent += 1
            for k in sorted(self._consumers.values(), key=lambda k: k.id):
                if not k._attached:
                    continue  # its CONSUME is among the pending requests
                out += self._reattachment(k, limits)
            conn.append(out, flush=True)
            self._cv.notify_all()
        conn.start()
        conn.flush()
        return True

    def _reattachment(self, k: Consumer, limits: Limits) -> bytes:
        """With the lock held: the CONSUME that attaches k to a new connection.
        Unacknowledged deliveries of the lost connection are dropped (the
        broker redelivers them); at-most-once ones stay, and the prefetch asked
        for leaves room for them."""
        prefetch = min(k._want_prefetch, limits.max_prefetch)
        if k._at_most_once:
            prefetch = max(1, prefetch - len(k._ready))
        else:
            self._stale_dropped += len(k._ready)
            k._ready.clear()
        k._attached = False
        cf = Confirmation(self)
        cf._attach = k
        qb = k._qb

        def then(cf: Confirmation) -> None:
            if cf._error is not None and self._consumers.get(k.id) is k:
                del self._consumers[k.id]
                k._finish(cf._error)

        cf._then = then
        cf._enc = lambda req: _CONSUME_HDR.pack(14 + len(qb), _CONSUME, req, k.id, prefetch, len(qb)) + qb
        frame = cf._enc(self._add_call(cf))
        assert frame is not None
        return frame

    def _keep_for_resend(self, cf: Confirmation, err: MQError) -> bool:
        """With the lock held: whether a reconnection makes err moot, and if so
        keeps cf to send again: the broker shutting down (it is about to be
        restarted) or, shortly after a reconnection, a queue the restarted
        broker has not declared yet."""
        policy = self._policy
        if policy is None or cf._enc is None:
            return False
        if isinstance(err, BrokerShutdownError):
            self._add_call(cf)  # sent again on the next connection
            return True
        if (
            isinstance(err, UnknownQueueError)
            and self._resumed_at
            and time.monotonic() - self._resumed_at < policy.declare_wait
        ):
            self._retrying.add(cf)
            t = threading.Timer(_RETRY_DELAY, self._retry, args=(cf,))
            t.daemon = True
            t.start()
            return True
        return False

    def _retry(self, cf: Confirmation) -> None:
        with self._lock:
            if cf not in self._retrying:
                return  # closed, or the caller gave up
            self._retrying.discard(cf)
            req = self._add_call(cf)
            if not self._connected:
                return  # the next connection sends it
            assert cf._enc is not None
            frame = cf._enc(req)
            if frame is None:
                del self._calls[req]
                self._resolve(cf, WaitTimeoutError("mq: the send's timeout passed while its queue was being declared"))
                self._cv.notify_all()
                return
            conn = self._conn
            conn.append(frame, flush=True)
        conn.flush()

