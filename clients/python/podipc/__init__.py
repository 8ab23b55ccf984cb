"""podipc: pod-local IPC for Python, over the native C client (libpodipc).

Shared-memory channels (podipc.shm) speak podipc's channel format
(docs/shm-layout.md) in the application's own process: no copy on the
zero-copy paths and no system call unless a peer sleeps::

    import podipc

    with podipc.Channel.open_named("frames") as ch, ch.consumer() as c:
        with c.borrow(timeout=1.0) as view:   # a read-only memoryview of the slot
            handle(view)

Message queues (podipc.mq) speak the broker's wire protocol
(docs/mq-protocol.md) in pure Python; they do not need libpodipc::

    from podipc import mq

    with mq.Client() as c:                       # $PODIPC_MQ_SOCKET or $PODIPC_DIR/mq.sock
        c.send("jobs", b"work item")
        with c.consume("jobs") as consumer:
            for d in consumer:
                handle(d.body)
                d.ack()

podipc.aio is the same client for asyncio (await send, async for over a
consumer).

Errors are podipc.PodipcError subclasses (podipc.errors), one per
libpodipc error code and one per message-queue error code.
"""

from .errors import (
    AlreadySettledError,
    BrokerInternalError,
    BrokerShutdownError,
    BrokerUnavailableError,
    ChannelExistsError,
    ChannelNotFoundError,
    ChannelPermissionError,
    ClosedError,
    ConnectionLostError,
    CorruptError,
    EmptyError,
    FullError,
    ImpostorError,
    InvalidArgumentError,
    LappedError,
    MessageTooLargeError,
    MQError,
    NoSpaceError,
    NotChannelError,
    NotHeldError,
    NotRegularError,
    OutstandingError,
    PeerTableFullError,
    PodipcError,
    PodipcSystemError,
    ProducerExistsError,
    ProtocolError,
    QueueDeletedError,
    QueueFullError,
    QueueTimeoutError,
    StaleDeliveryError,
    TooLargeError,
    TooManyConnectionsError,
    TooManyConsumersError,
    TooManyPendingError,
    TruncatedError,
    UnknownQueueError,
    UnsupportedVersionError,
    VersionError,
    WaitTimeoutError,
    WrongModeError,
)
_SHM_NAMES = frozenset(
    "DEFAULT_MAX_PEERS DEFAULT_SLOT_COUNT DEFAULT_SLOT_SIZE Borrowed Channel ChannelOptions Consumer Mode "
    "Overflow Producer Reservation Stats Subscriber Wait channel_path".split()
)
try:
    from .shm import (
        DEFAULT_MAX_PEERS,
        DEFAULT_SLOT_COUNT,
        DEFAULT_SLOT_SIZE,
        Borrowed,
        Channel,
        ChannelOptions,
        Consumer,
        Mode,
        Overflow,
        Producer,
        Reservation,
        Stats,
        Subscriber,
        Wait,
        channel_path,
    )
except ImportError as _e:  # no libpodipc: podipc.mq works without it
    _shm_error = _e

    def __getattr__(name: str) -> object:
        if name in _SHM_NAMES:
            raise ImportError(f"podipc.{name} needs libpodipc: {_shm_error}") from _shm_error
        raise AttributeError(f"module 'podipc' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "AlreadySettledError",
    "Borrowed",
    "BrokerInternalError",
    "BrokerShutdownError",
    "BrokerUnavailableError",
    "Channel",
    "channel_path",
    "ChannelExistsError",
    "ChannelNotFoundError",
    "ChannelOptions",
    "ChannelPermissionError",
    "ClosedError",
    "ConnectionLostError",
    "Consumer",
    "CorruptError",
    "DEFAULT_MAX_PEERS",
    "DEFAULT_SLOT_COUNT",
    "DEFAULT_SLOT_SIZE",
    "EmptyError",
    "FullError",
    "ImpostorError",
    "InvalidArgumentError",
    "LappedError",
    "MessageTooLargeError",
    "Mode",
    "MQError",
    "NoSpaceError",
    "NotChannelError",
    "NotHeldError",
    "NotRegularError",
    "OutstandingError",
    "Overflow",
    "PeerTableFullError",
    "PodipcError",
    "PodipcSystemError",
    "Producer",
    "ProducerExistsError",
    "ProtocolError",
    "QueueDeletedError",
    "QueueFullError",
    "QueueTimeoutError",
    "Reservation",
    "StaleDeliveryError",
    "Stats",
    "Subscriber",
    "TooLargeError",
    "TooManyConnectionsError",
    "TooManyConsumersError",
    "TooManyPendingError",
    "TruncatedError",
    "UnknownQueueError",
    "UnsupportedVersionError",
    "VersionError",
    "Wait",
    "WaitTimeoutError",
    "WrongModeError",
]
