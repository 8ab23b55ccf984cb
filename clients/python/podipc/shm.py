"""Shared-memory channels: the Python face of libpodipc (podipc.h).

A Channel is a handle on a channel file (normally created by the podipc
sidecar under $PODIPC_DIR/shm/NAME). Producers, consumers and subscribers
are opened from it. Each of them is for one thread at a time; open one per
thread. Every blocking call takes ``timeout``: None waits for ever, 0 never
waits (FullError / EmptyError), a positive number of seconds waits at most
that long (WaitTimeoutError). Blocking calls wake every 100 ms, so Ctrl-C
and other signal handlers run while a call waits.

Zero copy: ``Producer.reserve()`` lends the slot itself as a writable
memoryview, and ``Consumer.borrow()`` / ``Subscriber.borrow()`` lend the
message in place as a read-only memoryview, until the ``with`` block ends.
The view is released then; do not keep slices of it, or arrays made from it
(``numpy.frombuffer``), beyond the block: they would point at a slot that
the channel reuses.
"""

from __future__ import annotations

import ctypes
import enum
import os
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Iterator, Optional, Type, TypeVar, Union

from . import _lib
from .errors import (
    ClosedError,
    EmptyError,
    LappedError,
    NotHeldError,
    PodipcError,
    TooLargeError,
    WaitTimeoutError,
    from_code,
)

Buffer = Union[bytes, bytearray, memoryview]

_lib_ = _lib.lib
_P = TypeVar("_P", bound="_Peer")
_SLICE_NS = 100_000_000  # the longest a single C call waits, so signals are handled
_ERR_TIMEOUT = -11  # PODIPC_ERR_TIMEOUT


class Mode(enum.IntEnum):
    QUEUE = 1  # each message to exactly one consumer
    BROADCAST = 2  # every message to every subscriber


class Overflow(enum.IntEnum):
    BLOCK = 0  # a producer waits for room
    FAIL = 1  # a producer gets FullError
    OVERWRITE = 2  # broadcast only: slow subscribers are lapped


class Wait(enum.IntEnum):
    HYBRID = 0  # spin about 20 us, then sleep on a futex
    SPIN = 1  # busy-poll: lowest latency, one CPU per waiter
    BLOCK = 2  # sleep at once: no CPU while idle


DEFAULT_SLOT_SIZE = 4096
DEFAULT_SLOT_COUNT = 1024
DEFAULT_MAX_PEERS = 64


@dataclass(frozen=True)
class ChannelOptions:
    """A channel's shape, fixed at creation and stored in its header."""

    mode: Mode
    overflow: Overflow
    slot_size: int
    slot_count: int
    max_peers: int


@dataclass(frozen=True)
class Stats:
    """A snapshot of a channel's counters and peers (pkg/shm's Stats)."""

    mode: Mode
    overflow: Overflow
    capacity: int
    slot_size: int
    depth: int
    sent: int
    received: int
    lost: int
    redelivered: int
    abandoned: int
    reaped: int
    repaired: int
    producers: int
    consumers: int
    subscribers: int
    dead_peers: int


def _error(rc: int, context: str = "") -> PodipcError:
    msg = (_lib_.podipc_last_error() or b"").decode(errors="replace")
    return from_code(rc, f"{context}: {msg}" if context else msg, ctypes.get_errno())


def _check(rc: int, context: str = "") -> None:
    if rc != 0:
        raise _error(rc, context)


def channel_path(name: str, directory: Optional[str] = None) -> str:
    """The path of channel NAME in the pod's podipc directory ($PODIPC_DIR)."""
    if directory is None:
        directory = os.environ.get("PODIPC_DIR")
        if not directory:
            raise PodipcError(
                "podipc: PODIPC_DIR is not set (it names the pod's podipc directory; the injector sets it)"
            )
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"podipc: {name!r} is not a channel name")
    return os.path.join(directory, "shm", name)


