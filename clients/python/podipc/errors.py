"""podipc's errors: one class per libpodipc error code (podipc.h), and one per
message-queue error code (docs/mq-protocol.md, "Error codes").

Every class derives from PodipcError, and those with a Python meaning also
from the matching built-in (TimeoutError, FileExistsError, ...), so both
``except podipc.EmptyError`` and ``except BlockingIOError`` work. The
message-queue errors derive from MQError, and where they mean what a
shared-memory error means, from that one too (QueueFullError is a FullError,
MessageTooLargeError a TooLargeError, a send still held at its timeout both a
QueueFullError and a WaitTimeoutError).
"""

from __future__ import annotations

import errno as _errno
import os


class PodipcError(Exception):
    """A libpodipc call failed. code is the negative podipc_error value."""

    code: int = 0

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class PodipcSystemError(PodipcError, OSError):
    """A system call failed (PODIPC_ERR_SYSTEM); errno says which error."""

    code = -1

    def __init__(self, message: str, code: int | None = None, errno: int = 0) -> None:
        PodipcError.__init__(self, message, code)
        self.errno = errno
        self.strerror = os.strerror(errno) if errno else message
        self._message = message

    def __str__(self) -> str:
        return self._message


class ChannelNotFoundError(PodipcSystemError, FileNotFoundError):
    """There is no file at the path (ENOENT)."""


class ChannelPermissionError(PodipcSystemError, PermissionError):
    """The process may not open the file (EACCES, EPERM)."""


_SYSTEM_BY_ERRNO: dict[int, type[PodipcSystemError]] = {
    _errno.ENOENT: ChannelNotFoundError,
    _errno.EACCES: ChannelPermissionError,
    _errno.EPERM: ChannelPermissionError,
}


class InvalidArgumentError(PodipcError, ValueError):
    code = -2


class NotChannelError(PodipcError):
    """The file is not a podipc channel (its magic is wrong)."""

    code = -3


class VersionError(PodipcError):
    """The file has a layout version this library does not read."""

    code = -4


class CorruptError(PodipcError):
    """The header or ring holds values no channel can hold."""

    code = -5


class TruncatedError(CorruptError):
    """The file is shorter than its header says."""

    code = -6


class ChannelExistsError(PodipcError, FileExistsError):
    code = -7


class NoSpaceError(PodipcError, OSError):
    code = -8


class FullError(PodipcError, BlockingIOError):
    """No free slot, and the call does not wait (timeout=0 or overflow FAIL)."""

    code = -9


class EmptyError(PodipcError, BlockingIOError):
    """No message, and the call does not wait (timeout=0)."""

    code = -10


class WaitTimeoutError(PodipcError, TimeoutError):
    """The timeout passed."""

    code = -11


class TooLargeError(PodipcError, ValueError):
    """A message does not fit the slot, or the buffer given to recv_into."""

    code = -12
    size: int = 0


class WrongModeError(PodipcError):
    """The operation does not exist in this channel's mode."""

    code = -13


class ProducerExistsError(PodipcError):
    """A broadcast channel already has a live producer."""

    code = -14


class PeerTableFullError(PodipcError):
    code = -15


class OutstandingError(PodipcError):
    """A reservation or borrowed message is still held."""

    code = -16


class NotHeldError(PodipcError):
    """Commit, abort or release with nothing held."""

    code = -17


class LappedError(PodipcError):
    """A subscriber was lapped: lost messages were overwritten before it read them."""

    code = -18
    lost: int = 0


class NotRegularError(PodipcError):
    """The path is a FIFO, a device, a directory or a symbolic link."""

    code = -19


class ClosedError(PodipcError, ValueError):
    """The object was closed (a Python-side error; libpodipc never saw the call)."""

    code = 0


class MQError(PodipcError):
    """A message-queue operation failed. mq_code is the protocol's error code
    (docs/mq-protocol.md) when the broker reported it, 0 when the client found
    the problem itself; text is the broker's explanation, if any."""

    code = 0
    mq_code: int = 0

    def __init__(self, message: str, mq_code: int | None = None, text: str = "") -> None:
        super().__init__(message)
        if mq_code is not None:
            self.mq_code = mq_code
        self.text = text


class UnknownQueueError(MQError, LookupError):
    """The broker has no queue of that name (code 1)."""

    mq_code = 1


class QueueFullError(MQError, FullError):
    """The queue is full and its overflow policy is Reject (code 2)."""

    mq_code = 2


