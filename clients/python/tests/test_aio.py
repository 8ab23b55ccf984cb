"""podipc.aio against a real broker (the sidecar, see conftest.Broker)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Coroutine, TypeVar

import pytest

from podipc import aio, mq
from podipc.errors import (
    BrokerUnavailableError,
    ClosedError,
    ConnectionLostError,
    InvalidArgumentError,
    QueueFullError,
    UnknownQueueError,
    WaitTimeoutError,
)

from conftest import Broker

T = 10.0  # no single wait in these tests should come near it
_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Runs coro on a fresh event loop, failing it after a minute."""

    async def bounded() -> _T:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


def test_send_consume_ack(broker: Broker) -> None:
    async def main() -> None:
        async with await aio.connect(broker.socket) as c:
            assert c.limits.version == 1
            first = await c.send("work", b"hello", priority=3)
            second = await c.send("work", memoryview(b"xx-world")[3:])
            assert second > first > 0
            async with await c.consume("work", prefetch=8, timeout=T) as k:
                assert k.prefetch == 8 and not k.at_most_once and k.queue == "work"
                a, b = await k.receive(T), await k.receive(T)
                assert (a.body, a.id, a.priority, a.deliveries) == (b"hello", first, 3, 1)
                assert (b.body, b.id) == (b"world", second)
                a.ack()
                b.ack()
                await c.ping(T)
                with pytest.raises(WaitTimeoutError):
                    await k.receive(0)

    run(main())


def test_produce_and_consume_in_one_loop(broker: Broker) -> None:
    """A consumer awaiting deliveries leaves the loop to the producer: a
    receive that blocked the loop would never see the sends."""
    n = 500

    async def main() -> None:
        async with await aio.connect(broker.socket) as c, await c.consume("work", prefetch=16) as k:

            async def produce() -> list[int]:
                return [await c.send("work", i.to_bytes(4, "little")) for i in range(n)]

            producer = asyncio.create_task(produce())
            got = []
            async for d in k:
                got.append(int.from_bytes(d.body, "little"))
                d.ack()
                if len(got) == n:
                    break
            ids = await producer
            assert got == list(range(n))
            assert ids == sorted(ids) and len(set(ids)) == n

    run(main())


def test_pipelined_submits_beyond_the_window(broker: Broker) -> None:
    """submit() queues sends without awaiting their confirmations and, once
    the window is full, waits (without blocking the loop) for answers."""

    async def main() -> None:
        async with await aio.connect(broker.socket) as c:
            n = 2 * c.limits.max_pending_sends + 10
            futures = [await c.submit("work", i.to_bytes(4, "little")) for i in range(n)]
            ids = await asyncio.gather(*futures)
            assert ids == sorted(ids) and len(set(ids)) == n
            async with await c.consume("work", prefetch=256) as k:
                for i in range(n):
                    d = await k.receive(T)
                    assert int.from_bytes(d.body, "little") == i
                    d.ack()

    run(main())


def test_window_wait_times_out_and_cancels_without_sending(broker: Broker) -> None:
    """With the window full of sends the broker holds (a full Block queue),
    submit() times out, and a cancelled one sends nothing."""

    async def main() -> None:
        async with await aio.connect(broker.socket) as c:
            await c.send("blocking", b"fills it")
            limit = c.limits.max_pending_sends
            held = [await c.submit("blocking", b"held", timeout=T) for _ in range(limit)]
            start = time.monotonic()
            with pytest.raises(WaitTimeoutError):
                await c.submit("blocking", b"one too many", timeout=0.2)
            assert time.monotonic() - start >= 0.2
            cancelled = asyncio.create_task(c.submit("blocking", b"cancelled"))
            await asyncio.sleep(0)  # let it reach the wait for room
            assert not cancelled.done()
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            assert not any(f.done() for f in held)
            async with await c.consume("blocking", prefetch=1) as k:
                for _ in range(limit + 1):
                    d = await k.receive(T)
                    assert d.body in (b"fills it", b"held")
                    d.ack()
                await asyncio.gather(*held)
                await c.ping(T)
                with pytest.raises(WaitTimeoutError):
                    await k.receive(0.2)  # neither the timed-out nor the cancelled send went out

    run(main())


