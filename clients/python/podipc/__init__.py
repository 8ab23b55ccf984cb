"""podipc: pod-local IPC for Python, over the native C client (libpodipc).

Shared-memory channels (podipc.shm) speak podipc's channel format
(docs/shm-layout.md) in the application's own process: no copy on the
zero-copy paths and no system call unless a peer sleeps::

    import podipc

    with podipc.Channel.open_named("frames") as ch, ch.consumer() as c:
        with c.borrow(timeout=1.0) as view:   # a read-only memoryview of the slot
            handle(view)

Errors are podipc.PodipcError subclasses (podipc.errors), one per
libpodipc error code.
"""

from .errors import (
    ChannelExistsError,
    ChannelNotFoundError,
    ChannelPermissionError,
    ClosedError,
    CorruptError,
    EmptyError,
    FullError,
    InvalidArgumentError,
    LappedError,
    NoSpaceError,
    NotChannelError,
    NotHeldError,
    NotRegularError,
    OutstandingError,
    PeerTableFullError,
    PodipcError,
    PodipcSystemError,
    ProducerExistsError,
    TooLargeError,
    TruncatedError,
    VersionError,
    WaitTimeoutError,
    WrongModeError,
)
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

__version__ = "0.1.0"

__all__ = [
    "Borrowed",
    "Channel",
    "ChannelExistsError",
    "ChannelNotFoundError",
    "ChannelPermissionError",
    "ChannelOptions",
    "ClosedError",
    "Consumer",
    "CorruptError",
    "DEFAULT_MAX_PEERS",
    "DEFAULT_SLOT_COUNT",
    "DEFAULT_SLOT_SIZE",
    "EmptyError",
    "FullError",
    "InvalidArgumentError",
    "LappedError",
    "Mode",
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
    "Reservation",
    "Stats",
    "Subscriber",
    "TooLargeError",
    "TruncatedError",
    "VersionError",
    "Wait",
    "WaitTimeoutError",
    "WrongModeError",
    "channel_path",
]