class QueueTimeoutError(QueueFullError, WaitTimeoutError):
    """The queue was still full when the send's timeout passed (Block policy, code 5)."""

    mq_code = 5


class MessageTooLargeError(MQError, TooLargeError):
    """The body exceeds the queue's or the broker's limit (code 3)."""

    mq_code = 3


class TooManyPendingError(MQError):
    """The connection exceeded its window of unconfirmed sends (code 4)."""

    mq_code = 4


class ProtocolError(MQError):
    """A peer broke the wire protocol: the broker reports a bad request
    (codes 6, 11), or the client received a frame it cannot accept."""

    mq_code = 6


class BrokerShutdownError(MQError):
    """The broker is shutting down (code 7)."""

    mq_code = 7


class TooManyConsumersError(MQError):
    """The connection has as many consumers as the broker allows (code 8)."""

    mq_code = 8


class QueueDeletedError(MQError):
    """The queue was removed from the configuration (code 9)."""

    mq_code = 9


class BrokerInternalError(MQError):
    """The broker failed, for example writing its journal (code 10)."""

    mq_code = 10


class UnsupportedVersionError(MQError, VersionError):
    """Client and broker share no protocol version (code 12)."""

    mq_code = 12


class TooManyConnectionsError(MQError):
    """The broker refused the connection: it has as many as allowed (code 13)."""

    mq_code = 13


class BrokerUnavailableError(MQError, ConnectionError):
    """No broker answers on the socket (it does not exist or refuses connections)."""


class ConnectionLostError(MQError, ClosedError, ConnectionError):
    """The connection to the broker was lost (and not, or no longer, re-established)."""


class ImpostorError(MQError, PermissionError):
    """The broker's socket is served by a process of another user than the
    sidecar's ($PODIPC_BROKER_UID): some other container took its place."""


class StaleDeliveryError(MQError):
    """The delivery came on a connection that was lost since: the broker
    redelivers it, so it can be neither acknowledged nor rejected."""


class AlreadySettledError(MQError):
    """The delivery was acknowledged or rejected already."""


_MQ_BY_CODE: dict[int, type[MQError]] = {
    1: UnknownQueueError,
    2: QueueFullError,
    3: MessageTooLargeError,
    4: TooManyPendingError,
    5: QueueTimeoutError,
    6: ProtocolError,
    7: BrokerShutdownError,
    8: TooManyConsumersError,
    9: QueueDeletedError,
    10: BrokerInternalError,
    11: ProtocolError,
    12: UnsupportedVersionError,
    13: TooManyConnectionsError,
    14: ProtocolError,
}

_MQ_NAMES: dict[int, str] = {
    1: "unknown queue",
    2: "queue full",
    3: "message too large",
    4: "too many pending sends",
    5: "timeout",
    6: "bad request",
    7: "broker shutting down",
    8: "too many consumers",
    9: "queue deleted",
    10: "internal error",
    11: "duplicate consumer id",
    12: "unsupported protocol version",
    13: "too many connections",
    14: "handshake timeout",
    15: "write timeout",
}


def from_mq_code(code: int, text: str) -> MQError:
    """The exception for a broker's error code and explanation; unknown codes
    are BrokerInternalError, as in the Go client."""
    name = _MQ_NAMES.get(code, f"code {code}")
    message = f"mq broker: {name}: {text}" if text else f"mq broker: {name}"
    return _MQ_BY_CODE.get(code, BrokerInternalError)(message, code, text)


_ALL: tuple[type[PodipcError], ...] = (
    PodipcSystemError,
    InvalidArgumentError,
    NotChannelError,
    VersionError,
    CorruptError,
    TruncatedError,
    ChannelExistsError,
    NoSpaceError,
    FullError,
    EmptyError,
    WaitTimeoutError,
    TooLargeError,
    WrongModeError,
    ProducerExistsError,
    PeerTableFullError,
    OutstandingError,
    NotHeldError,
    LappedError,
    NotRegularError,
)
_BY_CODE: dict[int, type[PodipcError]] = {cls.code: cls for cls in _ALL}


def from_code(code: int, message: str, errno: int = 0) -> PodipcError:
    """The exception for a libpodipc return code and its last_error message."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return PodipcError(f"{message} (libpodipc error {code})", code)
    if cls is PodipcSystemError:
        sys_cls = _SYSTEM_BY_ERRNO.get(errno, PodipcSystemError)
        return sys_cls(message, code, errno or _errno.EIO)
    return cls(message)
