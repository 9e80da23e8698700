"""Reading a student's submission zip safely: every check, and every problem reported in one pass.

A submission is a zip of PNG masks, one per test image, named `<image_id>.png`, flat (no folders), each of the
test image's size, mode "P" or "L", values 0..num_classes-1.  It comes from a student, so it is untrusted:

- nothing is ever extracted to disk; each member is read into memory, in chunks, never past a byte cap
  (the sizes in the zip's headers are declared by whoever made the zip, so the bytes actually inflated are
  counted as well: a zip bomb stops at the cap, it is never inflated in full);
- member names are attacker-chosen: folders, `..`, absolute paths, duplicates and symbolic links are refused;
- the PNG header is checked (signature bytes, size, mode) before a single pixel is decoded, so a 100000×100000
  "decompression bomb" costs nothing; Pillow's own bomb check is turned from a warning into a refusal;
- the size of the zip's list of members is read from the same end record that zipfile will use (the zip64
  record when there is one) before zipfile parses the list;
- a PNG's pixel data is inflated and counted before Pillow decodes it: a stream that ends cleanly but holds
  fewer rows than the header promises is refused (Pillow would fill the missing rows with 0);
- a wall-clock budget covers everything, the opening of the zip included: an alarm interrupts the work when
  it runs out (main thread), and the clock is also checked between members.

`check_submission` walks the zip once.  For every member that passes, it hands the decoded mask to a callback
(the scorer's), so each PNG is decoded exactly once; the caller discards what the callback accumulated when
any problem was found.
"""

from __future__ import annotations

import os
import signal
import stat
import struct
import threading
import time
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
from PIL import Image