def test_nack_requeue_and_dead_letter(broker: Broker) -> None:
    async def main() -> None:
        async with await aio.connect(broker.socket) as c:
            await c.send("retried", b"m")
            async with await c.consume("retried") as k:
                (await k.receive(T)).nack(requeue=True)
                again = await k.receive(T)
                assert (again.body, again.deliveries, again.redelivered) == (b"m", 2, True)
                again.nack(requeue=True)  # past maxRedeliveries: dead-lettered
            async with await c.consume("dead") as k:
                d = await k.receive(T)
                assert d.body == b"m"
                d.ack()

    run(main())


def test_broker_errors(broker: Broker) -> None:
    async def main() -> None:
        async with await aio.connect(broker.socket) as c:
            with pytest.raises(UnknownQueueError):
                await c.send("no-such-queue", b"x")
            await c.send("rejecting", b"1")
            await c.send("rejecting", b"2")
            with pytest.raises(QueueFullError):
                await c.send("rejecting", b"3")
            pending = await c.submit("rejecting", b"4")
            with pytest.raises(QueueFullError):
                await pending
            with pytest.raises(UnknownQueueError):
                await c.consume("no-such-queue", timeout=T)
            with pytest.raises(InvalidArgumentError):
                await c.send("work", b"x", timeout=-1)
            assert c.stats().connected  # errors of requests, not of the connection

    run(main())


def test_cancelled_receive_loses_nothing(broker: Broker) -> None:
    async def main() -> None:
        async with await aio.connect(broker.socket) as c, await c.consume("work") as k:
            waiting = asyncio.create_task(k.receive())
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await c.send("work", b"kept")
            d = await k.receive(T)
            assert d.body == b"kept" and d.deliveries == 1
            d.ack()
            with pytest.raises(WaitTimeoutError):
                await k.receive(0.1)

    run(main())


def test_cancelled_consume_closes_its_consumer(broker: Broker) -> None:
    async def main() -> None:
        async with await aio.connect(broker.socket) as c:
            attaching = asyncio.create_task(c.consume("work"))
            await asyncio.sleep(0)  # the attachment is under way in the executor
            attaching.cancel()
            with pytest.raises(asyncio.CancelledError):
                await attaching
            deadline = time.monotonic() + T
            while c._client._consumers:
                assert time.monotonic() < deadline, "the cancelled consumer is still attached"
                await asyncio.sleep(0.01)
            await c.ping(T)  # after its CANCEL: the broker has detached it
            # Nothing prefetches the message for the abandoned consumer.
            await c.send("work", b"x")
            async with await c.consume("work") as k:
                d = await k.receive(T)
                assert (d.body, d.deliveries) == (b"x", 1)
                d.ack()

    run(main())


def test_close_ends_iteration_and_fails_waiters(broker: Broker) -> None:
    async def main() -> None:
        c = await aio.connect(broker.socket)
        k = await c.consume("work")

        async def drain() -> int:
            return sum([1 async for _ in k])

        iterating = asyncio.create_task(drain())
        await asyncio.sleep(0)
        await k.close()
        assert await iterating == 0  # the loop ended, no exception
        k2 = await c.consume("work")
        waiting = asyncio.create_task(k2.receive())
        await asyncio.sleep(0)
        await c.close()
        with pytest.raises(ClosedError):
            await waiting
        with pytest.raises(ClosedError):
            await c.send("work", b"x")

    run(main())


def test_lost_broker_without_reconnect(broker: Broker) -> None:
    async def main() -> None:
        async with await aio.connect(broker.socket, reconnect=None) as c:
            await c.send("blocking", b"fills it")
            pending = await c.submit("blocking", b"held", timeout=T)  # the broker holds it: no consumer
            k = await c.consume("work")
            waiting = asyncio.create_task(k.receive())
            await asyncio.sleep(0)
            assert not pending.done() and not waiting.done()
            broker.kill()
            with pytest.raises(ConnectionLostError):
                await pending
            with pytest.raises(ConnectionLostError):
                await waiting
            with pytest.raises(ConnectionLostError):
                await c.send("work", b"x")

    run(main())


def test_no_broker(tmpfs: Path) -> None:
    async def main() -> None:
        with pytest.raises(BrokerUnavailableError):
            await aio.connect(str(tmpfs / "mq.sock"))

    run(main())
