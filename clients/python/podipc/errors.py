"""podipc's errors: one class per libpodipc error code (podipc.h).

Every class derives from PodipcError, and those with a Python meaning also
from the matching built-in (TimeoutError, FileExistsError, ...), so both
``except podipc.EmptyError`` and ``except BlockingIOError`` work.
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
