"""podipc message queues for asyncio: podipc.mq.Client behind awaitables.

An AsyncClient owns an mq.Client, whose reader thread parses what the broker
sends; the broker's answers and the deliveries reach the event loop through
``call_soon_threadsafe``, batched, so nothing polls and nothing blocks the
loop::

    from podipc import aio

    async with await aio.connect() as c:          # $PODIPC_MQ_SOCKET or $PODIPC_DIR/mq.sock
        msg_id = await c.send("jobs", b"work item", priority=5)   # awaits SEND_OK
        confirmations = [await c.submit("jobs", body) for body in bodies]  # pipelined
        await asyncio.gather(*confirmations)
        async with await c.consume("jobs", prefetch=128) as consumer:
            async for d in consumer:              # an mq.Delivery
                await handle(d.body)
                d.ack()                           # pipelined: never waits

Deliveries are podipc.mq.Delivery objects: ack() and nack() only queue a
frame, so they are called as they are, from the loop. Timeouts are seconds
(None waits for ever) and raise WaitTimeoutError, as in podipc.mq.

Cancellation: a cancelled send() or submit() that was still waiting for room
in the send window sent nothing; one cancelled while awaiting the broker's
confirmation has sent its message (as a send whose timeout passes). A
cancelled receive() takes no delivery: the next receive() gets it. A
cancelled connect() or consume() closes what it opened.

Threads: an AsyncClient and its consumers belong to the event loop that
connected it; call them from that loop only. Reconnection is podipc.mq's
(see ReconnectPolicy).
"""

from __future__ import annotations

import asyncio
import functools
import time
from types import TracebackType
from typing import AsyncIterator, Awaitable, Callable, Optional, Type, TypeVar

from . import mq
from .errors import ClosedError, ConnectionLostError, PodipcError, WaitTimeoutError

__all__ = ["AsyncClient", "AsyncConsumer", "connect"]

_T = TypeVar("_T")


async def connect(
    path: str | None = None,
    *,
    broker_uid: int | None = None,
    timeout: float | None = 5.0,
    reconnect: mq.ReconnectPolicy | None = mq.ReconnectPolicy(),
) -> AsyncClient:
    """Connects to the broker (arguments as podipc.mq.Client's); the dial and
    handshake run in the loop's default executor."""
    loop = asyncio.get_running_loop()
    dial = functools.partial(mq.Client, path, broker_uid=broker_uid, timeout=timeout, reconnect=reconnect)
    client = await _finish_in_executor(loop, dial, mq.Client.close)
    return AsyncClient(client, loop)


async def _finish_in_executor(
    loop: asyncio.AbstractEventLoop, fn: Callable[[], _T], undo: Callable[[_T], None]
) -> _T:
    """Runs fn in the default executor. If the caller is cancelled meanwhile,
    the cancellation waits for fn to return and for undo(result) to run before
    it propagates, so that once the cancelled await has returned nothing it
    opened remains (a consumer attached late would otherwise take messages
    that are then redelivered). Cancelled again while it waits, the undo is
    left to run in the background."""
    fut = loop.run_in_executor(None, fn)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:

        def cleanup(f: asyncio.Future[_T]) -> None:
            if not f.cancelled() and f.exception() is None:
                loop.run_in_executor(None, undo, f.result())  # closing may wait for a thread

        try:
            await asyncio.wait({fut})
            if not fut.cancelled() and fut.exception() is None:
                await loop.run_in_executor(None, undo, fut.result())
        except asyncio.CancelledError:
            fut.add_done_callback(cleanup)
        raise


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    mq._deadline(timeout)  # the checks of podipc.mq: negative or NaN raises InvalidArgumentError
    return time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


async def _wait(aw: Awaitable[_T], deadline: float | None, what: str) -> _T:
    """Awaits aw until deadline; WaitTimeoutError then."""
    left = _left(deadline)
    try:
        async with asyncio.timeout(left):
            return await aw
    except TimeoutError:
        raise WaitTimeoutError(f"mq: timed out waiting for {what}") from None