class _Deadline:
    """Splits a timeout into C calls of at most 100 ms each."""

    __slots__ = ("_end",)

    def __init__(self, timeout: Optional[float]) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError("podipc: timeout must be None (for ever), 0 (never wait) or positive seconds")
        self._end = None if timeout is None else time.monotonic_ns() + int(timeout * 1e9)
        if timeout == 0:
            self._end = 0

    def next_slice(self) -> int:
        """The timeout of the next C call in nanoseconds: 0 is try, else positive."""
        if self._end == 0:
            return 0
        if self._end is None:
            return _SLICE_NS
        left = self._end - time.monotonic_ns()
        return max(1, min(left, _SLICE_NS))

    def expired(self) -> bool:
        return self._end is not None and (self._end == 0 or time.monotonic_ns() >= self._end)


def _wait_loop(call: Callable[[int], Any], timeout: Optional[float]) -> int:
    """Runs call(timeout_ns) until it does not time out, or the timeout passes.

    The general case, for a positive timeout: the blocking calls handle None
    (slices of _SLICE_NS until the call does not time out) and 0 (one try)
    inline, without a deadline object or a closure per message."""
    deadline = _Deadline(timeout)
    while True:
        ns = deadline.next_slice()
        rc = int(call(ns))
        if rc != _ERR_TIMEOUT or deadline.expired():
            return rc


def _wait_call(fn: Callable[..., int], h: int, out1: object, out2: object, timeout: Optional[float]) -> int:
    """fn(h, timeout_ns, out1, out2) (reserve, borrow), waiting as timeout says:
    None in slices of _SLICE_NS until it does not time out, 0 once, and a
    positive timeout through _wait_loop."""
    if timeout is None:
        rc = fn(h, _SLICE_NS, out1, out2)
        while rc == _ERR_TIMEOUT:
            rc = fn(h, _SLICE_NS, out1, out2)
        return rc
    if timeout == 0:
        return fn(h, 0, out1, out2)
    return _wait_loop(lambda ns: fn(h, ns, out1, out2), timeout)


def _peer_options(wait: Wait, spin: Optional[float], liveness_check: Optional[float]) -> _lib.PeerOptions:
    return _lib.PeerOptions(
        int(wait),
        0 if spin is None else int(spin * 1e9),
        0 if liveness_check is None else int(liveness_check * 1e9),
    )


