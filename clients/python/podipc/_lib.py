"""Loads libpodipc and declares the C functions podipc.shm calls.

The library is looked up, in order, at $PODIPC_LIBRARY, next to this package
(a wheel or an image may put libpodipc.so there), in the source tree
(clients/c/build, where ``make -C clients/c`` puts it), and on the system
library path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

c_int = ctypes.c_int
c_int64 = ctypes.c_int64
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64
c_size_t = ctypes.c_size_t
c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
P = ctypes.POINTER


class ChannelOptions(ctypes.Structure):
    _fields_ = [
        ("mode", c_int),
        ("overflow", c_int),
        ("slot_size", c_uint32),
        ("slot_count", c_uint32),
        ("max_peers", c_uint32),
    ]


class PeerOptions(ctypes.Structure):
    _fields_ = [("wait", c_int), ("spin_ns", c_int64), ("liveness_check_ns", c_int64)]


class Stats(ctypes.Structure):
    _fields_ = [
        ("mode", c_int),
        ("overflow", c_int),
        ("capacity", c_uint32),
        ("slot_size", c_uint32),
        ("depth", c_uint64),
        ("sent", c_uint64),
        ("received", c_uint64),
        ("lost", c_uint64),
        ("redelivered", c_uint64),
        ("abandoned", c_uint64),
        ("reaped", c_uint64),
        ("repaired", c_uint64),
        ("producers", c_uint32),
        ("consumers", c_uint32),
        ("subscribers", c_uint32),
        ("dead_peers", c_uint32),
    ]


# name: (restype, argtypes)
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "podipc_strerror": (c_char_p, [c_int]),
    "podipc_last_error": (c_char_p, []),
    "podipc_channel_create": (c_int, [c_char_p, P(ChannelOptions), ctypes.c_uint, P(c_void_p)]),
    "podipc_channel_open": (c_int, [c_char_p, P(c_void_p)]),
    "podipc_channel_close": (None, [c_void_p]),
    "podipc_channel_get_options": (None, [c_void_p, P(ChannelOptions)]),
    "podipc_channel_stats": (c_int, [c_void_p, P(Stats)]),
    "podipc_channel_reap_dead_peers": (c_int, [c_void_p, P(ctypes.c_uint)]),
    "podipc_producer_open": (c_int, [c_void_p, P(PeerOptions), P(c_void_p)]),
    "podipc_producer_reserve": (c_int, [c_void_p, c_int64, P(c_void_p), P(c_size_t)]),
    "podipc_producer_commit": (c_int, [c_void_p, c_size_t]),
    "podipc_producer_abort": (c_int, [c_void_p]),
    "podipc_producer_send": (c_int, [c_void_p, c_void_p, c_size_t, c_int64]),
    "podipc_producer_close": (c_int, [c_void_p]),
    "podipc_consumer_open": (c_int, [c_void_p, P(PeerOptions), P(c_void_p)]),
    "podipc_consumer_borrow": (c_int, [c_void_p, c_int64, P(c_void_p), P(c_size_t)]),
    "podipc_consumer_release": (c_int, [c_void_p]),
    "podipc_consumer_recv": (c_int, [c_void_p, c_void_p, c_size_t, P(c_size_t), c_int64]),
    "podipc_consumer_close": (c_int, [c_void_p]),
    "podipc_subscriber_open": (c_int, [c_void_p, P(PeerOptions), P(c_void_p)]),
    "podipc_subscriber_borrow": (c_int, [c_void_p, c_int64, P(c_void_p), P(c_size_t)]),
    "podipc_subscriber_release": (c_int, [c_void_p]),
    "podipc_subscriber_recv": (c_int, [c_void_p, c_void_p, c_size_t, P(c_size_t), c_int64]),
    "podipc_subscriber_lost": (c_uint64, [c_void_p]),
    "podipc_subscriber_close": (c_int, [c_void_p]),
}


def _candidates() -> list[str]:
    here = Path(__file__).resolve().parent
    found = ctypes.util.find_library("podipc")
    paths = [
        os.environ.get("PODIPC_LIBRARY", ""),
        str(here / "libpodipc.so"),
        str(here.parent.parent / "c" / "build" / "libpodipc.so"),
        "libpodipc.so.0",
        found or "",
    ]
    return [p for p in paths if p]


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path, use_errno=True)
        except OSError as e:
            errors.append(f"{path}: {e}")
            continue
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        return lib
    tried = "; ".join(errors) or "no candidate exists"
    raise ImportError(
        "podipc: cannot load libpodipc (build it with `make -C clients/c`, install it, "
        f"or set PODIPC_LIBRARY to its path): {tried}"
    )


lib = _load()

# PyMemoryView_FromMemory gives a memoryview of the mapping itself: format
# "B", read-only or writable, and no copy.
_from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
_from_memory.restype = ctypes.py_object
_from_memory.argtypes = [c_void_p, ctypes.c_ssize_t, c_int]
_PYBUF_READ = 0x100
_PYBUF_WRITE = 0x200


def view(address: int, length: int, writable: bool) -> memoryview:
    """A memoryview of length bytes at address (in a channel's mapping)."""
    mv: memoryview = _from_memory(address, length, _PYBUF_WRITE if writable else _PYBUF_READ)
    return mv
