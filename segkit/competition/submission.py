"""Reading a student's submission zip safely: every check, and every problem reported in one pass.

A submission is a zip of PNG masks, one per test image, named `<image_id>.png`, flat (no folders), each of the
test image's size, mode "P" or "L", values 0..num_classes-1.  It comes from a student, so it is untrusted:

- nothing is ever extracted to disk; each member is read into memory, in chunks, never past a byte cap
  (the sizes in the zip's headers are declared by whoever made the zip, so the bytes actually inflated are
  counted as well: a zip bomb stops at the cap, it is never inflated in full);
- member names are attacker-chosen: folders, `..`, absolute paths, duplicates and symbolic links are refused;
- the PNG header is checked (signature bytes, size, mode) before a single pixel is decoded, so a 100000×100000
  "decompression bomb" costs nothing; Pillow's own bomb check is turned from a warning into a refusal;
- a wall-clock budget is checked between members.

`check_submission` walks the zip once.  For every member that passes, it hands the decoded mask to a callback
(the scorer's), so each PNG is decoded exactly once; the caller discards what the callback accumulated when
any problem was found.
"""

from __future__ import annotations

import os
import stat
import struct
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
from PIL import Image

from segkit.competition.rules import Rules

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
END_RECORD = struct.Struct("<4s4H2LH")  # zip end of central directory: ..., directory size, offset, comment
DIRECTORY_BYTES_PER_MEMBER = 1024  # a central directory entry is 46 bytes plus the name and extra fields
READ_CHUNK = 256 * 1024
ALLOWED_COMPRESSION = {zipfile.ZIP_STORED: "store", zipfile.ZIP_DEFLATED: "deflate"}
SHOWN_PER_KIND = 20  # problems of one kind listed by name before the rest are counted


@dataclass(frozen=True)
class Problem:
    """One reason to reject a submission.  member: the zip member at fault, or None for the whole zip."""

    member: str | None
    message: str

    def __str__(self) -> str:
        return self.message if self.member is None else f"{self.member!r}: {self.message}"


@dataclass
class SubmissionReport:
    problems: list[Problem] = field(default_factory=list)
    members_checked: int = 0  # members decoded and handed to the callback
    bytes_read: int = 0  # uncompressed bytes actually inflated, over all members

    @property
    def ok(self) -> bool:
        return not self.problems


class MemberTooLarge(Exception):
    """A stream produced more bytes than its cap."""


def read_capped(stream, cap: int, chunk_size: int = READ_CHUNK) -> bytes:
    """All bytes of `stream`, or MemberTooLarge as soon as more than `cap` bytes came out.

    At most cap + 1 bytes are ever produced, whatever the stream claims about its length.
    """
    parts, total = [], 0
    while True:
        chunk = stream.read(min(chunk_size, cap + 1 - total))
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > cap:
            raise MemberTooLarge(total)
        parts.append(chunk)


def central_directory_size(path: str | os.PathLike) -> int | None:
    """Size in bytes of a zip's central directory, read from its end record; None when there is none.

    zipfile reads and parses the whole central directory when it opens a file, one object per entry, so a
    zip of millions of empty entries would cost minutes and gigabytes before any other check could run.
    """
    with open(path, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - END_RECORD.size - 65535))  # the record ends with a comment of <= 64 KiB
        tail = stream.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < END_RECORD.size:
        return None
    return END_RECORD.unpack_from(tail, at)[5]


def name_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this member's name or type is not allowed in a flat zip of `<image_id>.png`, or None."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link; only regular files are allowed"
    if info.is_dir():
        return "folder entry; the zip must be flat (no folders)"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path; names must be '<image_id>.png' with no folders"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "path traversal ('..'); names must be '<image_id>.png' with no folders"
    if len(parts) > 1:
        return "name has folders; the zip must be flat: '<image_id>.png'"
    if not name.endswith(".png"):
        return "name must be '<image_id>.png' (lower-case .png extension)"
    if info.flag_bits & 0x1:
        return "encrypted; encryption is not allowed"
    if info.compress_type not in ALLOWED_COMPRESSION:
        return f"compression method {info.compress_type} is not allowed; use deflate or store"
    return None