class Channel:
    """A handle on a channel file. Thread-safe; close() it (or use ``with``).

    The mapping stays while any producer, consumer or subscriber opened from
    it is open, so the channel may be closed before them.
    """

    def __init__(self, handle: int, path: str) -> None:
        self._h: Optional[int] = handle
        self.path = path

    @classmethod
    def open(cls, path: Union[str, os.PathLike[str]]) -> "Channel":
        """Opens a channel file, validating its header (NotChannelError, VersionError,
        CorruptError, TruncatedError, NotRegularError, or an OSError)."""
        h = ctypes.c_void_p()
        p = os.fspath(path)
        _check(_lib_.podipc_channel_open(os.fsencode(p), ctypes.byref(h)), p)
        return cls(h.value or 0, p)

    @classmethod
    def open_named(cls, name: str) -> "Channel":
        """Opens the pod's channel NAME (an IPCChannel), under $PODIPC_DIR/shm."""
        return cls.open(channel_path(name))

    @classmethod
    def create(
        cls,
        path: Union[str, os.PathLike[str]],
        mode: Mode = Mode.QUEUE,
        overflow: Overflow = Overflow.BLOCK,
        slot_size: int = DEFAULT_SLOT_SIZE,
        slot_count: int = DEFAULT_SLOT_COUNT,
        max_peers: int = DEFAULT_MAX_PEERS,
        perm: int = 0o666,
    ) -> "Channel":
        """Creates a channel file (which must not exist) and opens it. The
        sidecar creates a pod's channels; this is for tests and standalone use."""
        opts = _lib.ChannelOptions(int(mode), int(overflow), slot_size, slot_count, max_peers)
        h = ctypes.c_void_p()
        p = os.fspath(path)
        _check(_lib_.podipc_channel_create(os.fsencode(p), ctypes.byref(opts), perm, ctypes.byref(h)), p)
        return cls(h.value or 0, p)

    def _handle(self) -> int:
        if self._h is None:
            raise ClosedError(f"podipc: channel {self.path} is closed")
        return self._h

    @property
    def options(self) -> ChannelOptions:
        o = _lib.ChannelOptions()
        _lib_.podipc_channel_get_options(self._handle(), ctypes.byref(o))
        return ChannelOptions(Mode(o.mode), Overflow(o.overflow), o.slot_size, o.slot_count, o.max_peers)

    def stats(self) -> Stats:
        s = _lib.Stats()
        _check(_lib_.podipc_channel_stats(self._handle(), ctypes.byref(s)))
        return Stats(
            Mode(s.mode), Overflow(s.overflow), s.capacity, s.slot_size, s.depth, s.sent, s.received,
            s.lost, s.redelivered, s.abandoned, s.reaped, s.repaired, s.producers, s.consumers, s.subscribers,
            s.dead_peers,
        )  # fmt: skip

    def reap_dead_peers(self) -> int:
        """Recovers every registered peer whose process is gone; returns how many."""
        n = ctypes.c_uint()
        _check(_lib_.podipc_channel_reap_dead_peers(self._handle(), ctypes.byref(n)))
        return n.value

    def producer(self, wait: Wait = Wait.HYBRID, spin: Optional[float] = None,
                 liveness_check: Optional[float] = None) -> "Producer":  # fmt: skip
        """Opens a producer (one per broadcast channel: ProducerExistsError).
        wait says how a blocked call waits; spin is how long Wait.HYBRID spins
        (default 20 us) and liveness_check how often a blocked peer checks that
        the peer in its way is alive (default 50 ms), both in seconds."""
        return self._open_peer(Producer, wait, spin, liveness_check)

    def consumer(self, wait: Wait = Wait.HYBRID, spin: Optional[float] = None,
                 liveness_check: Optional[float] = None) -> "Consumer":  # fmt: skip
        """Opens a consumer (queue mode; WrongModeError otherwise). Options as producer()."""
        return self._open_peer(Consumer, wait, spin, liveness_check)

    def subscribe(self, wait: Wait = Wait.HYBRID, spin: Optional[float] = None,
                  liveness_check: Optional[float] = None) -> "Subscriber":  # fmt: skip
        """Opens a subscriber (broadcast mode): every message committed from now
        on, in order. Options as producer()."""
        return self._open_peer(Subscriber, wait, spin, liveness_check)

    def _open_peer(self, cls: Type[_P], wait: Wait, spin: Optional[float], liveness_check: Optional[float]) -> _P:
        h = ctypes.c_void_p()
        o = _peer_options(wait, spin, liveness_check)
        _check(cls._open_fn(self._handle(), ctypes.byref(o), ctypes.byref(h)))
        return cls(h.value or 0, self)

    def close(self) -> None:
        """Drops this handle; idempotent. Open peers keep the mapping."""
        h, self._h = self._h, None
        if h is not None:
            _lib_.podipc_channel_close(h)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_h", None) is not None:
            self.close()

    def __repr__(self) -> str:
        return f"<podipc.Channel {self.path!r}{' closed' if self._h is None else ''}>"


class _Peer:
    # libpodipc's functions for the kind of peer, set by each subclass
    _open_fn: Callable[..., int]
    _close_fn: Callable[[int], int]

    def __init__(self, handle: int, channel: Channel) -> None:
        self._h: Optional[int] = handle
        self.channel = channel
        self._lent: Optional[memoryview] = None
        # Out-parameters of the C calls, reused (a peer is for one thread at
        # a time): ctypes passes them by reference without a byref() each.
        self._out_ptr = ctypes.c_void_p()
        self._out_len = ctypes.c_size_t()

    def _handle(self) -> int:
        if self._h is None:
            raise ClosedError(f"podipc: {type(self).__name__.lower()} on {self.channel.path} is closed")
        return self._h

    def _unlend(self) -> None:
        mv, self._lent = self._lent, None
        if mv is not None:
            try:
                mv.release()
            except BufferError:
                pass  # an export (numpy array, ctypes buffer) outlives the block: documented misuse

    def close(self) -> None:
        """Unregisters (a held reservation is aborted, a borrowed message
        handed back for redelivery); idempotent."""
        h, self._h = self._h, None
        if h is not None:
            self._unlend()
            _check(type(self)._close_fn(h))

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_h", None) is not None:
            try:
                self.close()
            except PodipcError:
                pass


