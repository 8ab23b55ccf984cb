from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """A fresh directory on /dev/shm (a tmpfs) when there is one."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="podipc-pytest-", dir=base) as d:
        yield Path(d)


@pytest.fixture(scope="session")
def sidecar_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sidecar binary: $PODIPC_SIDECAR, or built once per session with go build."""
    given = os.environ.get("PODIPC_SIDECAR")
    if given:
        p = Path(given)
        if not os.access(p, os.X_OK):
            pytest.fail(f"PODIPC_SIDECAR={given} is not an executable: build it with `go build -o {given} ./cmd/sidecar`")
        return p
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if go is None:
        pytest.fail("the message-queue tests need a real broker: install Go or set PODIPC_SIDECAR to a built podipc-sidecar")
    out = tmp_path_factory.mktemp("sidecar") / "podipc-sidecar"
    r = subprocess.run([go, "build", "-o", str(out), "./cmd/sidecar"], cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"go build ./cmd/sidecar failed:\n{r.stderr}")
    return out


# The queues every test's broker declares (docs/ipcchannel.md, messageQueue).
QUEUES = """\
apiVersion: podipc.io/v1alpha1
kind: ChannelConfig
channels:
- {name: work, type: MessageQueue, messageQueue: {maxDepth: 100000, maxBytes: 67108864, maxMessageSize: 8388608}}
- {name: rejecting, type: MessageQueue, messageQueue: {maxDepth: 2, overflow: Reject}}
- {name: blocking, type: MessageQueue, messageQueue: {maxDepth: 1, overflow: Block}}
- {name: small, type: MessageQueue, messageQueue: {maxMessageSize: 1024}}
- name: retried
  type: MessageQueue
  messageQueue: {maxRedeliveries: 1, deadLetterQueue: dead}
- name: expiring
  type: MessageQueue
  messageQueue: {defaultTTL: 50ms, deadLetterQueue: dead}
- {name: dead, type: MessageQueue, messageQueue: {overflow: Reject}}
- {name: amo, type: MessageQueue, messageQueue: {delivery: AtMostOnce}}
- {name: durable, type: MessageQueue, messageQueue: {persistence: Volume}}
"""


class Broker:
    """A podipc-sidecar serving QUEUES on a tmpfs directory of its own."""

    def __init__(self, binary: Path, directory: Path) -> None:
        self.binary = binary
        self.dir = directory
        self.config = directory / "channels.yaml"
        self.config.write_text(QUEUES)
        self.socket = str(directory / "mq.sock")
        self.log = directory / "sidecar.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        started = self.log.read_text().count("state=Ready") if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--config", str(self.config), "--dir", str(self.dir),
                 "--metrics-addr", "127.0.0.1:0", "--log-format", "text"],
                stdout=log, stderr=log,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the sidecar exited with {self.proc.returncode}:\n{self.log.read_text()}")
            text = self.log.read_text()
            # Queues are declared once the reconciler reports them Ready.
            if os.path.exists(self.socket) and text.count("state=Ready") >= started + QUEUES.count("name:"):
                return
            time.sleep(0.02)
        pytest.fail(f"the sidecar did not serve {self.socket} within 20 s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def broker(sidecar_bin: Path, tmpfs: Path) -> Iterator[Broker]:
    b = Broker(sidecar_bin, tmpfs)
    b.start()
    yield b
    b.stop()
