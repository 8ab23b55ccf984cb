"""podipc.mq against a real broker (the sidecar, see conftest.Broker), and
against a fake one for frames no broker sends."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import podipc
from podipc import mq, suite
from podipc.errors import (
    AlreadySettledError,
    BrokerUnavailableError,
    ClosedError,
    ConnectionLostError,
    FullError,
    ImpostorError,
    MessageTooLargeError,
    ProtocolError,
    QueueFullError,
    QueueTimeoutError,
    StaleDeliveryError,
    TooLargeError,
    TooManyConnectionsError,
    UnknownQueueError,
    WaitTimeoutError,
)

from conftest import Broker

T = 10.0  # no single wait in these tests should come near it


@pytest.fixture
def client(broker: Broker) -> Iterator[mq.Client]:
    with mq.Client(broker.socket) as c:
        yield c


def test_send_consume_ack(client: mq.Client) -> None:
    assert client.limits.version == 1
    first = client.send("work", b"hello", priority=3)
    second = client.send("work", memoryview(b"xx-world")[3:])  # any buffer; sliced views too
    assert second > first > 0
    with client.consume("work", prefetch=8, timeout=T) as k:
        assert k.prefetch == 8 and not k.at_most_once
        a, b = k.receive(T), k.receive(T)
        assert (a.body, a.id, a.priority, a.deliveries, a.redelivered) == (b"hello", first, 3, 1, False)
        assert (b.body, b.id, b.priority) == (b"world", second, 0)
        assert isinstance(a.body, bytes)
        assert abs(a.enqueued_at - time.time()) < 60
        a.ack()
        b.ack()
        with pytest.raises(AlreadySettledError):
            a.ack()
        client.ping(T)
        with pytest.raises(WaitTimeoutError):
            k.receive(0)


def test_priorities_and_fifo(client: mq.Client) -> None:
    for i, prio in enumerate([1, 9, 1, 5, 9]):
        client.send("work", bytes([i]), priority=prio)
    with client.consume("work") as k:
        got = [k.receive(T) for _ in range(5)]
    assert [(d.priority, d.body[0]) for d in got] == [(9, 1), (9, 4), (5, 3), (1, 0), (1, 2)]


def test_pipelined_sends_then_iteration(client: mq.Client) -> None:
    n = 5000
    pending = [client.send_async("work", struct.pack("<I", i) * 16) for i in range(n)]
    ids = [cf.wait(T) for cf in pending]
    assert ids == sorted(ids) and len(set(ids)) == n
    assert all(cf.done() for cf in pending)
    seen = []
    with client.consume("work", prefetch=256) as k:
        for d in k:
            seen.append(struct.unpack_from("<I", d.body)[0])
            d.ack()
            if len(seen) == n:
                k.close()  # ends the iteration
    assert seen == list(range(n))
    client.ping(T)


def test_send_window_bounds_pending(client: mq.Client) -> None:
    # The blocking queue holds one message; the broker holds the next sends.
    client.send("blocking", b"fills it")
    limit = client.limits.max_pending_sends
    held = [client.send_async("blocking", b"held", timeout=T) for _ in range(limit)]
    with pytest.raises(WaitTimeoutError):
        client.send_async("blocking", b"one too many", timeout=0.2)  # the window is full
    assert not any(cf.done() for cf in held)
    with client.consume("blocking", prefetch=1) as k:
        for _ in range(limit + 1):
            k.receive(T).ack()
    for cf in held:
        cf.wait(T)


def test_nack_requeue_and_dead_letter(client: mq.Client) -> None:
    client.send("retried", b"m")
    with client.consume("retried") as k:
        d = k.receive(T)
        d.nack(requeue=True)
        again = k.receive(T)
        assert (again.body, again.deliveries, again.redelivered) == (b"m", 2, True)
        again.nack(requeue=True)  # past maxRedeliveries: dead-lettered
    with client.consume("dead") as k:
        d = k.receive(T)
        assert d.body == b"m" and d.deliveries == 1
        d.ack()
    client.send("work", b"rejected")
    with client.consume("work") as k:
        k.receive(T).nack(requeue=False)  # no dead-letter queue: discarded
        client.ping(T)
        with pytest.raises(WaitTimeoutError):
            k.receive(0.2)


def test_ttl_expiry_dead_letters(client: mq.Client) -> None:
    client.send("expiring", b"default ttl")
    client.send("retried", b"own ttl", ttl=0.05)
    with client.consume("dead") as k:
        got = {k.receive(T).body for _ in range(2)}  # expired messages are dead-lettered
    assert got == {b"default ttl", b"own ttl"}


def test_at_most_once_credit(client: mq.Client) -> None:
    for i in range(50):
        client.send("amo", bytes([i]))
    with client.consume("amo", prefetch=2) as k:
        assert k.at_most_once
        got = [k.receive(T) for _ in range(50)]
        got[0].ack()  # does nothing
    assert [d.body[0] for d in got] == list(range(50))


def test_broker_errors_map_to_classes(client: mq.Client) -> None:
    with pytest.raises(UnknownQueueError) as e:
        client.send("no-such-queue", b"x")
    assert e.value.mq_code == 1 and isinstance(e.value, LookupError) and "no-such-queue" in str(e.value)
    with pytest.raises(UnknownQueueError):
        client.consume("no-such-queue")
    client.send("rejecting", b"1")
    client.send("rejecting", b"2")
    with pytest.raises(QueueFullError) as full:
        client.send("rejecting", b"3")
    assert isinstance(full.value, FullError) and isinstance(full.value, BlockingIOError)
    assert not isinstance(full.value, QueueTimeoutError)
    client.send("blocking", b"fills it")
    with pytest.raises(QueueTimeoutError) as held:
        client.send("blocking", b"held", timeout=0.1)
    assert isinstance(held.value, TimeoutError) and isinstance(held.value, QueueFullError)
    assert held.value.mq_code == 5
    with pytest.raises(MessageTooLargeError) as big:
        client.send("small", bytes(1025))  # the queue's limit, checked by the broker
    assert big.value.mq_code == 3 and isinstance(big.value, TooLargeError)
    with pytest.raises(MessageTooLargeError):
        client.send("work", bytes(client.limits.max_message + 1))  # the broker's, checked here
    with pytest.raises(podipc.InvalidArgumentError):
        client.send("work", b"x", priority=10)
    with pytest.raises(podipc.InvalidArgumentError):
        client.send("", b"x")
    client.ping(T)  # the connection survived every error


def test_large_message(client: mq.Client) -> None:
    body = os.urandom(3 << 20)  # several read buffers long
    client.send("work", body)
    with client.consume("work") as k:
        d = k.receive(T)
        assert d.body == body
        d.ack()


def test_threads_share_a_client(client: mq.Client) -> None:
    def produce(tid: int) -> None:
        for i in range(500):
            client.send_async("work", struct.pack("<II", tid, i))
        client.ping(T)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    got: list[tuple[int, int]] = []
    lock = threading.Lock()

    def consume(k: mq.Consumer) -> None:
        while True:
            try:
                d = k.receive(T)
            except ClosedError:
                return
            d.ack()
            with lock:
                tid, i = struct.unpack("<II", d.body)
                got.append((tid, i))
                if len(got) == 2000:
                    k.close()

    with client.consume("work", prefetch=64) as k:
        readers = [threading.Thread(target=consume, args=(k,)) for _ in range(2)]
        for t in readers:
            t.start()
        for t in threads + readers:
            t.join(30)
    assert sorted(got) == [(t, i) for t in range(4) for i in range(500)]


def test_socket_from_environment(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PODIPC_MQ_SOCKET", raising=False)
    monkeypatch.setenv("PODIPC_DIR", str(broker.dir))
    with mq.Client() as c:
        c.ping(T)
    monkeypatch.setenv("PODIPC_MQ_SOCKET", broker.socket)
    monkeypatch.setenv("PODIPC_DIR", "/nonexistent")
    with mq.Client() as c:
        c.ping(T)
    monkeypatch.delenv("PODIPC_MQ_SOCKET")
    monkeypatch.delenv("PODIPC_DIR")
    with pytest.raises(podipc.InvalidArgumentError):
        mq.Client()
    with pytest.raises(BrokerUnavailableError):
        mq.Client(str(broker.dir / "missing.sock"))


def test_broker_uid_check(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    with mq.Client(broker.socket, broker_uid=os.getuid()) as c:
        c.ping(T)
    with pytest.raises(ImpostorError) as e:
        mq.Client(broker.socket, broker_uid=os.getuid() + 1)
    assert isinstance(e.value, PermissionError) and "impostor" in str(e.value)
    monkeypatch.setenv("PODIPC_BROKER_UID", str(os.getuid() + 1))
    with pytest.raises(ImpostorError):
        mq.Client(broker.socket)
    with mq.Client(broker.socket, broker_uid=-1) as c:  # the argument overrides the environment
        c.ping(T)


def test_close_fails_waiters(broker: Broker) -> None:
    c = mq.Client(broker.socket)
    k = c.consume("work")
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            k.receive(T)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=receive)
    t.start()
    c.close()
    t.join(T)
    assert len(errors) == 1 and isinstance(errors[0], ClosedError)
    with pytest.raises(ClosedError):
        c.send("work", b"x")


# -- reconnection ------------------------------------------------------------


def eventually(cond: Callable[[], bool], what: str, within: float = T) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        time.sleep(0.01)


def test_reconnect_after_broker_restart(broker: Broker) -> None:
    with mq.Client(broker.socket) as c:
        k = c.consume("durable", prefetch=4)
        c.send("durable", b"before")
        stale = k.receive(T)
        broker.kill()
        eventually(lambda: not c.stats().connected, "the client notices the lost broker")
        pending = c.send_async("durable", b"while down")  # waits for the next broker
        broker.start()
        pending.wait(T)
        assert c.stats().reconnects == 1 and c.stats().resent >= 1
        with pytest.raises(StaleDeliveryError):
            stale.ack()
        # The journaled message comes back (redelivered by the new broker), then the new one.
        bodies = set()
        for _ in range(2):
            d = k.receive(T)
            bodies.add(d.body)
            d.ack()
        assert bodies == {b"before", b"while down"}
        c.send("durable", b"after")
        assert k.receive(T).body == b"after"


def test_without_reconnect_the_client_closes(broker: Broker) -> None:
    c = mq.Client(broker.socket, reconnect=None)
    c.ping(T)
    broker.kill()
    eventually(lambda: not c.stats().connected, "the client notices the lost broker")
    with pytest.raises(ConnectionLostError):
        c.send("work", b"x")
    c.close()


# -- hostile or broken brokers ---------------------------------------------

WELCOME = struct.pack("<4sHHIIIIII", b"PDMQ", 1, 0, 1 << 16, 60000, 16, 1 << 20, 64, 8)


class FakeBroker:
    """A listener that answers the handshake with welcome, then sends frames."""

    def __init__(
        self, directory: Path, welcome: bytes, frames: bytes, close: bool = False, after_request: bool = False
    ) -> None:
        self.path = str(directory / "fake.sock")
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(self.path)
        self.lsock.listen(1)
        self.welcome, self.frames, self.close, self.after_request = welcome, frames, close, after_request
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self._answer()
        except OSError:
            pass  # the client gave up first

    def _answer(self) -> None:
        conn, _ = self.lsock.accept()
        self.conns.append(conn)
        hello = b""
        while len(hello) < 12:
            hello += conn.recv(12 - len(hello))
        assert hello[:4] == b"PDMQ"
        conn.sendall(self.welcome)
        if self.after_request:
            conn.recv(1)  # the client's first request has been registered
        conn.sendall(self.frames)  # and then the socket stays open (unless close)
        if self.close:
            conn.close()

    def stop(self) -> None:
        for c in self.conns:
            c.close()
        self.lsock.close()


def frame(typ: int, payload: bytes) -> bytes:
    return struct.pack("<IB", 1 + len(payload), typ) + payload


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(struct.pack("<I", 0), id="zero-length"),
        pytest.param(struct.pack("<IB", (1 << 16) + 1, 0x84), id="over-max-frame"),
        pytest.param(struct.pack("<IB", 0xFFFFFFFF, 0x84), id="huge-length"),
        pytest.param(frame(0x42, b""), id="unknown-type"),
        pytest.param(frame(0x01, b"x" * 20), id="client-type"),
        pytest.param(frame(0x81, b"short"), id="send-ok-size"),
        pytest.param(frame(0x82, struct.pack("<IBI", 1, 3, 1)), id="consume-ok-mode"),
        pytest.param(frame(0x84, b"\x00" * 32), id="deliver-short"),
        pytest.param(frame(0x85, struct.pack("<IH", 1, 0)), id="error-code-0"),
        pytest.param(frame(0x85, struct.pack("<IH", 1, 1) + b"x" * 1025), id="error-text-long"),
        pytest.param(frame(0x87, b"\x01" * 9), id="pong-size"),
        pytest.param(frame(0x88, b"\x01"), id="goaway-short"),
        pytest.param(frame(0x86, b"\x00" * 5), id="consumer-closed-short"),
    ],
)
def test_bad_frames_raise_protocol_error(tmpfs: Path, frames: bytes) -> None:
    fake = FakeBroker(tmpfs, WELCOME, frames)
    try:
        c = mq.Client(fake.path, reconnect=mq.ReconnectPolicy())  # a protocol error is final anyway
        start = time.monotonic()
        with pytest.raises(ProtocolError):
            c.ping(T)
        assert time.monotonic() - start < T / 2  # found at once, not by a timeout
        assert not c.stats().connected
        c.close()
    finally:
        fake.stop()


def test_deliver_beyond_prefetch_is_a_protocol_error(tmpfs: Path) -> None:
    consume_ok = frame(0x82, struct.pack("<IBI", 1, 1, 1))
    deliver = frame(0x84, struct.pack("<IQQqIB", 1, 7, 1, 0, 1, 0) + b"body")
    fake = FakeBroker(tmpfs, WELCOME, consume_ok + deliver * 3, after_request=True)
    try:
        with mq.Client(fake.path, reconnect=None) as c:
            k = c.consume("q", prefetch=1, timeout=T)
            with pytest.raises(ProtocolError):
                for _ in range(3):
                    k.receive(T)
    finally:
        fake.stop()


def test_truncated_frame_then_eof(tmpfs: Path) -> None:
    fake = FakeBroker(tmpfs, WELCOME, frame(0x81, b"\x00" * 12)[:9], close=True)
    try:
        c = mq.Client(fake.path, reconnect=None)
        with pytest.raises(ConnectionLostError):
            c.ping(T)
        c.close()
    finally:
        fake.stop()


@pytest.mark.parametrize(
    ("welcome", "error"),
    [
        (b"XXXX" + WELCOME[4:], ProtocolError),
        (WELCOME[:6] + struct.pack("<H", 13) + WELCOME[8:], TooManyConnectionsError),
        (WELCOME[:4] + struct.pack("<H", 2) + WELCOME[6:], podipc.UnsupportedVersionError),
        (WELCOME[:8] + struct.pack("<I", 8) + WELCOME[12:], ProtocolError),
    ],
    ids=["magic", "too-many-connections", "version", "tiny-max-frame"],
)
def test_bad_welcome(tmpfs: Path, welcome: bytes, error: type[Exception]) -> None:
    fake = FakeBroker(tmpfs, welcome, b"")
    try:
        with pytest.raises(error):
            mq.Client(fake.path, timeout=T)
    finally:
        fake.stop()


def test_welcome_limits_are_honoured(tmpfs: Path) -> None:
    fake = FakeBroker(tmpfs, WELCOME, b"")
    try:
        with mq.Client(fake.path, reconnect=None) as c:
            assert c.limits.max_pending_sends == 16 and c.limits.max_consumers == 8
            with pytest.raises(MessageTooLargeError):
                c.send_async("q", bytes(60001))  # max_message
            sent = [c.send_async("q", b"x") for _ in range(16)]
            with pytest.raises(WaitTimeoutError):  # max_pending_sends: the 17th waits
                c.send_async("q", b"x", timeout=0.1)
            assert not any(cf.done() for cf in sent)
    finally:
        fake.stop()


# -- the conformance peer -----------------------------------------------------


def peer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podipc.mqpeer", *args],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )


def test_peer_send_and_consume(broker: Broker) -> None:
    sent = peer("send", broker.socket, "work", "7", "300", "64", "2")
    assert (sent.returncode, sent.stdout) == (0, "sent 300\n"), sent.stderr
    got = peer("consume", broker.socket, "work", "300", "16", "ack")
    assert got.returncode == 0, got.stdout + got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == "ready" and lines[-1] == "done 300"
    assert lines[1:-1] == [f"msg 7 {i} 1" for i in range(300)]


def test_peer_nack_dead_letters_and_checks_messages(broker: Broker) -> None:
    with mq.Client(broker.socket) as c:
        c.send("retried", suite.make(1, 0, 40))
        c.send("retried", struct.pack("<IIII", suite.END, 0, 0, 0))
        damaged = bytearray(suite.make(1, 1, 40))
        damaged[20] ^= 1
        c.send("work", bytes(damaged))
    got = peer("consume", broker.socket, "retried", "2", "4", "nack")
    assert got.stdout == f"ready\nmsg 1 0 1\nmsg {suite.END} 0 1\ndone 2\n", got.stderr
    with mq.Client(broker.socket) as c, c.consume("dead") as k:
        assert [k.receive(T).body[:4] for _ in range(2)] == [struct.pack("<I", 1), struct.pack("<I", suite.END)]
    bad = peer("consume", broker.socket, "work", "1", "4", "ack")
    assert bad.returncode == 1 and bad.stdout.startswith("ready\nerror corrupt: "), bad.stdout


def test_peer_errors(broker: Broker) -> None:
    r = peer("send", broker.socket, "no-such-queue", "1", "1", "16")
    assert r.returncode == 1 and r.stdout.startswith("error not_found: "), r.stdout
    r = peer("send", broker.socket, "work", "1", "1", "16", env={"PODIPC_BROKER_UID": str(os.getuid() + 1)})
    assert r.returncode == 1 and r.stdout.startswith("error impostor: "), r.stdout
    r = peer("send", broker.socket, "rejecting", "1", "3", "16")
    assert r.returncode == 1 and r.stdout.startswith("error queue_full: "), r.stdout
    assert peer("send").returncode == 2