class Reservation:
    """A slot lent to a producer: write into ``buffer``, then commit(n) or abort().

    As a context manager, the block's end aborts it unless it was committed."""

    __slots__ = ("_producer", "buffer", "_done")

    def __init__(self, producer: "Producer", buffer: memoryview) -> None:
        self._producer = producer
        self.buffer = buffer
        self._done = False

    def commit(self, length: int) -> None:
        """Publishes the first length bytes of the slot as one message."""
        if self._done:
            raise NotHeldError("podipc: commit: the reservation was committed or aborted already")
        if not 0 <= length <= len(self.buffer):
            # Checked here, before the view goes: the slot stays reserved.
            raise TooLargeError(f"podipc: commit: {length} bytes do not fit the slot's {len(self.buffer)}")
        self._done = True
        self._producer._unlend()
        _check(_lib_.podipc_producer_commit(self._producer._handle(), length))

    def abort(self) -> None:
        """Gives the slot up unsent (consumers skip it)."""
        if self._done:
            raise NotHeldError("podipc: abort: the reservation was committed or aborted already")
        self._done = True
        self._producer._unlend()
        _check(_lib_.podipc_producer_abort(self._producer._handle()))

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:  # fmt: skip
        if not self._done and self._producer._h is not None:
            self.abort()


class Producer(_Peer):
    """Sends messages. One thread at a time; one producer per broadcast channel."""

    _open_fn = _lib_.podipc_producer_open
    _close_fn = _lib_.podipc_producer_close

    def send(self, message: Buffer, timeout: Optional[float] = None) -> None:
        """Copies message into the next slot and publishes it. A full ring waits
        (Overflow.BLOCK), raises FullError (Overflow.FAIL or timeout=0), or
        laps slow subscribers (Overflow.OVERWRITE)."""
        h = self._handle()
        ptr: object
        if isinstance(message, bytes):
            ptr, n = message, len(message)
        elif type(message) is bytearray:
            n = len(message)
            ptr = (ctypes.c_char * n).from_buffer(message)
        else:
            mv = memoryview(message).cast("B")
            n = mv.nbytes
            ptr = (ctypes.c_char * n).from_buffer(mv) if not mv.readonly else mv.tobytes()
        send = _lib_.podipc_producer_send
        if timeout is None:
            rc = send(h, ptr, n, _SLICE_NS)
            while rc == _ERR_TIMEOUT:
                rc = send(h, ptr, n, _SLICE_NS)
        elif timeout == 0:
            rc = send(h, ptr, n, 0)
        else:
            rc = _wait_loop(lambda ns: send(h, ptr, n, ns), timeout)
        if rc != 0:
            raise _error(rc)

    def reserve(self, timeout: Optional[float] = None) -> Reservation:
        """Claims the next slot and lends it as a writable memoryview of
        slot_size bytes (zero copy); see Reservation."""
        h = self._handle()
        buf, cap = self._out_ptr, self._out_len
        rc = _wait_call(_lib_.podipc_producer_reserve, h, buf, cap, timeout)
        if rc != 0:
            raise _error(rc)
        self._lent = _lib.view(buf.value or 0, cap.value, True)
        return Reservation(self, self._lent)


class Borrowed:
    """A message lent in place: ``with consumer.borrow() as view: ...``.
    ``view`` is a read-only memoryview of the message in the mapping, valid
    until the block ends (or release())."""

    __slots__ = ("_receiver", "view")

    def __init__(self, receiver: "_Receiver", view: memoryview) -> None:
        self._receiver = receiver
        self.view = view

    def release(self) -> None:
        """Hands the slot back. For a Subscriber under Overflow.OVERWRITE,
        LappedError here means the slot was overwritten while it was read:
        discard what was read."""
        r, self._receiver = self._receiver, None  # type: ignore[assignment]
        if r is None:
            raise NotHeldError("podipc: release: the message was released already")
        r._unlend()
        rc = r._release(r._handle())
        if rc != 0:
            raise r._receive_error(rc)  # a Subscriber's LappedError carries .lost

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:  # fmt: skip
        if self._receiver is not None and self._receiver._h is not None:
            if exc_type is None:
                self.release()
            else:
                try:
                    self.release()
                except PodipcError:
                    pass  # the block's own exception is the one to report


