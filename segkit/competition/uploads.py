"""Receiving an upload: the raw request body streamed to disk under a size cap, then the file taken out of it.

An upload is an HTTP request with a multipart/form-data body whose field `file` holds the submission.  Nothing
parses a byte of it before the whole body is on disk and known to be under the cap:

1. a Content-Length above the cap is refused before the body is read (413);
2. the body is written to `<folder>/<random>.body` chunk by chunk as it arrives, counting bytes, and
   refused (the file deleted) as soon as it passes the cap, whatever Content-Length said;
3. python-multipart's streaming parser then reads that file in chunks and writes the content of the field
   `file` to `<folder>/<random>.<zip|pt>`; other fields are ignored, a second `file` field is refused.

The stored name is random; the name the student gave (Content-Disposition filename) is kept only as text
(at most 200 characters, path separators removed) for the board and the history page.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

CHUNK = 1 << 20
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the file, far more than any client sends
MAX_NAME = 200


class UploadError(Exception):
    """A request that cannot be an upload: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    path: Path  # where the file's bytes are now
    file_name: str  # the name the student gave it (text only)
    size: int


def clean_file_name(raw: bytes | str | None) -> str:
    """The client's file name as safe text: decoded, its folders dropped, control characters removed."""
    if raw is None:
        return "upload"
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if c.isprintable())
    return text[:MAX_NAME] or "upload"


async def receive_body(request, folder: Path, cap: int) -> Path:
    """Stream the request body into a new file under `folder`, refusing it past `cap` bytes (UploadError)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UploadError(400, f"Content-Length must be a number of bytes, got {declared[:40]!r}")
        if int(declared) > cap:
            raise UploadError(413, f"the upload is {int(declared)} bytes; at most {cap} are accepted")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(16)}.body"
    received = 0
    try:
        with open(path, "wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > cap:
                    raise UploadError(413, f"the upload passed {cap} bytes, the most that is accepted; "
                                           "stopped reading")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def extract_file(body: Path, content_type: str | None, suffix_for) -> Upload:
    """Take the field `file` out of a multipart body stored at `body` (which is deleted afterwards).

    suffix_for(file_name) -> ".zip" or ".pt": the suffix of the stored file.
    """
    try:
        kind, options = parse_options_header(content_type or "")
        if kind != b"multipart/form-data" or b"boundary" not in options:
            raise UploadError(415, "send the file as multipart/form-data, in a field named 'file'")
        state = {"name": None, "file_name": None, "out": None, "header": b"", "value": b"",
                 "headers": {}, "files": 0, "size": 0, "path": None}

        def on_header_field(data, start, end):
            state["header"] += data[start:end]

        def on_header_value(data, start, end):
            state["value"] += data[start:end]

        def on_header_end():
            state["headers"][state["header"].lower()] = state["value"]
            state["header"], state["value"] = b"", b""

        def on_headers_finished():
            _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
            state["headers"] = {}
            if disposition.get(b"name") != b"file":
                state["out"] = None
                return
            state["files"] += 1
            if state["files"] > 1:
                raise UploadError(400, "the upload holds more than one field named 'file'; send one file")
            name = clean_file_name(disposition.get(b"filename"))
            state["file_name"] = name
            state["path"] = body.with_name(body.stem + suffix_for(name))
            state["out"] = open(state["path"], "wb")

        def on_part_data(data, start, end):
            if state["out"] is not None:
                state["out"].write(data[start:end])
                state["size"] += end - start

        def on_part_end():
            if state["out"] is not None:
                state["out"].flush()
                os.fsync(state["out"].fileno())
                state["out"].close()
                state["out"] = None

        parser = MultipartParser(options[b"boundary"], {
            "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data, "on_part_end": on_part_end})
        try:
            with open(body, "rb") as source:
                while chunk := source.read(CHUNK):
                    parser.write(chunk)
            parser.finalize()
        except UploadError:
            raise
        except Exception as err:  # python-multipart raises its own errors on a malformed body
            raise UploadError(400, f"malformed multipart body ({type(err).__name__}: {err})") from None
        finally:
            if state["out"] is not None:
                state["out"].close()
        if state["files"] == 0 or state["path"] is None:
            raise UploadError(400, "the upload has no field named 'file'")
        return Upload(path=state["path"], file_name=state["file_name"], size=state["size"])
    except UploadError:
        for leftover in body.parent.glob(body.stem + ".*"):
            if leftover != body:
                leftover.unlink(missing_ok=True)
        raise
    finally:
        body.unlink(missing_ok=True)
