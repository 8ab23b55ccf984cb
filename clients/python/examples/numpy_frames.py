"""Camera frames through a podipc channel with numpy, without a copy.

A producer writes each frame straight into a channel slot (an ndarray over
the reserved slot) and a consumer process reads it in place (an ndarray over
the borrowed message); only the consumer's result leaves the mapping.
Each message is the examples' 16-byte stamp (send time in Unix nanoseconds,
frame number; little-endian) followed by the frame, so the C example
consumer reads these frames too:

    podipc-example-c consume --shm frames &           # in C (examples/c), beside the sidecar
    python3 examples/numpy_frames.py --role producer --channel frames

    python3 examples/numpy_frames.py                 # both roles, on a temporary channel
    python3 examples/numpy_frames.py --channel NAME  # on the pod's channel $PODIPC_DIR/shm/NAME
                                                     # (the queue IPCChannel's slot size must fit a frame)
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

import podipc

HEIGHT, WIDTH = 120, 160  # a float32 frame: 76 800 bytes
STAMP = struct.Struct("<QQ")  # send time (Unix ns), frame number
FRAME_BYTES = HEIGHT * WIDTH * 4


def produce(path: str, frames: int) -> None:
    with podipc.Channel.open(path) as ch, ch.producer() as p:
        for i in range(frames):
            with p.reserve(timeout=30) as slot:
                buf = slot.buffer
                frame = np.frombuffer(buf, dtype=np.float32, count=HEIGHT * WIDTH, offset=STAMP.size)
                frame = frame.reshape(HEIGHT, WIDTH)
                frame[:] = i  # "capture" into the slot itself
                frame[0, 0] = -1.0  # a marker the consumer checks
                STAMP.pack_into(buf, 0, time.time_ns(), i)
                del frame, buf  # the views must not outlive the reservation
                slot.commit(STAMP.size + FRAME_BYTES)


def consume(path: str, frames: int) -> None:
    with podipc.Channel.open(path) as ch, ch.consumer() as c:
        start = time.perf_counter()
        for i in range(frames):
            with c.borrow(timeout=30) as view:
                _, seq = STAMP.unpack_from(view)
                frame = np.frombuffer(view, dtype=np.float32, offset=STAMP.size).reshape(HEIGHT, WIDTH)
                if seq != i or frame[0, 0] != -1.0 or frame[HEIGHT - 1, WIDTH - 1] != i:
                    sys.exit(f"frame {i} arrived damaged")
                brightness = float(frame[1:].mean())  # computed in place
                del frame
            if brightness != i:
                sys.exit(f"frame {i}: mean {brightness}")
        elapsed = time.perf_counter() - start
        size = STAMP.size + FRAME_BYTES
        print(f"consumed {frames} frames of {size} bytes in place: "
              f"{frames / elapsed:.0f} frames/s, {frames * size / elapsed / 1e9:.2f} GB/s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channel", help="the pod's channel name (default: a temporary channel)")
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--role", choices=["both", "producer", "consumer"], default="both")
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "producer":
        return produce(args.path or podipc.channel_path(args.channel), args.frames)
    if args.role == "consumer":
        return consume(args.path or podipc.channel_path(args.channel), args.frames)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None) as d:
        path = podipc.channel_path(args.channel) if args.channel else os.path.join(d, "frames")
        if not args.channel:
            podipc.Channel.create(path, slot_size=STAMP.size + FRAME_BYTES, slot_count=8).close()
        consumer = subprocess.Popen([sys.executable, __file__, "--role", "consumer", "--path", path,
                                     "--frames", str(args.frames)])  # fmt: skip
        produce(path, args.frames)
        sys.exit(consumer.wait())


if __name__ == "__main__":
    main()
