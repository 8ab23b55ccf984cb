"""Camera frames through a podipc channel with numpy, without a copy.

A producer writes each frame straight into a channel slot (an ndarray over
the reserved slot) and a consumer process reads it in place (an ndarray over
the borrowed message); only the consumer's result leaves the mapping.

    python3 examples/numpy_frames.py                 # both roles, on a temporary channel
    python3 examples/numpy_frames.py --channel NAME  # on the pod's channel $PODIPC_DIR/shm/NAME
                                                     # (the queue IPCChannel's slot size must fit a frame)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import podipc

HEIGHT, WIDTH = 120, 160  # a float32 frame: 76 800 bytes


def produce(path: str, frames: int) -> None:
    with podipc.Channel.open(path) as ch, ch.producer() as p:
        for i in range(frames):
            with p.reserve(timeout=30) as slot:
                frame = np.frombuffer(slot.buffer, dtype=np.float32, count=HEIGHT * WIDTH).reshape(HEIGHT, WIDTH)
                frame[:] = i  # "capture" into the slot itself
                frame[0, 0] = -1.0  # a marker the consumer checks
                nbytes = frame.nbytes
                del frame  # the view must not outlive the reservation
                slot.commit(nbytes)


def consume(path: str, frames: int) -> None:
    with podipc.Channel.open(path) as ch, ch.consumer() as c:
        start = time.perf_counter()
        for i in range(frames):
            with c.borrow(timeout=30) as view:
                frame = np.frombuffer(view, dtype=np.float32).reshape(HEIGHT, WIDTH)
                if frame[0, 0] != -1.0 or frame[HEIGHT - 1, WIDTH - 1] != i:
                    sys.exit(f"frame {i} arrived damaged")
                brightness = float(frame[1:].mean())  # computed in place
                del frame
            if brightness != i:
                sys.exit(f"frame {i}: mean {brightness}")
        elapsed = time.perf_counter() - start
        size = HEIGHT * WIDTH * 4
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
            podipc.Channel.create(path, slot_size=HEIGHT * WIDTH * 4, slot_count=8).close()
        consumer = subprocess.Popen([sys.executable, __file__, "--role", "consumer", "--path", path,
                                     "--frames", str(args.frames)])  # fmt: skip
        produce(path, args.frames)
        sys.exit(consumer.wait())


if __name__ == "__main__":
    main()