from segkit.competition.rules import Rules

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
END_RECORD = struct.Struct("<4s4H2LH")  # zip end of central directory: ..., directory size, offset, comment
ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk of the zip64 record, its offset, number of disks
ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")  # ..., entries here, entries in all, directory size, offset
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
    """Size in bytes of a zip's central directory, as zipfile will read it; None when there is no end record.

    zipfile reads and parses the whole central directory when it opens a file, one object per entry, so a
    zip of millions of empty entries would cost minutes and gigabytes before any other check could run.
    The size comes from the record zipfile itself uses (CPython's `_EndRecData`): the classic end record
    (signature PK\\5\\6) at the very end of the file when it has no comment, else its last occurrence in
    the last 64 KiB + 22 bytes; then, when a zip64 locator (PK\\6\\7) lies just before it and a zip64 end
    record (PK\\6\\6) just before the locator, the zip64 record's size replaces the classic one, whatever
    the classic one says.
    """
    with open(path, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        start = max(0, size - END_RECORD.size - 65535)  # the record ends with a comment of <= 64 KiB
        stream.seek(start)
        tail = stream.read()
    last = tail[-END_RECORD.size:]
    if len(last) == END_RECORD.size and last.startswith(b"PK\x05\x06") and last.endswith(b"\x00\x00"):
        at = len(tail) - END_RECORD.size
    else:
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < END_RECORD.size:
            return None
    directory = END_RECORD.unpack_from(tail, at)[5]
    zip64 = zip64_directory_size(path, start + at)
    return directory if zip64 is None else zip64


def zip64_directory_size(path: str | os.PathLike, end_record_at: int) -> int | None:
    """The directory size of the zip64 end record that zipfile would read for the classic end record at
    byte `end_record_at`, or None when zipfile would keep the classic record."""
    before = end_record_at - ZIP64_LOCATOR.size - ZIP64_END_RECORD.size
    if before < 0:
        return None
    with open(path, "rb") as stream:
        stream.seek(before)
        data = stream.read(ZIP64_END_RECORD.size + ZIP64_LOCATOR.size)
    if len(data) != ZIP64_END_RECORD.size + ZIP64_LOCATOR.size:
        return None
    if ZIP64_LOCATOR.unpack_from(data, ZIP64_END_RECORD.size)[0] != b"PK\x06\x07":
        return None
    record = ZIP64_END_RECORD.unpack_from(data, 0)
    return record[8] if record[0] == b"PK\x06\x06" else None


class TimeLimitExceeded(BaseException):
    """The wall-clock budget of one submission ran out.  A BaseException (like KeyboardInterrupt), so that the
    `except Exception` clauses that turn a broken member into a message do not swallow it."""


@contextmanager
def wall_clock_limit(seconds: float) -> Iterator[None]:
    """Raise TimeLimitExceeded wherever the code inside is when `seconds` have passed.

    A real-time alarm (SIGALRM) interrupts pure-Python work such as zipfile parsing a list of members; a
    long C call (one decode) finishes first.  Limits nest: inside an outer limit the alarm comes at the
    earlier of the two, and the outer one goes on afterwards.  Only the main thread of a process can
    receive signals, so in another thread (or without SIGALRM) this does nothing and the callers' clock
    checks remain.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeLimitExceeded()

    outer = signal.getitimer(signal.ITIMER_REAL)[0]  # seconds left on an enclosing limit, 0 when none
    start = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(min(seconds, outer) if outer else seconds, 1e-6))  # 0: no alarm
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # the enclosing limit goes on with what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-6))


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


def png_rows_problem(data: bytes, width: int, height: int) -> str | None:
    """Why the pixel data of a PNG does not hold exactly its width×height pixels, or None.

    The IDAT chunks concatenate into one zlib stream holding, row after row, a filter byte and the row's
    bytes: `height × (1 + ceil(width × bits / 8))` bytes without interlacing, the sum of that over the
    seven passes of Adam7 with it (bits = bit depth × samples per pixel).  A stream that ends cleanly but
    short decodes in Pillow without an error, the missing rows 0; here it is refused.  At most the expected
    length + 1 bytes are inflated.
    """
    header, pixel_data, position = None, [], len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            pixel_data.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None or len(header) < 13:
        return "corrupt PNG: no valid IHDR chunk"
    depth, colour, interlace = header[8], header[9], header[12]
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if samples is None:
        return f"corrupt PNG: unknown colour type {colour}"
    bits = depth * samples
    if interlace:
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                  (0, 1, 1, 2))
        expected = 0
        for x0, y0, dx, dy in passes:
            pass_width, pass_height = -(-(width - x0) // dx), -(-(height - y0) // dy)
            if pass_width > 0 and pass_height > 0:
                expected += pass_height * (1 + -(-(pass_width * bits) // 8))
    else:
        expected = height * (1 + -(-(width * bits) // 8))
    inflater = zlib.decompressobj()
    try:
        produced = len(inflater.decompress(b"".join(pixel_data), expected + 1))
    except zlib.error as err:
        return f"corrupt PNG: the pixel data is not a valid zlib stream ({err})"
    if produced < expected:
        ending = "ends early" if inflater.eof else "is cut off"
        return (f"corrupt PNG: the pixel data {ending}: {produced} of the {expected} bytes that "
                f"{width}×{height} pixels need (missing rows)")
    if produced > expected:
        return f"corrupt PNG: the pixel data holds more than the {expected} bytes of {width}×{height} pixels"
    return None


def decode_mask_png(data: bytes, height: int, width: int,
                    num_classes: int) -> tuple[np.ndarray | None, str | None]:
    """Decode one submitted mask: ((H, W) uint8 array, None) when it is valid, else (None, the reason).

    Order of checks: PNG signature (content, not the file name) -> header (Pillow parses only the chunks
    before the pixel data) -> size -> mode -> pixel data complete (png_rows_problem) -> decode -> values.
    Nothing is decoded unless the header says exactly width×height, so the work per member is bounded by the
    test image's pixel count.
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
    incomplete = png_rows_problem(data, width, height)
    if incomplete is not None:
        return None, incomplete
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
    are fine, and the walk stops early only for the byte and time budgets (which say so).  The time budget
    rules.time_limit_s starts before the zip is opened: `wall_clock_limit` interrupts the work wherever it
    is, and `clock` is also read between members.
    """
    report = SubmissionReport()
    progress = ["while opening the zip (reading its list of members)"]
    try:
        with wall_clock_limit(rules.time_limit_s):
            _check(zip_path, image_sizes, rules, on_mask, clock() + rules.time_limit_s, clock, report,
                   progress)
    except TimeLimitExceeded:
        report.problems.append(Problem(None, f"time limit of {rules.time_limit_s:g} s exceeded "
                                             f"{progress[-1]}; stopped"))
    return report


def _check(zip_path, image_sizes, rules: Rules, on_mask, deadline: float, clock, report: SubmissionReport,
           progress: list[str]) -> None:
    """The walk of check_submission; `progress[-1]` says where it is, for a time-limit message."""
    problems = report.problems

    def out_of_time() -> bool:
        if clock() <= deadline:
            return False
        problems.append(Problem(None, f"time limit of {rules.time_limit_s:g} s exceeded {progress[-1]}; "
                                      "stopped"))
        return True

    size = os.path.getsize(zip_path)
    if size > rules.max_zip_bytes:
        problems.append(Problem(None, f"the zip file is {size} bytes; the limit is {rules.max_zip_bytes}"))
        return
    directory = central_directory_size(zip_path)
    directory_limit = rules.max_members * DIRECTORY_BYTES_PER_MEMBER + 65536
    if directory is not None and directory > directory_limit:
        problems.append(Problem(None, f"the zip's list of members is {directory} bytes; {rules.max_members} "
                                      f"members need at most {directory_limit} (too many members)"))
        return
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            NotImplementedError) as err:
        problems.append(Problem(None, f"corrupt or not a zip file ({type(err).__name__}: {err})"))
        return
    if out_of_time():
        archive.close()
        return

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
            return
        for position, info in enumerate(readable):
            progress.append(f"after {position} of {len(readable)} members")
            if out_of_time():
                return
            budget = min(rules.max_member_bytes, rules.max_total_bytes - report.bytes_read)
            try:
                with archive.open(info) as stream:
                    data = read_capped(stream, budget)
            except MemberTooLarge:
                report.bytes_read += budget
                if budget < rules.max_member_bytes:
                    problems.append(Problem(None, f"the members inflate past the total limit of "
                                                  f"{rules.max_total_bytes} bytes; stopped reading"))
                    return
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
