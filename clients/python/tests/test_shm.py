"""podipc.shm over libpodipc: copies, zero copy, errors, broadcast, dead peers."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

import podipc
from podipc import Mode, Overflow
from podipc.peer import check, fill

PKG_DIR = str(Path(podipc.__file__).resolve().parent.parent)


def queue(tmpfs: Path, **kw: int) -> podipc.Channel:
    kw.setdefault("slot_size", 64)
    kw.setdefault("slot_count", 8)
    return podipc.Channel.create(tmpfs / "q", **kw)  # type: ignore[arg-type]


def test_copy_round_trip(tmpfs: Path) -> None:
    with queue(tmpfs) as ch, ch.producer() as p, ch.consumer() as c:
        p.send(b"bytes")
        p.send(bytearray(b"bytearray"))
        p.send(memoryview(b"read-only view"))
        assert c.recv() == b"bytes"
        buf = bytearray(64)
        n = c.recv_into(buf)
        assert bytes(buf[:n]) == b"bytearray"
        assert c.recv() == b"read-only view"
        st = ch.stats()
        assert (st.sent, st.received, st.depth, st.producers, st.consumers) == (3, 3, 0, 1, 1)
        assert ch.options == podipc.ChannelOptions(Mode.QUEUE, Overflow.BLOCK, 64, 8, 64)


def test_recv_into_too_small_keeps_message(tmpfs: Path) -> None:
    with queue(tmpfs) as ch, ch.producer() as p, ch.consumer() as c:
        p.send(b"x" * 40)
        with pytest.raises(podipc.TooLargeError) as e:
            c.recv_into(bytearray(10))
        assert e.value.size == 40
        assert c.recv() == b"x" * 40


def test_message_larger_than_slot(tmpfs: Path) -> None:
    with queue(tmpfs) as ch, ch.producer() as p:
        with pytest.raises(podipc.TooLargeError):
            p.send(b"x" * 65)
        assert ch.stats().sent == 0


def test_zero_copy(tmpfs: Path) -> None:
    with queue(tmpfs) as ch, ch.producer() as p, ch.consumer() as c:
        with p.reserve() as r:
            assert len(r.buffer) == 64 and not r.buffer.readonly
            fill(r.buffer, 3, 9, 48)
            r.commit(48)
        with c.borrow() as view:
            assert view.readonly and len(view) == 48
            assert check(view) == (3, 9)
            kept = view
        with pytest.raises(ValueError):  # released: the slot is not ours any more
            kept[0]
        assert ch.stats().received == 1


def test_reservation_aborted_unless_committed(tmpfs: Path) -> None:
    with queue(tmpfs) as ch, ch.producer() as p, ch.consumer() as c:
        with p.reserve() as r:
            r.buffer[:4] = b"lost"
        with pytest.raises(RuntimeError):
            with p.reserve() as r:
                r.buffer[:4] = b"lost"
                raise RuntimeError("the application failed half-way")
        p.send(b"kept")
        assert c.recv() == b"kept"
        with pytest.raises(podipc.EmptyError):
            c.recv(timeout=0)


def test_commit_too_long_keeps_the_reservation(tmpfs: Path) -> None:
    with queue(tmpfs) as ch, ch.producer() as p, ch.consumer() as c:
        with p.reserve() as r:
            r.buffer[:2] = b"ok"
            with pytest.raises(podipc.TooLargeError):
                r.commit(65)
            r.commit(2)  # still held, and committed whole
        assert c.recv(timeout=0) == b"ok"
        with p.reserve() as r:
            with pytest.raises(podipc.TooLargeError):
                r.commit(-1)
        p.send(b"after an aborted slot")  # the block's end aborted it: nothing outstanding
        assert c.recv(timeout=0) == b"after an aborted slot"


def test_one_held_at_a_time(tmpfs: Path) -> None:
    with queue(tmpfs) as ch, ch.producer() as p, ch.consumer() as c:
        r = p.reserve()
        with pytest.raises(podipc.OutstandingError):
            p.reserve()
        with pytest.raises(podipc.OutstandingError):
            p.send(b"x")
        r.commit(1)
        with pytest.raises(podipc.NotHeldError):
            r.commit(1)
        with pytest.raises(podipc.NotHeldError):
            r.abort()
        p.send(b"y")
        b = c.borrow()
        with pytest.raises(podipc.OutstandingError):
            c.borrow()
        b.release()
        with pytest.raises(podipc.NotHeldError):
            b.release()
        assert c.recv() == b"y"


def test_numpy_views_without_copy(tmpfs: Path) -> None:
    np = pytest.importorskip("numpy")
    with queue(tmpfs, slot_size=4096) as ch, ch.producer() as p, ch.consumer() as c:
        frame = np.arange(1024, dtype=np.float32)
        with p.reserve() as r:
            np.frombuffer(r.buffer, dtype=np.float32)[:] = frame  # written in the slot
            r.commit(frame.nbytes)
        with c.borrow() as view:
            got = np.frombuffer(view, dtype=np.float32)
            assert not got.flags.writeable
            assert np.array_equal(got, frame)
            del got


def test_timeouts(tmpfs: Path) -> None:
    with queue(tmpfs, slot_count=2) as ch, ch.producer() as p, ch.consumer() as c:
        with pytest.raises(podipc.EmptyError):
            c.recv(timeout=0)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            c.borrow(timeout=0.25)
        assert time.monotonic() - start >= 0.25
        p.send(b"1")
        p.send(b"2")
        with pytest.raises(podipc.FullError):
            p.send(b"3", timeout=0)
        with pytest.raises(podipc.WaitTimeoutError):
            p.reserve(timeout=0.05)
        with pytest.raises(ValueError):
            c.recv(timeout=-1)


def test_try_calls_never_wait(tmpfs: Path) -> None:
    """timeout=0 makes every blocking call one try, on the fast path."""
    with queue(tmpfs, slot_count=2) as ch, ch.producer() as p, ch.consumer() as c:
        buf = bytearray(64)
        tries: list[Callable[[], object]] = [
            lambda: c.recv_into(buf, timeout=0), lambda: c.borrow(timeout=0), lambda: c.recv(timeout=0.0),
        ]
        for call in tries:
            with pytest.raises(podipc.EmptyError):
                call()
        p.send(b"1", timeout=0)
        with p.reserve(timeout=0) as r:
            r.buffer[:1] = b"2"
            r.commit(1)
        with pytest.raises(podipc.FullError):
            p.reserve(timeout=0)
        with pytest.raises(podipc.FullError):
            p.send(bytearray(b"3"), timeout=0)
        assert c.recv_into(buf, timeout=0) == 1 and buf[:1] == b"1"
        with c.borrow(timeout=0) as view:
            assert bytes(view) == b"2"


def test_waits_for_ever_across_slices(tmpfs: Path) -> None:
    """timeout=None waits in 100 ms slices until the other side acts, for
    every blocking call: each wait here outlasts a slice (the other side acts
    after 0.25 s), and each must end with the message or the slot."""
    with queue(tmpfs, slot_count=2) as ch, ch.producer() as p, ch.consumer() as c:
        buf = bytearray(64)

        def later(action: Callable[[], object]) -> threading.Timer:
            t = threading.Timer(0.25, action)
            t.start()
            return t

        def borrowed() -> bytes:
            with c.borrow() as view:
                return bytes(view)

        receives: list[Callable[[], bytes]] = [lambda: bytes(buf[: c.recv_into(buf)]), c.recv, borrowed]
        for i, receive in enumerate(receives):
            msg = struct.pack("<I", i)
            with ch.producer() as other:
                t = later(lambda: other.send(msg, timeout=10))
                start = time.monotonic()
                assert receive() == msg
                assert time.monotonic() - start >= 0.2
                t.join()
        # A full ring: send and reserve wait until a consumer makes room.
        p.send(b"a")
        p.send(b"b")
        with ch.consumer() as other:
            sends: list[Callable[[], object]] = [lambda: p.send(bytearray(b"c")), lambda: p.reserve().commit(0)]
            for send in sends:
                t = later(lambda: other.recv(timeout=10))
                start = time.monotonic()
                send()
                assert time.monotonic() - start >= 0.2
                t.join()
        assert [c.recv(timeout=0), c.recv(timeout=0)] == [b"c", b""]


def test_overflow_fail(tmpfs: Path) -> None:
    with queue(tmpfs, slot_count=2, overflow=Overflow.FAIL) as ch, ch.producer() as p:
        p.send(b"1")
        p.send(b"2")
        with pytest.raises(podipc.FullError):
            p.send(b"3")  # no wait under Overflow.FAIL, whatever the timeout


def test_blocking_call_lets_signal_handlers_run(tmpfs: Path) -> None:
    class Interrupted(Exception):
        pass

    def on_alarm(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with queue(tmpfs) as ch, ch.consumer() as c:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            start = time.monotonic()
            with pytest.raises(Interrupted):
                c.recv()  # waits for ever, but wakes for Python every 100 ms
            assert time.monotonic() - start < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_threads_wait_without_the_gil(tmpfs: Path) -> None:
    with queue(tmpfs, slot_count=4) as ch:
        got: list[bytes] = []

        def consume() -> None:
            with ch.consumer() as c:
                for _ in range(1000):
                    got.append(c.recv(timeout=30))

        t = threading.Thread(target=consume)
        t.start()
        with ch.producer() as p:
            for i in range(1000):
                p.send(struct.pack("<I", i), timeout=30)
        t.join(60)
        assert [struct.unpack("<I", m)[0] for m in got] == list(range(1000))


def test_broadcast(tmpfs: Path) -> None:
    with podipc.Channel.create(tmpfs / "b", mode=Mode.BROADCAST, slot_size=64, slot_count=8) as ch:
        s1, s2 = ch.subscribe(), ch.subscribe()
        p = ch.producer()
        with pytest.raises(podipc.ProducerExistsError):
            ch.producer()
        with pytest.raises(podipc.WrongModeError):
            ch.consumer()
        for i in range(5):
            p.send(bytes([i]))
        assert [s1.recv() for _ in range(5)] == [bytes([i]) for i in range(5)]
        for i in range(5):
            with s2.borrow() as v:
                assert v[0] == i
        for peer in (s1, s2, p):
            peer.close()


def test_lapped_subscriber(tmpfs: Path) -> None:
    ch = podipc.Channel.create(tmpfs / "b", mode=Mode.BROADCAST, overflow=Overflow.OVERWRITE, slot_size=64, slot_count=8)
    with ch, ch.subscribe() as s, ch.producer() as p:
        for i in range(100):
            p.send(struct.pack("<I", i), timeout=0)  # never waits under OVERWRITE
        with pytest.raises(podipc.LappedError) as e:
            s.recv()
        assert e.value.lost == 93 and s.lost == 93
        assert [struct.unpack("<I", s.recv())[0] for _ in range(7)] == list(range(93, 100))
        assert ch.stats().lost == 93


def test_lapped_while_borrowed(tmpfs: Path) -> None:
    ch = podipc.Channel.create(tmpfs / "b", mode=Mode.BROADCAST, overflow=Overflow.OVERWRITE, slot_size=64, slot_count=8)
    with ch, ch.subscribe() as s, ch.producer() as p:
        p.send(struct.pack("<I", 0), timeout=0)
        with pytest.raises(podipc.LappedError) as e:
            with s.borrow() as v:
                assert struct.unpack("<I", v[:4])[0] == 0
                for i in range(1, 20):  # overwrite the borrowed slot while it is read
                    p.send(struct.pack("<I", i), timeout=0)
        # 20 sent into 8 slots: the oldest the producer cannot be writing is 13, so 0-12 are lost
        assert e.value.lost == 13 and s.lost == 13
        assert [struct.unpack("<I", s.recv())[0] for _ in range(7)] == list(range(13, 20))


def test_bad_files(tmpfs: Path) -> None:
    good = tmpfs / "good"
    podipc.Channel.create(good, slot_size=64, slot_count=4).close()
    data = good.read_bytes()
    cases = {
        "short": (data[:100], podipc.TruncatedError),
        "truncated": (data[:-64], podipc.TruncatedError),
        "foreign": (b"\x7fELF" + data[4:], podipc.NotChannelError),
        "checksum": (data[:24] + bytes([data[24] ^ 1]) + data[25:], podipc.CorruptError),
    }
    for name, (content, cls) in cases.items():
        path = tmpfs / name
        path.write_bytes(content)
        with pytest.raises(cls) as e:
            podipc.Channel.open(path)
        assert str(path) in str(e.value), name
    fifo = tmpfs / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(podipc.NotRegularError):
        podipc.Channel.open(fifo)  # refused, not a hang
    with pytest.raises(FileNotFoundError):
        podipc.Channel.open(tmpfs / "absent")
    with pytest.raises(FileExistsError):
        podipc.Channel.create(good)


def test_closed_objects(tmpfs: Path) -> None:
    ch = queue(tmpfs)
    p = ch.producer()
    ch.close()
    p.send(b"the producer keeps the mapping")
    p.close()
    p.close()
    with pytest.raises(podipc.ClosedError):
        p.send(b"x")
    with pytest.raises(podipc.ClosedError):
        ch.stats()


def test_channel_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODIPC_DIR", "/var/run/podipc")
    assert podipc.channel_path("frames") == "/var/run/podipc/shm/frames"
    with pytest.raises(ValueError):
        podipc.channel_path("../etc")
    monkeypatch.delenv("PODIPC_DIR")
    with pytest.raises(podipc.PodipcError, match="PODIPC_DIR"):
        podipc.channel_path("frames")


def peer(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=PKG_DIR)
    return subprocess.Popen(
        [sys.executable, "-m", "podipc.peer", *args], stdout=subprocess.PIPE, text=True, env=env
    )


def test_dead_python_peers_recovered(tmpfs: Path) -> None:
    """A Python consumer killed holding a borrowed message and a Python producer
    killed holding a reservation: the message is redelivered, the slot skipped."""
    with queue(tmpfs) as ch, ch.producer() as p:
        with p.reserve() as r:
            fill(r.buffer, 7, 1, 48)
            r.commit(48)
        holder = peer("hold", str(ch.path))
        assert holder.stdout is not None and holder.stdout.readline() == "held 7 1\n"
        reserver = peer("reserve", str(ch.path))
        assert reserver.stdout is not None and reserver.stdout.readline() == "reserved\n"
        for proc in (holder, reserver):
            proc.kill()
            proc.wait(30)
            proc.stdout.close()  # type: ignore[union-attr]
        assert ch.reap_dead_peers() == 2
        with ch.consumer() as c:
            assert check(c.recv(timeout=10)) == (7, 1)
            with pytest.raises(podipc.EmptyError):
                c.recv(timeout=0)
        st = ch.stats()
        assert (st.redelivered, st.abandoned, st.reaped) == (1, 1, 2)
        assert st.repaired == 0


def test_peer_processes_exchange(tmpfs: Path) -> None:
    """Two Python producer processes and a consumer process: every message once, intact."""
    with queue(tmpfs, slot_size=256) as ch:
        consumer = peer("consume", str(ch.path))
        producers = [peer("produce", str(ch.path), str(i), "500", "200") for i in (1, 2)]
        for proc in producers:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0 and out == "sent 500\n"
        assert subprocess.run(
            [sys.executable, "-m", "podipc.peer", "end", str(ch.path), "1"],
            env=dict(os.environ, PYTHONPATH=PKG_DIR), timeout=60,
        ).returncode == 0  # fmt: skip
        out, _ = consumer.communicate(timeout=60)
        assert consumer.returncode == 0
        got = sorted(tuple(map(int, line.split()[1:])) for line in out.splitlines())
        assert got == sorted((i, s) for i in (1, 2) for s in range(500))


def test_numpy_example_runs() -> None:
    pytest.importorskip("numpy")
    example = Path(__file__).resolve().parent.parent / "examples" / "numpy_frames.py"
    out = subprocess.run(
        [sys.executable, str(example), "--frames", "300"],
        env=dict(os.environ, PYTHONPATH=PKG_DIR), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("consumed 300 frames of 76816 bytes in place")  # a 16-byte stamp + the frame
