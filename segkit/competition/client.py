"""The terminal's way to the competition service: what `segkit submit FILE --server URL --token TOKEN` does.

Standard library only (urllib): a multipart/form-data POST of the file to `URL/api/submissions` with the
header `Authorization: Bearer TOKEN`, the file streamed from disk rather than read into memory.  The answer
is the JSON the upload page shows (segkit.competition.service).
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path


class ClientError(RuntimeError):
    """The server could not be reached, or refused the request (the message says why)."""


class MultipartBody:
    """A file-like multipart/form-data body holding one file field, read piece by piece (for urllib)."""

    def __init__(self, path: Path, field: str = "file"):
        self.boundary = "segkit-" + secrets.token_hex(16)
        name = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head = (f"--{self.boundary}\r\n"
                f"Content-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.length = len(head) + path.stat().st_size + len(tail)
        self._parts = [head, open(path, "rb"), tail]  # noqa: SIM115 - closed in read() / close()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while self._parts and (size < 0 or len(out) < size):
            part = self._parts[0]
            want = -1 if size < 0 else size - len(out)
            if isinstance(part, bytes):
                piece = part if want < 0 else part[:want]
                rest = b"" if want < 0 else part[want:]
                if rest:
                    self._parts[0] = rest
                else:
                    self._parts.pop(0)
            else:
                piece = part.read(want if want >= 0 else -1)
                if not piece or want < 0:
                    part.close()
                    self._parts.pop(0)
            out += piece
        return bytes(out)

    def close(self) -> None:
        for part in self._parts:
            if not isinstance(part, bytes):
                part.close()
        self._parts = []


def request_json(url: str, token: str | None = None, method: str = "GET", body=None,
                 headers: dict | None = None, timeout: float = 900) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of one request; ClientError when the server cannot be reached."""
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=all_headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"{}")
        except ValueError:
            return err.code, {"error": f"the server answered {err.code} {err.reason}"}
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ClientError(f"cannot reach the competition server at {url} ({reason})") from None


def submit_file(path: str | os.PathLike, server: str, token: str, timeout: float = 900) -> tuple[int, dict]:
    """Upload one submission (a zip of masks or a .pt checkpoint); returns (HTTP status, the JSON answer)."""
    path = Path(path)
    if not path.is_file():
        raise ClientError(f"{path} not found (or not a file)")
    body = MultipartBody(path)
    try:
        return request_json(server.rstrip("/") + "/api/submissions", token, "POST", body,
                            {"Content-Type": body.content_type, "Content-Length": str(body.length)}, timeout)
    finally:
        body.close()
