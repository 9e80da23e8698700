"""Hostile submissions: each is rejected with its own message naming the member at fault, the board and the
leaderboard keep every score they had, and nothing is written outside the board folder."""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_competition_setup import (
    SIZES,
    competition,
    make_competition,
    noisy,
    png_bytes,
    prediction_zip,
    write_zip,
)

from segkit.cli.competition import write_leaderboard
from segkit.competition.board import Board
from segkit.competition.rules import load_rules
from segkit.competition.submission import (
    PNG_SIGNATURE,
    MemberTooLarge,
    check_submission,
    read_capped,
)

GIB = 1 << 30


# ---- builders of hostile content --------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed palette PNG whose header claims width×height pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"PLTE", bytes(768))
            + png_chunk(b"IDAT", zlib.compress(bytes(1000))) + png_chunk(b"IEND", b""))


def png_with_garbage_pixels(mask: np.ndarray) -> bytes:
    """A PNG of the right size and mode whose pixel data (IDAT) is not a zlib stream; chunk CRCs are valid."""
    good = png_bytes(mask)
    start = good.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", good[start:start + 4])
    return good[:start] + png_chunk(b"IDAT", b"\x12\x34" * 40) + good[start + 12 + length:]


def zeros_deflated(size: int) -> bytes:
    """A raw deflate stream of `size` zero bytes (size a multiple of 1 MiB), built from one 1 KiB block that
    each MiB compresses to, so a 1 GiB bomb takes milliseconds to make (and 1 MB to store)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size >> 20) + zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)


def raw_zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip written by hand, with headers that say whatever we like.

    entries: (name, stored data, compression method, declared uncompressed size, declared CRC-32).
    """
    body, central = bytearray(), bytearray()
    for name, data, method, declared, crc in entries:
        encoded, offset = name.encode(), len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), declared,
                            len(encoded), 0) + encoded + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data),
                               declared, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(body), 0)
    return bytes(body + central + end)


def png_with_missing_rows(mask: np.ndarray, rows: int) -> bytes:
    """A palette PNG whose header says mask's size but whose complete zlib stream holds only its first `rows`
    rows (a filter byte 0 and the row's bytes each); chunk CRCs are valid."""
    height, width = mask.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    pixels = b"".join(b"\x00" + mask[row].tobytes() for row in range(rows))
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"PLTE", bytes(768))
            + png_chunk(b"IDAT", zlib.compress(pixels)) + png_chunk(b"IEND", b""))


def zip64_lying_directory(members: int) -> bytes:
    """A zip of `members` empty members whose classic end record states a one-entry, 46-byte list of members
    while its zip64 end record (which zipfile reads) holds the true size."""
    body, central = bytearray(), bytearray()
    for number in range(members):
        name = f"m{number}.png".encode()
        offset = len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, 0, 0, 0, len(name),
                               0, 0, 0, 0, 0, offset) + name
    zip64_at = len(body) + len(central)
    zip64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, members, members, len(central),
                        len(body))
    locator = struct.pack("<IIQI", 0x07064B50, 0, zip64_at, 1)
    classic = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, 46, len(body), 0)
    return bytes(body + central + zip64 + locator + classic)


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    info.create_system = 3  # unix
    return info


def with_encryption_flag(zip_bytes: bytes, name: str) -> bytes:
    """Set the "encrypted" flag bit of member `name` in its local header and its central directory entry
    (zipfile clears flags when it writes, so the bit is set afterwards)."""
    data, encoded = bytearray(zip_bytes), name.encode()
    for signature, flag_offset, name_offset in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = data.index(signature)
        while data[start + name_offset:start + name_offset + len(encoded)] != encoded:
            start = data.index(signature, start + 4)
        data[start + flag_offset] |= 0x1
    return bytes(data)


def valid_members(comp, rng, leave_out=()) -> list[tuple[str, bytes]]:
    return [(f"{i}.png", png_bytes(noisy(comp.masks[i], rng))) for i in SIZES if i not in leave_out]


