"""pypeer: one side of podipc-bench's py-copy, py-zerocopy and py-mq jobs,
written against the podipc package (clients/python: ctypes over libpodipc
for the channels, pure Python for the message queues).

The benchmark creates the two Queue-mode channels (A to B, B to A) and runs
this script twice, side B first, then, once B has said it is ready, side A,
with the arguments and the output of the C client peer
(bench/cclient/peer.c): key=value arguments role=a|b kind=rtt|tput size= ab=
ba= warmup= samples= budget_ms= duration_ms= verify_every= cpu=
wait=spin|block|hybrid timeout_s=, plus api=copy|zerocopy; one JSON object a
line on stdout, {"ready": true}, then {"done": true, "messages": N, "nanos":
D, "samples_ns": [...]} or {"error": "..."} and exit status 1.

The loops are those of the Go harness (bench/internal/harness/loops.go): the
same stamps, checked on every message, and the same warm-up, budget and
duration rules. api=copy sends with Producer.send and receives with
Consumer.recv_into; api=zerocopy writes the message into a reserved slot
(Producer.reserve, commit) and checks it in place in a borrowed memoryview
(Consumer.borrow, release). The receiver of a stream compares the payload with
the pattern on one message in verify_every.

api=mq talks through a broker instead (podipc.mq, at least once, as the Go
harness's mq-atleastonce transport does): ab= and ba= then name the two
queues, socket= the broker's socket, prefetch= the consumer's prefetch and
window= how many sends a streaming side keeps in flight. Every send is
confirmed: a side waits for its sends' confirmations before it receives, and
a streaming side waits for the oldest once window are in flight. Each
delivery is acknowledged once it has been checked.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import struct
import sys
import time
from collections import deque
from typing import Optional, Union

import podipc
from podipc import mq

FLAG_LAST = 1
HEADER = struct.Struct("<QII")  # seq, size, flags
TRAILER = struct.Struct("<Q")  # seq
MIN_SIZE = HEADER.size + TRAILER.size

WAITS = {"spin": podipc.Wait.SPIN, "block": podipc.Wait.BLOCK, "hybrid": podipc.Wait.HYBRID}


class PeerError(Exception):
    """A failure this side reports as {"error": ...}."""


class Params:
    def __init__(self, argv: list[str]) -> None:
        strs = {"role": "", "kind": "", "ab": "", "ba": "", "wait": "spin", "api": "copy", "socket": ""}
        ints = {"size": 0, "warmup": 100, "samples": 1000, "budget_ms": 0, "duration_ms": 1000,
                "verify_every": 1024, "cpu": -1, "timeout_s": 600, "prefetch": 1024, "window": 2048}  # fmt: skip
        for arg in argv:
            key, eq, val = arg.partition("=")
            if not eq:
                raise PeerError(f"argument {arg} is not key=value")
            if key in strs:
                strs[key] = val
            elif key in ints:
                try:
                    ints[key] = int(val)
                except ValueError:
                    raise PeerError(f"bad value for {key}: {val}") from None
            else:
                raise PeerError(f"unknown argument {key}")
        self.role, self.kind, self.ab, self.ba = strs["role"], strs["kind"], strs["ab"], strs["ba"]
        self.api, self.socket = strs["api"], strs["socket"]
        self.prefetch, self.window = ints["prefetch"], ints["window"]
        if strs["wait"] not in WAITS:
            raise PeerError(f"unknown wait {strs['wait']}")
        self.wait = WAITS[strs["wait"]]
        self.size, self.warmup, self.samples = ints["size"], ints["warmup"], ints["samples"]
        self.budget_ns = ints["budget_ms"] * 1_000_000
        self.duration_ns = ints["duration_ms"] * 1_000_000
        self.verify_every = max(ints["verify_every"], 1)
        self.cpu, self.timeout_s = ints["cpu"], ints["timeout_s"]
        if (not self.ab or not self.ba or self.role not in ("a", "b") or self.api not in ("copy", "zerocopy", "mq")
                or self.size < MIN_SIZE or self.samples < 1 or self.warmup < 1 or self.duration_ns < 1):  # fmt: skip
            raise PeerError(
                f"need ab=, ba=, role=a|b, api=copy|zerocopy|mq, size>={MIN_SIZE}, samples>=1, warmup>=1, "
                "duration_ms>=1"
            )
        if self.api == "mq" and (not self.socket or self.prefetch < 1 or self.window < 1):
            raise PeerError("api=mq needs socket=, prefetch>=1 and window>=1")


def new_message(size: int) -> bytearray:
    """A size-byte buffer holding the harness's payload pattern (period 256)."""
    block = bytes((i * 131 + 7) & 0xFF for i in range(256))
    return bytearray((block * (size // 256 + 1))[:size])


def stamp(msg: bytearray, size: int, seq: int, flags: int) -> None:
    HEADER.pack_into(msg, 0, seq, size, flags)
    TRAILER.pack_into(msg, size - TRAILER.size, seq)


class Side:
    """One side's connection, with the Conn interface of the Go harness:
    send, recv (a view valid until release), release; and the stamp check."""

    size: int

    def send(self, msg: Union[bytearray, memoryview]) -> None:
        raise NotImplementedError

    def recv(self) -> memoryview:
        """The next message, valid until release."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def check(self, view: memoryview, seq: int) -> None:
        """Raises PeerError unless view carries the stamps of message seq."""
        if len(view) != self.size:
            raise PeerError(f"corrupt message: message {seq} has {len(view)} bytes, want {self.size}")
        head, n, _ = HEADER.unpack_from(view, 0)
        (tail,) = TRAILER.unpack_from(view, self.size - TRAILER.size)
        if head != seq or tail != seq or n != self.size:
            raise PeerError(
                f"corrupt message: want message {seq} of {self.size} bytes, "
                f"got header seq {head} size {n}, trailer seq {tail}"
            )


class ShmSide(Side):
    """The producer and consumer of one side on the two channels."""

    def __init__(self, p: Params) -> None:
        self.size = p.size
        self.zerocopy = p.api == "zerocopy"
        self._chans = [podipc.Channel.open(p.ab), podipc.Channel.open(p.ba)]
        out, inp = self._chans if p.role == "a" else reversed(self._chans)
        self.producer = out.producer(wait=p.wait)
        self.consumer = inp.consumer(wait=p.wait)
        self._buf = bytearray(p.size)
        self._view = memoryview(self._buf)
        self._held: Optional[podipc.Borrowed] = None

    def send(self, msg: Union[bytearray, memoryview]) -> None:
        if not self.zerocopy:
            self.producer.send(msg)
            return
        r = self.producer.reserve()
        # Writing the message into the slot stands for producing it in place.
        r.buffer[: self.size] = msg
        r.commit(self.size)

    def recv(self) -> memoryview:
        if self.zerocopy:
            self._held = self.consumer.borrow()
            return self._held.view
        n = self.consumer.recv_into(self._buf)
        return self._view if n == self.size else self._view[:n]

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def close(self) -> None:
        self.release()
        self.producer.close()
        self.consumer.close()
        for ch in self._chans:
            ch.close()


class MQSide(Side):
    """One connection to the broker: it sends to one queue, confirmed, and
    consumes the other, acknowledging."""

    def __init__(self, p: Params) -> None:
        self.size = p.size
        self.out, inp = (p.ab, p.ba) if p.role == "a" else (p.ba, p.ab)
        self.window = p.window
        # A benchmark fails fast: no reconnection.
        self.client = mq.Client(p.socket, timeout=10, reconnect=None)
        try:
            self.consumer = self.client.consume(inp, prefetch=p.prefetch, timeout=10)
        except BaseException:
            self.client.close()
            raise
        self._sent: deque[mq.Confirmation] = deque()
        self._held: Optional[mq.Delivery] = None

    def send(self, msg: Union[bytearray, memoryview]) -> None:
        sent = self._sent
        if len(sent) >= self.window:
            sent.popleft().wait()
        sent.append(self.client.send_async(self.out, msg))  # the body is copied
        if flags(msg) & FLAG_LAST:
            self.confirm_all()

    def confirm_all(self) -> None:
        sent = self._sent
        while sent:
            sent.popleft().wait()

    def recv(self) -> memoryview:
        self.confirm_all()
        self._held = self.consumer.receive()
        return memoryview(self._held.body)

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.ack()

    def close(self) -> None:
        self.release()
        self.client.close()  # flushes the acknowledgements


def flags(view: Union[bytearray, memoryview]) -> int:
    f: int = HEADER.unpack_from(view, 0)[2]
    return f


def ping(p: Params, s: Side) -> list[int]:
    samples = [0] * p.samples
    msg = new_message(p.size)
    clock = time.perf_counter_ns
    base = clock()
    warm = last = False
    n = 0
    seq = 0
    while not last:
        now = clock() - base
        warm = warm or seq >= p.warmup or (p.budget_ns > 0 and now > p.budget_ns // 10)
        last = warm and (n == p.samples - 1 or (p.budget_ns > 0 and now > p.budget_ns))
        stamp(msg, p.size, seq, FLAG_LAST if last else 0)
        t0 = clock()
        s.send(msg)
        reply = s.recv()
        t1 = clock()
        s.check(reply, seq)
        s.release()
        if warm:
            samples[n] = t1 - t0
            n += 1
        seq += 1
    return samples[:n]


def echo(s: Side) -> None:
    seq = 0
    while True:
        view = s.recv()
        s.check(view, seq)
        last = flags(view) & FLAG_LAST
        s.send(view)
        s.release()
        if last:
            return
        seq += 1


def stream(p: Params, s: Side) -> None:
    msg = new_message(p.size)
    # Reading the clock for every small message would cost more than the
    # transport's work: look every 256 messages, as the Go sender does.
    clock_mask = 0 if p.size >= 64 << 10 else 255
    start = 0
    last = False
    seq = 0
    while not last:
        if seq == p.warmup:
            start = time.perf_counter_ns()
        elif seq > p.warmup and seq & clock_mask == 0:
            last = time.perf_counter_ns() - start >= p.duration_ns
        stamp(msg, p.size, seq, FLAG_LAST if last else 0)
        s.send(msg)
        seq += 1


def drain(p: Params, s: Side) -> tuple[int, int]:
    pattern = bytes(new_message(p.size)[HEADER.size : p.size - TRAILER.size])
    first = 0
    seq = 0
    while True:
        view = s.recv()
        if seq == p.warmup:
            first = time.perf_counter_ns()
        s.check(view, seq)
        if seq % p.verify_every == 0 and view[HEADER.size : p.size - TRAILER.size].tobytes() != pattern:
            raise PeerError(f"corrupt message: message {seq} payload differs from the pattern")
        last = flags(view) & FLAG_LAST
        s.release()
        if last:
            end = time.perf_counter_ns()
            if seq <= p.warmup:
                raise PeerError(f"stream ended at message {seq}, within the {p.warmup} warm-up messages")
            return seq - p.warmup, end - first
        seq += 1


def run(argv: list[str]) -> dict[str, object]:
    p = Params(argv)
    signal.alarm(p.timeout_s)  # a watchdog: a wedged side must not spin for ever
    s: Side
    if p.api == "mq":
        # The client's reader and writer threads are started unpinned, as
        # the Go client's goroutines are: only this, the side's thread, is
        # pinned (sched_setaffinity(0) sets the calling thread's CPUs).
        s = MQSide(p)
        if p.cpu >= 0:
            os.sched_setaffinity(0, {p.cpu})
    else:
        if p.cpu >= 0:
            os.sched_setaffinity(0, {p.cpu})
        s = ShmSide(p)
    print(json.dumps({"ready": True}), flush=True)
    samples: list[int] = []
    messages = nanos = 0
    gc.collect()
    gc.disable()
    try:
        if p.kind == "rtt" and p.role == "a":
            samples = ping(p, s)
        elif p.kind == "rtt":
            echo(s)
        elif p.kind == "tput" and p.role == "a":
            stream(p, s)
        elif p.kind == "tput":
            messages, nanos = drain(p, s)
        else:
            raise PeerError(f"unknown kind {p.kind}")
    finally:
        gc.enable()
    s.close()
    return {"done": True, "messages": messages, "nanos": nanos, "samples_ns": samples}


def main() -> int:
    try:
        out = run(sys.argv[1:])
    except (PeerError, podipc.PodipcError, OSError) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