class _Receiver(_Peer):
    _borrow: Callable[..., int]
    _release: Callable[[int], int]
    _recv: Callable[..., int]

    def __init__(self, handle: int, channel: Channel) -> None:
        super().__init__(handle, channel)
        self._buf: Optional[ctypes.Array[ctypes.c_char]] = None

    def borrow(self, timeout: Optional[float] = None) -> Borrowed:
        """Waits for the next message and lends it in place (zero copy); see Borrowed."""
        h = self._handle()
        data, n = self._out_ptr, self._out_len
        rc = _wait_call(self._borrow, h, data, n, timeout)
        if rc != 0:
            raise self._receive_error(rc)
        self._lent = _lib.view(data.value or 0, n.value, False)
        return Borrowed(self, self._lent)

    def recv_into(self, buffer: Union[bytearray, memoryview], timeout: Optional[float] = None) -> int:
        """Copies the next message into buffer and returns its length. A buffer
        too small raises TooLargeError (with .size) and keeps the message."""
        h = self._handle()
        if type(buffer) is bytearray:
            size = len(buffer)
            cbuf = (ctypes.c_char * size).from_buffer(buffer)
        else:
            mv = memoryview(buffer).cast("B")
            size = mv.nbytes
            cbuf = (ctypes.c_char * size).from_buffer(mv)
        n = self._out_len
        rc = self._recv_wait(h, cbuf, size, n, timeout)
        if rc != 0:
            err = self._receive_error(rc)
            if isinstance(err, TooLargeError):
                err.size = n.value
            raise err
        return n.value

    def recv(self, timeout: Optional[float] = None) -> bytes:
        """Returns a copy of the next message."""
        if self._buf is None:
            self._buf = ctypes.create_string_buffer(self.channel.options.slot_size)
        h = self._handle()
        n = self._out_len
        buf = self._buf
        rc = self._recv_wait(h, buf, len(buf), n, timeout)
        if rc != 0:
            raise self._receive_error(rc)
        return ctypes.string_at(buf, n.value)

    def _recv_wait(self, h: int, buf: object, size: int, n: ctypes.c_size_t, timeout: Optional[float]) -> int:
        """The receive call, waiting as timeout says (see _wait_call)."""
        recv = self._recv
        if timeout is None:
            rc = recv(h, buf, size, n, _SLICE_NS)
            while rc == _ERR_TIMEOUT:
                rc = recv(h, buf, size, n, _SLICE_NS)
            return rc
        if timeout == 0:
            return recv(h, buf, size, n, 0)
        return _wait_loop(lambda ns: recv(h, buf, size, n, ns), timeout)

    def _receive_error(self, rc: int) -> PodipcError:
        return _error(rc)

    def __iter__(self) -> Iterator[bytes]:
        """Yields copies of messages, waiting for ever."""
        while True:
            yield self.recv()


class Consumer(_Receiver):
    """Takes messages from a queue channel: each message goes to exactly one
    consumer. One thread at a time. A message borrowed by a process that dies
    goes to another consumer."""

    _open_fn = _lib_.podipc_consumer_open
    _close_fn = _lib_.podipc_consumer_close
    _borrow = _lib_.podipc_consumer_borrow
    _release = _lib_.podipc_consumer_release
    _recv = _lib_.podipc_consumer_recv


class Subscriber(_Receiver):
    """Reads every message of a broadcast channel in order. Under
    Overflow.OVERWRITE a slow subscriber gets LappedError (with .lost), and
    the next call goes on with the oldest message still in the ring."""

    _open_fn = _lib_.podipc_subscriber_open
    _close_fn = _lib_.podipc_subscriber_close
    _borrow = _lib_.podipc_subscriber_borrow
    _release = _lib_.podipc_subscriber_release
    _recv = _lib_.podipc_subscriber_recv

    @property
    def lost(self) -> int:
        """Messages lost in the last LappedError."""
        return int(_lib_.podipc_subscriber_lost(self._handle()))

    def _receive_error(self, rc: int) -> PodipcError:
        err = _error(rc)
        if isinstance(err, LappedError):
            err.lost = self.lost
        return err