class AsyncClient:
    """An mq.Client for one event loop; an async context manager. Make it
    with connect()."""

    def __init__(self, client: mq.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        # Answered confirmations waiting to be handed to the loop (guarded by
        # the client's lock), and whether a hand-over is scheduled.
        self._answered: list[tuple[mq.Confirmation, asyncio.Future[int]]] = []
        self._handover = False
        # Set when one of this client's sends is answered: room in the window.
        self._room = asyncio.Event()

    @property
    def limits(self) -> mq.Limits:
        return self._client.limits

    def stats(self) -> mq.Stats:
        return self._client.stats()

    async def send(
        self, queue: str, body: bytes | bytearray | memoryview, priority: int = 0, ttl: float | None = None,
        timeout: float | None = None,
    ) -> int:
        """Sends body to queue and awaits the broker's confirmation; returns the
        message's id. timeout bounds the whole call, as in mq.Client.send."""
        deadline = _deadline(timeout)
        fut = await self._submit(queue, body, priority, ttl, deadline)
        # As mq.Client.send: the broker's answer to a send it held to its timeout may come just after.
        grace = None if deadline is None else deadline + mq._ANSWER_GRACE
        return await _wait(fut, grace, "the broker's answer")

    async def submit(
        self, queue: str, body: bytes | bytearray | memoryview, priority: int = 0, ttl: float | None = None,
        timeout: float | None = None,
    ) -> asyncio.Future[int]:
        """Queues a send without awaiting its confirmation (pipelined, as
        mq.Client.send_async): it waits only while the send window is full
        (timeout bounds that wait and the broker's hold of the send). The
        future resolves to the message's id or raises the broker's error."""
        return await self._submit(queue, body, priority, ttl, _deadline(timeout))

    async def _submit(
        self, queue: str, body: bytes | bytearray | memoryview, priority: int, ttl: float | None,
        deadline: float | None,
    ) -> asyncio.Future[int]:
        c = self._client
        while True:
            cf = c._send_async(queue, body, priority, ttl, deadline, wait=False)
            if cf is not None:
                return self._watch(cf)
            # The window is full of this client's sends: each answer sets _room.
            self._room.clear()
            await _wait(self._room.wait(), deadline, "room in the send window")

    def _watch(self, cf: mq.Confirmation) -> asyncio.Future[int]:
        """A future of cf's answer, resolved on the loop."""
        fut: asyncio.Future[int] = self._loop.create_future()
        c = self._client
        with c._lock:
            if not cf.done():
                cf._then = functools.partial(self._answer, fut)
                return fut
        self._resolve(cf, fut)
        return fut

    def _answer(self, fut: asyncio.Future[int], cf: mq.Confirmation) -> None:
        """With the client's lock held, on the thread that got the answer."""
        self._answered.append((cf, fut))
        if not self._handover:
            self._handover = True
            _call_soon(self._loop, self._hand_over)

    def _hand_over(self) -> None:
        with self._client._lock:
            answered, self._answered = self._answered, []
            self._handover = False
        for cf, fut in answered:
            self._resolve(cf, fut)
        self._room.set()

    @staticmethod
    def _resolve(cf: mq.Confirmation, fut: asyncio.Future[int]) -> None:
        if fut.done():
            return  # nobody awaits it any more
        try:
            fut.set_result(cf.wait(0))
        except PodipcError as e:
            fut.set_exception(e)

    async def consume(self, queue: str, prefetch: int = mq.DEFAULT_PREFETCH,
                      timeout: float | None = None) -> AsyncConsumer:  # fmt: skip
        """Attaches a consumer to queue (as mq.Client.consume; the wait for the
        broker's CONSUME_OK runs in the loop's default executor)."""
        attach = functools.partial(self._client.consume, queue, prefetch, timeout)
        k = await _finish_in_executor(self._loop, attach, mq.Consumer.close)
        return AsyncConsumer(self, k)

    async def ping(self, timeout: float | None = None) -> None:
        """A round trip to the broker: every earlier ack and nack was applied."""
        await self._loop.run_in_executor(None, self._client.ping, timeout)

    async def close(self) -> None:
        """Closes the client (as mq.Client.close, in the default executor);
        pending sends and receives raise ClosedError."""
        await asyncio.shield(self._loop.run_in_executor(None, self._client.close))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:  # fmt: skip
        await self.close()


class AsyncConsumer:
    """A consumer of an AsyncClient: an async iterator of mq.Delivery and an
    async context manager (leaving it closes the consumer). Iteration ends
    when the consumer is closed; a lost connection or a deleted queue raises,
    once the deliveries already received are taken."""

    def __init__(self, client: AsyncClient, consumer: mq.Consumer) -> None:
        self._aclient = client
        self._consumer = consumer
        self._waiter: asyncio.Future[None] | None = None  # guarded by the client's lock
        with client._client._lock:
            consumer._on_ready = self._on_ready

    @property
    def queue(self) -> str:
        return self._consumer.queue

    @property
    def prefetch(self) -> int:
        return self._consumer.prefetch

    @property
    def at_most_once(self) -> bool:
        return self._consumer.at_most_once

    def _on_ready(self) -> None:
        """With the client's lock held, on the reader's (or a closer's) thread."""
        w, self._waiter = self._waiter, None
        if w is not None:
            _call_soon(self._aclient._loop, functools.partial(_wake, w))

    async def receive(self, timeout: float | None = None) -> mq.Delivery:
        """The next delivery; WaitTimeoutError if none comes within timeout
        (0: only what has arrived already)."""
        k = self._consumer
        lock = self._aclient._client._lock
        deadline = _deadline(timeout)
        while True:
            d = k._take()
            if d is not None:
                return d
            w: asyncio.Future[None] = self._aclient._loop.create_future()
            with lock:
                arrived = bool(k._ready)
                if not arrived:
                    if k._closed_by is not None:
                        raise k._closed_by
                    self._waiter = w
            if arrived:
                continue  # between the look and the lock
            try:
                await _wait(w, deadline, "a delivery")
            finally:
                with lock:
                    if self._waiter is w:
                        self._waiter = None

    def __aiter__(self) -> AsyncIterator[mq.Delivery]:
        return self

    async def __anext__(self) -> mq.Delivery:
        try:
            return await self.receive()
        except ClosedError as e:
            if isinstance(e, ConnectionLostError):
                raise
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Detaches the consumer (as mq.Consumer.close: the broker redelivers
        what was not acknowledged; the CANCEL is written from the default
        executor). A receive() waiting meanwhile ends (iteration stops)."""
        await asyncio.shield(self._aclient._loop.run_in_executor(None, self._consumer.close))

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:  # fmt: skip
        await self.close()


def _wake(w: asyncio.Future[None]) -> None:
    if not w.done():
        w.set_result(None)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    """Schedules fn on loop from any thread (with the client's lock held): a
    loop closed already has nobody left to tell."""
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass
