from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """A fresh directory on /dev/shm (a tmpfs) when there is one."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="podipc-pytest-", dir=base) as d:
        yield Path(d)
