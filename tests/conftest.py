"""Shared test set-up: no network and one torch thread."""

from __future__ import annotations

import os
import socket
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine, spinning threads of one process
# (or of the subprocesses that the resume and DDP tests start) otherwise starve the others' work.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

# The tests use tiny tensors, for which a second thread costs more than it gives: on a busy 2-core
# machine, tiny convolutions ran 30-100 times slower with two threads than with one.
torch.set_num_threads(1)


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never reach the network: any connection to a non-loopback address raises NetworkBlocked."""
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in {"localhost", "::1"}):
            return real_connect(self, address)
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise NetworkBlocked(f"test tried to reach the network: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield


@pytest.fixture
def opened(monkeypatch) -> list:
    """The files passed to PIL.Image.open, in order, as Paths ("a file object" for an open file).

    Every image or mask a dataset decodes goes through PIL.Image.open, so tests count decodes with it:
    `len(opened)`, `opened == []`, `Counter(opened)`, `mask_path in opened`; `opened.clear()` starts over.
    """
    from PIL import Image

    calls = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        calls.append(Path(fp) if isinstance(fp, str | os.PathLike) else "a file object")
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    return calls