def hostile_cases(comp, rng) -> list[tuple[str, object, list[tuple[str | None, str]]]]:
    """(case, zip bytes or list of members, [(member named in the message, phrase it must contain)])."""
    good = dict(valid_members(comp, rng))
    others = [(n, d) for n, d in good.items() if n != "img_a.png"]
    a = comp.masks["img_a"].copy()
    a[a == 255] = 0
    rgb = np.stack([a * 10] * 3, axis=-1).astype(np.uint8)
    out_of_range = a.copy()
    out_of_range[0, 0] = 21
    with_void = a.copy()
    with_void[1, 1] = 255
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG")
    bomb = zeros_deflated(GIB)
    good_png_a = png_bytes(a)
    crc_broken = bytearray(zipfile_bytes(list(good.items())))
    position = crc_broken.index(b"img_a.png") + len("img_a.png") + 40  # inside img_a's compressed data
    crc_broken[position] ^= 0xFF
    return [
        ("missing id", others, [("img_a.png", "missing")]),
        ("extra id", [*good.items(), ("img_z.png", good_png_a)], [("img_z.png", "extra member")]),
        ("duplicate name", [*good.items(), ("img_a.png", good_png_a)], [("img_a.png", "duplicate name")]),
        ("path traversal", [*others, ("../img_a.png", good_png_a)], [("../img_a.png", "path traversal")]),
        ("absolute path", [*others, ("/img_a.png", good_png_a)], [("/img_a.png", "absolute path")]),
        ("folder in name", [*others, ("sub/img_a.png", good_png_a)], [("sub/img_a.png", "name has folders")]),
        ("backslash folder", [*others, ("sub\\img_a.png", good_png_a)],
         [("sub\\img_a.png", "name has folders")]),
        ("folder entry", [*good.items(), (zipfile.ZipInfo("sub/"), b"")], [("sub/", "folder entry")]),
        ("symlink", [*others, (symlink_info("img_a.png"), b"/etc/passwd")], [("img_a.png", "symbolic link")]),
        ("jpeg named .png", [*others, ("img_a.png", jpeg.getvalue())],
         [("img_a.png", "not a PNG file (looks")]),
        ("text named .png", [*others, ("img_a.png", b"hello, scorer")], [("img_a.png", "not a PNG file:")]),
        ("not .png name", [*others, ("img_a.jpg", good_png_a)], [("img_a.jpg", "name must be")]),
        ("RGB mask", [*others, ("img_a.png", png_bytes(rgb, "RGB"))], [("img_a.png", "wrong mode 'RGB'")]),
        ("RGBA mask", [*others, ("img_a.png", png_bytes(rgb, "RGBA"))], [("img_a.png", "wrong mode 'RGBA'")]),
        ("wrong size", [*others, ("img_a.png", png_bytes(comp.masks["img_d"]))],
         [("img_a.png", "wrong size 9×8; the test image is 16×12")]),
        ("value 21", [*others, ("img_a.png", png_bytes(out_of_range))],
         [("img_a.png", "values out of range: 1 pixel(s) hold values >= 21 (largest 21)")]),
        ("void in a prediction", [*others, ("img_a.png", png_bytes(with_void))],
         [("img_a.png", "values out of range: 1 pixel(s) hold values >= 21 (largest 255)")]),
        ("too many members", [*good.items(), *[(f"x{i}.png", good_png_a) for i in range(30)]],
         [(None, "the zip holds 36 members; at most 6"), ("x0.png", "extra member")]),
        ("thousands of empty members", [*good.items(), *[(f"x{i}.png", b"") for i in range(3000)]],
         [(None, "the zip's list of members is")]),
        ("zip bomb, honest header", raw_zip([(n, zlib.compress(d)[2:-4], 8, len(d), zlib.crc32(d))
                                              for n, d in others] + [("img_a.png", bomb, 8, GIB, 0)]),
         [("img_a.png", f"declares {GIB} bytes uncompressed")]),
        ("zip bomb, lying header", raw_zip([(n, zlib.compress(d)[2:-4], 8, len(d), zlib.crc32(d))
                                             for n, d in others] + [("img_a.png", bomb, 8, 1000, 0)]),
         [("img_a.png", "corrupt member")]),
        ("PNG decompression bomb", [*others, ("img_a.png", png_claiming(100000, 100000))],
         [("img_a.png", "decompression bomb: the PNG header claims 100000×100000")]),
        ("big PNG header below Pillow's limit", [*others, ("img_a.png", png_claiming(9000, 9000))],
         [("img_a.png", "wrong size 9000×9000")]),
        ("not a zip", rng.bytes(2000), [(None, "corrupt or not a zip file")]),
        ("truncated zip", zipfile_bytes(list(good.items()))[:300], [(None, "corrupt or not a zip file")]),
        ("empty zip", [], [(f"{i}.png", "missing") for i in SIZES]),
        ("member with broken CRC", bytes(crc_broken), [("img_a.png", "corrupt member")]),
        ("truncated PNG", [*others, ("img_a.png", good_png_a[: len(good_png_a) // 2])],
         [("img_a.png", "corrupt PNG")]),
        ("PNG with garbage pixels", [*others, ("img_a.png", png_with_garbage_pixels(a))],
         [("img_a.png", "corrupt PNG")]),
        ("PNG whose complete stream holds half the rows",
         [*others, ("img_a.png", png_with_missing_rows(a, 6))],
         [("img_a.png", "corrupt PNG: the pixel data ends early")]),
        ("zip64 record holds the true list size", zip64_lying_directory(3000),
         [(None, "the zip's list of members is")]),
        ("encrypted member", with_encryption_flag(zipfile_bytes(list(good.items())), "img_a.png"),
         [("img_a.png", "encrypted")]),
        ("bzip2 member", zipfile_bytes(list(good.items()), zipfile.ZIP_BZIP2),
         [("img_a.png", "compression method 12")]),
    ]


def zipfile_bytes(members, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file under root (not under skip): relative path -> (size, mtime in ns)."""
    listing = {}
    for folder, _, files in os.walk(root):
        if Path(folder).is_relative_to(skip):
            continue
        for name in files:
            path = Path(folder) / name
            listing[str(path.relative_to(root))] = (path.stat().st_size, path.stat().st_mtime_ns)
    return listing


def board_state(comp) -> tuple:
    """Every stored score, and both leaderboards as written to disk."""
    rows = Board(comp.board).submissions()
    pages = []
    for final in (False, True):
        write_leaderboard(comp.board, final=final)
        pages += [(comp.board / name).read_bytes() for name in ("leaderboard.md", "leaderboard.html")]
    return rows, pages


# ---- the battery ------------------------------------------------------------------------------------------


def test_hostile_battery_each_rejected_with_its_reason_and_nothing_changes(tmp_path, monkeypatch):
    comp = make_competition(tmp_path)
    rng = np.random.default_rng(1)
    for team in ("alpha", "beta"):  # a board with scores on it
        row, _ = comp.submit(prediction_zip(tmp_path / f"{team}.zip", dict(zip(SIZES, [
            noisy(comp.masks[i], rng) for i in SIZES], strict=True))), team)
        assert row.accepted, row.message

    cases = hostile_cases(comp, rng)
    subs = tmp_path / "subs"
    subs.mkdir()
    paths = []
    for number, (_, content, _) in enumerate(cases):
        path = subs / f"case{number:02d}.zip"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_zip(path, content)
        paths.append(path)

    rows_before, pages_before = board_state(comp)
    files_before = tree(tmp_path, skip=comp.board)
    scratch = tmp_path / "scratch-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # anything using tempfile would land here

    def no_extraction(*args, **kwargs):
        raise AssertionError("the scorer must never extract a member to disk")

    monkeypatch.setattr(zipfile.ZipFile, "extract", no_extraction)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_extraction)

    rules = load_rules(comp.board)
    for (case, _, expected), path in zip(cases, paths, strict=True):
        row, result = comp.submit(path, "mallory")
        assert not row.accepted, f"{case}: accepted"
        assert row.public_miou is None and row.private_miou is None and row.public_metrics is None
        for member, phrase in expected:
            hits = [line for line in row.message.splitlines()
                    if phrase in line and (member is None or repr(member) in line)]
            assert hits, f"{case}: no problem mentions {member!r} with {phrase!r}; got:\n{row.message}"
        if result.report is not None:  # the 1 GiB bomb included: never inflated past the limits
            assert result.report.bytes_read <= rules.max_total_bytes, case

    rows_after, pages_after = board_state(comp)
    assert rows_after[: len(rows_before)] == rows_before
    assert [r.status for r in rows_after[len(rows_before):]] == ["rejected"] * len(cases)
    assert pages_after == pages_before  # every score on both leaderboards is what it was
    assert tree(tmp_path, skip=comp.board) == files_before  # nothing written outside the board folder
    assert not any(scratch.iterdir())
    assert {p.name for p in comp.board.iterdir()} <= {"board.sqlite", "board.lock", "competition.json",
                                                      "leaderboard.md", "leaderboard.html"}


def test_every_problem_is_reported_in_one_pass(tmp_path, capsys):
    comp = make_competition(tmp_path)
    rng = np.random.default_rng(2)
    members = dict(valid_members(comp, rng, leave_out=("img_f",)))  # img_f missing
    members["img_b.png"] = png_bytes(np.stack([comp.masks["img_b"]] * 3, axis=-1), "RGB")
    members["img_c.png"] = png_bytes(comp.masks["img_d"])  # wrong size
    members["img_d.png"] = png_bytes(np.full(SIZES["img_d"], 40, np.uint8))  # out of range
    path = write_zip(tmp_path / "many.zip", [*members.items(), ("img_a.png", members["img_a.png"]),
                                             ("../evil.png", b"x"), ("bonus.png", b"x")])
    code = competition("score", str(path), "--team", "mallory", "--comp", str(comp.truth.parent))
    printed = capsys.readouterr().out
    assert code == 1
    assert "REJECTED: 8 problem(s)" in printed
    assert "the zip holds 8 members; at most 6 are allowed" in printed
    for member, phrase in [("img_a.png", "duplicate name"), ("../evil.png", "path traversal"),
                           ("bonus.png", "extra member"), ("img_f.png", "missing"),
                           ("img_b.png", "wrong mode"), ("img_c.png", "wrong size"),
                           ("img_d.png", "values out of range")]:
        lines = printed.splitlines()
        assert any(repr(member) in line and phrase in line for line in lines), (member, printed)
    (row,) = Board(comp.board).submissions()
    assert row.status == "rejected" and len(row.message.splitlines()) == 8


def test_reads_are_capped_whatever_the_stream_claims():
    class Endless:
        produced = 0

        def read(self, n):
            self.produced += n
            return bytes(n)

    stream = Endless()
    with pytest.raises(MemberTooLarge):
        read_capped(stream, cap=100_000, chunk_size=4096)
    assert stream.produced == 100_001  # one byte past the cap, never a chunk more
    assert read_capped(io.BytesIO(b"abc" * 10), cap=30) == b"abc" * 10


def test_size_and_time_budgets(tmp_path):
    comp = make_competition(tmp_path)
    rules = load_rules(comp.board)
    rng = np.random.default_rng(3)
    path = write_zip(tmp_path / "ok.zip", valid_members(comp, rng))

    def checked(**limits):
        return [str(p) for p in check_submission(path, SIZES, dataclasses.replace(rules, **limits),
                                                 on_mask=lambda *_: None).problems]

    assert checked() == []
    assert "the zip file is" in checked(max_zip_bytes=100)[0]
    assert "the members declare" in checked(max_total_bytes=200)[0]
    assert all("declares" in p for p in checked(max_member_bytes=50))

    # a clock that advances one second per look: 0 at the start (deadline 2.5), 1 once the zip is open, 2
    # before member 0, 3 before member 1: past the deadline
    ticks = iter(range(1000))
    report = check_submission(path, SIZES, dataclasses.replace(rules, time_limit_s=2.5),
                              on_mask=lambda *_: None, clock=lambda: float(next(ticks)))
    assert [str(p) for p in report.problems] == ["time limit of 2.5 s exceeded after 1 of 6 members; stopped"]
    ticks = iter(range(1000))  # the opening counts: a budget of 0.5 s is gone once the zip is open
    report = check_submission(path, SIZES, dataclasses.replace(rules, time_limit_s=0.5),
                              on_mask=lambda *_: None, clock=lambda: float(next(ticks)))
    assert [str(p) for p in report.problems] == [
        "time limit of 0.5 s exceeded while opening the zip (reading its list of members); stopped"]

    # through the board: a real wall-clock budget too small for anything
    board_rules = comp.board / "competition.json"
    board_rules.write_text(board_rules.read_text().replace('"time_limit_s": 300.0', '"time_limit_s": 1e-09'))
    row, _ = comp.submit(path, "slow")
    assert row.status == "rejected" and "time limit of 1e-09 s exceeded" in row.message


def test_directory_guard_reads_the_record_zipfile_reads(tmp_path):
    """The guard's size is the one zipfile uses: the zip64 record's, not the classic record's small lie."""
    from segkit.competition.submission import central_directory_size

    path = tmp_path / "zip64.zip"
    path.write_bytes(zip64_lying_directory(50))
    with zipfile.ZipFile(path) as archive:  # zipfile itself parses all 50 members from the zip64 size
        assert len(archive.infolist()) == 50
    names = 50 * len("m00.png") - 10 * len("0")  # m0..m9 have one digit fewer
    assert central_directory_size(path) == 50 * 46 + names
    plain = tmp_path / "plain.zip"
    write_zip(plain, [("a.png", b"x"), ("bb.png", b"y")])
    assert central_directory_size(plain) == 2 * 46 + len("a.png") + len("bb.png")


def test_incomplete_png_is_refused_and_a_complete_one_is_not():
    from segkit.competition.submission import decode_mask_png, png_rows_problem

    mask = (np.arange(12 * 16).reshape(12, 16) % 5).astype(np.uint8)
    assert png_rows_problem(png_bytes(mask), 16, 12) is None
    # Pillow by itself decodes the short stream without an error, the missing rows 0: the hole closed here
    short = png_with_missing_rows(mask, 6)
    decoded = np.asarray(Image.open(io.BytesIO(short)))
    assert decoded.shape == (12, 16) and not decoded[6:].any()
    assert decode_mask_png(short, 12, 16, 21) == (
        None, "corrupt PNG: the pixel data ends early: 102 of the 204 bytes that 16×12 pixels need "
              "(missing rows)")  # 6 rows of 1 + 16 bytes, of 12
    full = png_with_missing_rows(mask, 12)
    np.testing.assert_array_equal(decode_mask_png(full, 12, 16, 21)[0], mask)
    # Adam7 interlacing, written by hand: seven passes, each a small image of its own rows; Pillow decodes it
    # to the mask (so the passes are right), the check accepts it whole and refuses it without its last pass
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    raw = [b"".join(b"\x00" + mask[y, x0::dx].tobytes() for y in range(y0, 12, dy))
           for x0, y0, dx, dy in passes]
    header = struct.pack(">IIBBBBB", 16, 12, 8, 0, 0, 0, 1)

    def interlaced(parts):
        data = zlib.compress(b"".join(parts))
        return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")

    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(interlaced(raw)))), mask)
    assert png_rows_problem(interlaced(raw), 16, 12) is None
    assert "ends early" in png_rows_problem(interlaced(raw[:-1]), 16, 12)


def test_time_limit_covers_opening_the_zip(tmp_path):
    """A list of members the size guard lets through, but too slow to parse within a tiny budget: the alarm
    stops zipfile inside its parsing, and the message says so."""
    comp = make_competition(tmp_path)
    rules = load_rules(comp.board)
    path = tmp_path / "many.zip"
    path.write_bytes(zip64_lying_directory(40000))
    generous = dataclasses.replace(rules, max_members=100000, max_zip_bytes=1 << 30, time_limit_s=0.02)
    report = check_submission(path, SIZES, generous, on_mask=lambda *_: None)
    assert [str(p) for p in report.problems] == [
        "time limit of 0.02 s exceeded while opening the zip (reading its list of members); stopped"]