def png_header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, read from the bytes without decoding anything."""
    if len(data) >= 24 and data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def decode_mask_png(data: bytes, height: int, width: int,
                    num_classes: int) -> tuple[np.ndarray | None, str | None]:
    """Decode one submitted mask: ((H, W) uint8 array, None) when it is valid, else (None, the reason).

    Order of checks: PNG signature (content, not the file name) -> header (Pillow parses only the chunks
    before the pixel data) -> size -> mode -> decode -> values.  Nothing is decoded unless the header says
    exactly width×height, so the work per member is bounded by the test image's pixel count.
    """
    if not data.startswith(PNG_SIGNATURE):
        hint = " (looks like a JPEG)" if data.startswith(b"\xff\xd8\xff") else ""
        return None, f"not a PNG file{hint}: content starts with {data[:8]!r}, expected the PNG signature"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(data), formats=["PNG"])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        w, h = png_header_size(data) or (0, 0)
        return None, (f"decompression bomb: the PNG header claims {w}×{h} pixels (the test image is "
                      f"{width}×{height}); not decoded")
    except Exception as err:  # Pillow raises many types on broken headers
        return None, f"corrupt PNG: {type(err).__name__}: {err}"
    if image.size != (width, height):
        w, h = image.size
        return None, f"wrong size {w}×{h}; the test image is {width}×{height} (width×height); not decoded"
    if image.mode not in ("P", "L"):
        return None, (f"wrong mode {image.mode!r}; expected 'P' (palette) or 'L' (grayscale) holding class "
                      "indices, not colours")
    try:
        mask = np.array(image)  # a writable (H, W) uint8 array, so torch.from_numpy can share it
    except Exception as err:
        return None, f"corrupt PNG: {type(err).__name__}: {err}"
    if mask.dtype != np.uint8 or mask.shape != (height, width):
        return None, f"corrupt PNG: decoded to {mask.dtype} {mask.shape}, expected uint8 ({height}, {width})"
    largest = int(mask.max())
    if largest >= num_classes:
        count = int(np.count_nonzero(mask >= num_classes))
        return None, (f"values out of range: {count} pixel(s) hold values >= {num_classes} "
                      f"(largest {largest}); expected class indices 0..{num_classes - 1}")
    return mask, None


def check_submission(
    zip_path: str | os.PathLike,
    image_sizes: dict[str, tuple[int, int]],
    rules: Rules,
    on_mask: Callable[[str, np.ndarray], None],
    clock: Callable[[], float] = time.monotonic,
) -> SubmissionReport:
    """Check a submission against the test set, calling `on_mask(image_id, mask)` for each valid member.

    image_sizes: image id -> (height, width) of every test image.
    mask passed to on_mask: (H, W) uint8, values 0..num_classes-1.
    The report lists every problem found; members are decoded only when their name, type and declared size
    are fine, and the walk stops early only for the byte and time budgets (which say so).
    """
    report = SubmissionReport()
    problems = report.problems
    deadline = clock() + rules.time_limit_s

    size = os.path.getsize(zip_path)
    if size > rules.max_zip_bytes:
        problems.append(Problem(None, f"the zip file is {size} bytes; the limit is {rules.max_zip_bytes}"))
        return report
    directory = central_directory_size(zip_path)
    directory_limit = rules.max_members * DIRECTORY_BYTES_PER_MEMBER + 65536
    if directory is not None and directory > directory_limit:
        problems.append(Problem(None, f"the zip's list of members is {directory} bytes; {rules.max_members} "
                                      f"members need at most {directory_limit} (too many members)"))
        return report
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            NotImplementedError) as err:
        problems.append(Problem(None, f"corrupt or not a zip file ({type(err).__name__}: {err})"))
        return report

    with archive:
        infos = archive.infolist()
        if len(infos) > rules.max_members:
            problems.append(Problem(None, f"the zip holds {len(infos)} members; at most {rules.max_members} "
                                          "are allowed (one per test image)"))
        readable = _check_names(infos, image_sizes, rules, problems)
        declared = sum(info.file_size for info in readable)
        if declared > rules.max_total_bytes:
            problems.append(Problem(None, f"the members declare {declared} bytes in total; the limit is "
                                          f"{rules.max_total_bytes}"))
            return report
        for position, info in enumerate(readable):
            if clock() > deadline:
                problems.append(Problem(None, f"time limit of {rules.time_limit_s:g} s exceeded after "
                                              f"{position} of {len(readable)} members; stopped"))
                return report
            budget = min(rules.max_member_bytes, rules.max_total_bytes - report.bytes_read)
            try:
                with archive.open(info) as stream:
                    data = read_capped(stream, budget)
            except MemberTooLarge:
                report.bytes_read += budget
                if budget < rules.max_member_bytes:
                    problems.append(Problem(None, f"the members inflate past the total limit of "
                                                  f"{rules.max_total_bytes} bytes; stopped reading"))
                    return report
                problems.append(Problem(info.filename, f"inflates past {budget} bytes although it declares "
                                                       f"{info.file_size}; not read further"))
                continue
            except Exception as err:  # zipfile raises BadZipFile, zlib.error, EOFError, ... on broken data
                problems.append(Problem(info.filename, f"corrupt member ({type(err).__name__}: {err})"))
                continue
            report.bytes_read += len(data)
            image_id = info.filename[: -len(".png")]
            height, width = image_sizes[image_id]
            mask, reason = decode_mask_png(data, height, width, rules.num_classes)
            if reason is not None:
                problems.append(Problem(info.filename, reason))
                continue
            report.members_checked += 1
            if not problems:  # once rejected, decoding continues only to find the other problems
                on_mask(image_id, mask)
    return report


def _check_names(infos, image_sizes, rules: Rules, problems: list[Problem]) -> list[zipfile.ZipInfo]:
    """Append the name, type and declared-size problems; return the members worth reading, in zip order."""
    counts = Counter(info.filename for info in infos)
    readable, seen_ids, per_kind = [], set(), Counter()

    def report(member, message, kind):
        per_kind[kind] += 1
        if per_kind[kind] <= SHOWN_PER_KIND:
            problems.append(Problem(member, message))

    for name, count in counts.items():
        if count > 1:
            report(name, f"duplicate name: appears {count} times", "duplicate")
    for info in infos:
        name = info.filename
        reason = name_problem(info)
        if reason is not None:
            report(name, reason, "name")
            if name.endswith(".png") and name[: -len(".png")] in image_sizes:
                seen_ids.add(name[: -len(".png")])  # a symlink or encrypted '<id>.png': present, but unusable
            continue
        image_id = name[: -len(".png")]
        if image_id not in image_sizes:
            report(name, f"extra member: no test image has id {image_id!r}", "extra")
            continue
        seen_ids.add(image_id)
        if counts[name] > 1:
            continue
        if info.file_size > rules.max_member_bytes:
            report(name, f"declares {info.file_size} bytes uncompressed; the limit per member is "
                         f"{rules.max_member_bytes}", "size")
            continue
        readable.append(info)
    for image_id in sorted(set(image_sizes) - seen_ids):
        report(f"{image_id}.png", "missing: the zip has no mask for this test image", "missing")
    for kind, count in per_kind.items():
        if count > SHOWN_PER_KIND:
            problems.append(Problem(None, f"... and {count - SHOWN_PER_KIND} more problems of the kind "
                                          f"{kind!r} not listed"))
    return readable
