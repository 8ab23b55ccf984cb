"""A job queue through the sidecar's broker: a producer process pipelines
small jobs, a consumer process takes and acknowledges them; each prints its
rate. Jobs carry the examples' stamp (bytes 0-7 the send time in Unix
nanoseconds, 8-15 a sequence number, little-endian), so this consumer also
takes the jobs of the Go and C example producers
(``podipc-example-c produce --mq jobs``) and reports their latency.

    PODIPC_DIR=/dev/shm/podipc python3 examples/mq_jobs.py consume jobs 100000 &
    PODIPC_DIR=/dev/shm/podipc python3 examples/mq_jobs.py produce jobs 100000 64

(PYTHONPATH=clients/python from the repository's root; the queue must be
declared in the sidecar's configuration, see examples/channels.yaml.)
"""

from __future__ import annotations

import struct
import sys
import time

from podipc import mq


STAMP = struct.Struct("<QQ")  # send time (Unix ns), sequence number


def produce(queue: str, count: int, size: int) -> None:
    pad = bytes(max(0, size - STAMP.size))
    with mq.Client() as c:
        start = time.monotonic()
        window: list[mq.Confirmation] = []
        for i in range(count):
            # Pipelined: many sends in flight, written in batches; the window
            # of unconfirmed sends (the broker's limits) bounds them.
            window.append(c.send_async(queue, STAMP.pack(time.time_ns(), i) + pad, timeout=30))
            if len(window) >= 1024:
                for cf in window:
                    cf.wait(30)  # every send confirmed: the message is queued
                window.clear()
        for cf in window:
            cf.wait(30)
        took = time.monotonic() - start
    print(f"produced {count} messages of {size} B in {took:.2f} s: {count / took:,.0f} msgs/s")


def consume(queue: str, count: int) -> None:
    with mq.Client() as c, c.consume(queue, prefetch=512) as jobs:
        start = 0.0
        latency = 0
        for n, d in enumerate(jobs, 1):
            if n == 1:
                start = time.monotonic()
            sent, seq = STAMP.unpack_from(d.body)  # d.body: bytes, the application's own
            latency += time.time_ns() - sent
            d.ack()  # pipelined; merged with the following acks into one frame
            if n == count:
                break
        c.ping(30)  # every ack has reached the broker
        took = time.monotonic() - start
    print(f"consumed {count} messages in {took:.2f} s: {count / max(took, 1e-9):,.0f} msgs/s, "
          f"mean latency {latency / count / 1e3:.0f} us (last job {seq})")  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "produce":
        produce(argv[1], int(argv[2]), int(argv[3]))
    elif len(argv) == 3 and argv[0] == "consume":
        consume(argv[1], int(argv[2]))
    else:
        print("usage: mq_jobs.py produce QUEUE COUNT SIZE | consume QUEUE COUNT", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
