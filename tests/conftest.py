"""Shared test set-up: no network and one torch thread."""

from __future__ import annotations

import os
import socket

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
