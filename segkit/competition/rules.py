"""The rules of one class competition, stored as `competition.json` in the board folder.

`segkit competition setup` writes the file; the scorer and the leaderboard read it. Every limit that
protects the scorer from a hostile submission lives here, so an instructor can read (and change) them in
one place:

    num_classes        masks hold values 0..num_classes-1 (anything else is rejected)
    class_names        one name per class, for the per-class tables
    daily_limit        accepted submissions per team per UTC day
    final_count        submissions per team counted for the final (private) ranking
    ladder_margin      None: the live board shows each team's best public score.  A number η: the Ladder of
                       Blum & Hardt (2015) — the shown score changes only when it improves by more than η
    time_limit_s       wall-clock budget for reading and scoring one submission (a model: loading it,
                       predicting the test images and scoring them)
    memory_limit_mb    memory a scoring worker of the web service may take beyond its size at rest
    max_checkpoint_bytes  size of an uploaded model checkpoint (segkit.competition.checkpoints)
    max_members        entries allowed in the zip (one per test image)
    max_member_bytes   uncompressed bytes allowed for one member (declared, and actually read)
    max_total_bytes    uncompressed bytes allowed for the whole submission (declared, and actually read)
    max_zip_bytes      size of the zip file itself
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

RULES_FILE = "competition.json"


class RulesError(ValueError):
    """competition.json is missing or holds a key or value that is not allowed."""


@dataclass(frozen=True)
class Rules:
    num_classes: int
    class_names: tuple[str, ...]
    max_members: int
    max_member_bytes: int
    max_total_bytes: int
    max_zip_bytes: int
    daily_limit: int = 5
    final_count: int = 2
    ladder_margin: float | None = None
    time_limit_s: float = 300.0
    memory_limit_mb: int = 4096
    max_checkpoint_bytes: int = 300 * 2**20

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        for key in ("num_classes", "max_members", "max_member_bytes", "max_total_bytes", "max_zip_bytes",
                    "daily_limit", "final_count", "memory_limit_mb", "max_checkpoint_bytes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RulesError(f"rules: {key} must be a positive integer, got {value!r}")
        if self.num_classes > 255:
            raise RulesError(f"rules: num_classes must be at most 255 (masks are 8-bit), "
                             f"got {self.num_classes}")
        if len(self.class_names) != self.num_classes or not all(isinstance(n, str) for n in self.class_names):
            raise RulesError(f"rules: class_names must be {self.num_classes} strings (one per class), "
                             f"got {list(self.class_names)!r}")
        if self.ladder_margin is not None and not _positive_number(self.ladder_margin):
            raise RulesError(f"rules: ladder_margin must be null (off) or a number > 0, "
                             f"got {self.ladder_margin!r}")
        if not _positive_number(self.time_limit_s):
            raise RulesError(f"rules: time_limit_s must be a number > 0, got {self.time_limit_s!r}")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["class_names"] = list(self.class_names)
        return out

    @classmethod
    def from_dict(cls, values: dict, where: str = "rules") -> Rules:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RulesError(f"{where}: unknown key(s) {unknown}; allowed keys: {sorted(known)}")
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(values))
        if missing:
            raise RulesError(f"{where}: missing key(s) {missing}")
        try:
            return cls(**values)
        except RulesError as err:
            raise RulesError(f"{where}: {err}") from None


def _positive_number(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and math.isfinite(value) and value > 0)


def default_size_limits(image_sizes: list[tuple[int, int]]) -> dict[str, int]:
    """Byte limits that any honest submission for these test images stays far below.

    image_sizes: (height, width) of every test image.  An 8-bit PNG can hold at most about one byte per pixel
    plus one filter byte per row and a few hundred bytes of chunks, even when it does not compress at all,
    so twice the pixel count plus 64 KiB leaves room for every encoder while stopping anything absurd.
    """
    per_image = [2 * h * w + 64 * 1024 for h, w in image_sizes]
    total = sum(per_image)
    return {
        "max_members": len(image_sizes),
        "max_member_bytes": max(per_image),
        "max_total_bytes": total,
        "max_zip_bytes": total + 1024 * 1024,
    }


def save_rules(rules: Rules, board_dir: str | os.PathLike) -> Path:
    path = Path(board_dir) / RULES_FILE
    path.write_text(json.dumps(rules.to_dict(), indent=2) + "\n")
    return path


def load_rules(board_dir: str | os.PathLike) -> Rules:
    path = Path(board_dir) / RULES_FILE
    if not path.is_file():
        raise RulesError(f"{path} not found: this folder is not a competition board "
                         "(create one with `segkit competition setup`)")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RulesError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(values, dict):
        raise RulesError(f"{path}: expected a JSON object of rules, got {type(values).__name__}")
    return Rules.from_dict(values, where=str(path))
