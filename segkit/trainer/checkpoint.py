"""Checkpoints: written atomically, holding only tensors and plain Python types, with a checksum.

A checkpoint is a plain dict (see `Trainer.checkpoint_state` for its keys). Four rules make it trustworthy:

1. **Atomic write.** `atomic_save` writes to a temporary file in the same folder, flushes it, `fsync`s it,
   then `os.replace`s it over the target and `fsync`s the folder. A process killed at any moment leaves
   either the previous complete file or the new complete file under the final name, never half of one
   (at worst a stale `.tmp` file, which `remove_stale_temp_files` deletes).
2. **Safe load.** Only tensors, dicts, lists, tuples, str, int, float, bool and None are stored, so the file
   loads with `torch.load(weights_only=True)`, which refuses to run arbitrary pickled code. (It is still no
   sandbox: never load a `.pt` file you did not write yourself.) That is why random-number-generator states
   are converted to tensors and lists here instead of being pickled as numpy objects.
3. **Checksum.** `save_checkpoint` stores under "checksum" the SHA-256 of the dict's tensors (names,
   shapes, bytes: `state_digest`); `load_checkpoint` computes it again and refuses a file
   whose contents changed since it was written (a flipped bit, a bad copy) with CheckpointDamaged naming
   the file. torch.load alone would load a flipped byte inside a weight silently.
4. **Room first.** `save_checkpoint` compares the checkpoint's size (its tensors' bytes, plus a margin) with
   the free space of the file system before writing, and turns a write that fails on a full disk into a
   DiskFullError naming the path, the bytes needed and the bytes free; the previous file stays in place
   (rule 1).

Run folders are never emptied: `archive_run_folder` (resume="restart") and `set_aside_after_best`
(resume="best") *move* what they replace into `<run folder>/archive/<date-time>/` (a rename: the same bytes,
no copy of large files), so an archived run can still be evaluated or compared.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import secrets
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from segkit.errors import StopError

from .lock import LOCK_NAME

TEMP_SUFFIX = ".tmp"
ARCHIVE_FOLDER = "archive"
CHECKSUM_KEY = "checksum"
SIZE_MARGIN = 64 * 1024  # bytes a checkpoint may take beyond its tensors (pickled values, zip records)


class CheckpointDamaged(RuntimeError):
    """A checkpoint file whose contents no longer match the checksum stored in it."""


class DiskFullError(StopError):
    """A checkpoint did not fit on its file system; the previous file under that name is intact."""

    def __init__(self, path: Path, needed: int, free: int):
        self.path, self.needed, self.free = path, needed, free
        super().__init__(f"disk full: writing {path} needs about {format_bytes(needed)} and "
                         f"{format_bytes(free)} are free on its file system")


def format_bytes(count: int) -> str:
    """'1.5 MB (1,523,456 bytes)'."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"


def state_digest(obj) -> str:
    """SHA-256 of the tensors of a checkpoint dict: for each tensor, in a fixed order, its place in the dict
    (the keys leading to it, e.g. "model/0.weight"), dtype, shape and raw bytes (moved to the CPU, made
    contiguous).

    The walk follows dict entries in their order (kept by pickling) and lists and tuples in order. Plain
    values (the config, the epoch, the metrics) are not part of it: a damaged pickle of them fails to load
    anyway, and a config edited by hand (a moved data.root) stays loadable; the tensors are what torch.load
    would load silently when damaged.
    """
    digest = hashlib.sha256()

    def walk(value, place: str) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{place}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy() if tensor.numel() else b"")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{place}/{key}")
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(item, f"{place}/{index}")

    walk({k: v for k, v in obj.items() if k != CHECKSUM_KEY}, "")
    return digest.hexdigest()


def checkpoint_bytes(obj) -> int:
    """About the size of `torch.save(obj)`: the bytes of its tensors plus SIZE_MARGIN."""
    total = SIZE_MARGIN

    def walk(value) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(obj)
    return total


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write a checkpoint: `state` plus its checksum, atomically, after checking that it fits.

    Raises DiskFullError (the previous file under `path` is kept) when the file system has less free space
    than the checkpoint needs, or when the write fails on a full disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {**state, CHECKSUM_KEY: {"sha256": state_digest(state)}}
    needed = checkpoint_bytes(state)
    free = shutil.disk_usage(path.parent).free
    if needed > free:
        raise DiskFullError(path, needed, free)
    try:
        return atomic_save(state, path)
    except Exception as error:
        free = shutil.disk_usage(path.parent).free
        if free < needed or _is_disk_full(error):
            raise DiskFullError(path, needed, free) from error
        raise


def copy_checkpoint(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy a checkpoint file to `path` (a second, independent file), with the checks of save_checkpoint."""
    path = Path(path)
    needed = Path(source).stat().st_size
    free = shutil.disk_usage(path.parent).free
    if needed > free:
        raise DiskFullError(path, needed, free)
    try:
        return atomic_copy(source, path)
    except OSError as error:
        if _is_disk_full(error):
            raise DiskFullError(path, needed, shutil.disk_usage(path.parent).free) from error
        raise


def _is_disk_full(error: BaseException) -> bool:
    """ENOSPC anywhere in the chain of causes (torch's zip writer reports it as 'unexpected pos')."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def atomic_save(obj: dict, path: str | os.PathLike) -> Path:
    """`torch.save(obj, path)` so that `path` always holds a complete file (old or new, never partial)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_copy(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy the file `source` to `path` with the same guarantee as `atomic_save`."""
    with open(source, "rb") as original:
        return atomic_write(path, lambda f: shutil.copyfileobj(original, f))


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call `write(f)` on a temporary file next to `path`, fsync it, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden name in the same folder (os.replace is atomic only within one file system);
    # created with mode 0o666 minus the umask, like any file torch.save would create.
    tmp_name = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def fsync_directory(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable (a no-op on systems that cannot open folders, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with `torch.load(weights_only=True)` and verify its checksum (when it has one:
    files written by `save_checkpoint` do; a dict saved with torch.save by hand does not).

    Raises RuntimeError for a file torch cannot read and CheckpointDamaged (a RuntimeError) for one whose
    contents do not match their checksum; both name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise RuntimeError(
            f"cannot load checkpoint {path}: {error}. segkit checkpoints hold only tensors and plain types "
            "and load with torch.load(weights_only=True); a file that fails is damaged or not from segkit."
        ) from error
    stored = state.get(CHECKSUM_KEY) if isinstance(state, dict) else None
    if stored is not None:
        computed = state_digest(state)
        written = stored.get("sha256") if isinstance(stored, dict) else stored
        if written != computed:
            raise CheckpointDamaged(
                f"checkpoint {path} is damaged: its contents do not match the SHA-256 checksum stored in it "
                f"when it was written (stored {str(written)[:16]}..., now {computed[:16]}...); use another "
                "checkpoint of the run (step-*.pt, best.pt)")
    return state


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the `.tmp` files left by writes that were interrupted; returns what was deleted."""
    stale = sorted(Path(folder).glob(f".*{TEMP_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def existing_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints in a run folder: last.pt, best.pt, step-*.pt."""
    run_dir = Path(run_dir)
    names = [run_dir / "last.pt", run_dir / "best.pt"]
    return [p for p in names if p.is_file()] + sorted(run_dir.glob("step-*.pt"))


def find_resume_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, dict]:
    """The newest loadable checkpoint: last.pt, else the history files step-*.pt, newest first."""
    run_dir = Path(run_dir)
    candidates = [run_dir / "last.pt"] + sorted(run_dir.glob("step-*.pt"), reverse=True)
    errors = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            return path, load_checkpoint(path)
        except RuntimeError as error:
            errors.append(str(error))
            print(f"warning: skipping {path}: it cannot be loaded")
    why = "; ".join(errors) if errors else "there is none"
    hint = ("; it holds best.pt: resume='best' (--resume best) continues from that one"
            if (run_dir / "best.pt").is_file() else "")
    raise FileNotFoundError(f"no loadable checkpoint (last.pt, step-*.pt) in {run_dir}: {why}{hint}")


def step_of(history_file: Path) -> int | None:
    """The step number in a history file name, `step-00001234.pt` -> 1234 (None for other names)."""
    digits = history_file.stem.removeprefix("step-")
    return int(digits) if digits.isdigit() else None


def new_archive_folder(run_dir: str | os.PathLike) -> Path:
    """Create and return `run_dir/archive/<date-time>/` (with -2, -3, ... when that name is taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(run_dir) / ARCHIVE_FOLDER / stamp
    number = 1
    while folder.exists():
        number += 1
        folder = folder.with_name(f"{stamp}-{number}")
    folder.mkdir(parents=True)
    return folder


def archive_run_folder(run_dir: str | os.PathLike) -> Path | None:
    """Move everything in `run_dir` (except its archive/ folder) into a new `run_dir/archive/<date-time>/`.

    Used by resume="restart". The run folder's lock stays. Every file keeps its bytes (it is renamed, not
    copied or rewritten), and the archived folder is a complete run folder again (config.yaml,
    metrics.csv, last.pt, best.pt, ...).
    Returns the archive folder, or None when there was nothing to move.
    """
    run_dir = Path(run_dir)
    entries = sorted(p for p in run_dir.iterdir() if p.name not in (ARCHIVE_FOLDER, LOCK_NAME)) \
        if run_dir.is_dir() else []
    if not entries:
        return None
    archive = new_archive_folder(run_dir)
    for entry in entries:
        entry.rename(archive / entry.name)
    fsync_directory(run_dir)
    return archive


def set_aside_after_best(run_dir: str | os.PathLike, best_step: int) -> Path:
    """Prepare `run_dir` to continue from its best.pt (resume="best"); returns the archive folder.

    What was written after best.pt belongs to a continuation that is being abandoned. It is kept in a
    new `run_dir/archive/<date-time>/`: last.pt and the history files of later steps (`step > best_step`)
    are moved there, and the other files (metrics.csv, config.yaml, ...) are copied there before the
    resumed run changes them (it drops metrics.csv's rows after the best epoch). Then last.pt becomes a
    copy of best.pt, so a continuation that is interrupted before its first save resumes from best.pt.
    """
    run_dir = Path(run_dir)
    archive = new_archive_folder(run_dir)
    later = [p for p in run_dir.glob("step-*.pt") if (step_of(p) or 0) > best_step]
    for path in [run_dir / "last.pt", *later]:
        if path.is_file():
            path.rename(archive / path.name)
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and path.suffix != ".pt" and path.name != LOCK_NAME:
            shutil.copy2(path, archive / path.name)
    atomic_copy(run_dir / "best.pt", run_dir / "last.pt")
    return archive


# ---------------------------------------------------------------------------------------------------------
# Random-number-generator states as tensors and plain types
# ---------------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict:
    """The state of every global RNG the training loop may use, as tensors and plain types.

    - torch CPU generator: `torch.get_rng_state()` -> uint8 tensor
    - CUDA generators (one per visible GPU, only when CUDA is initialised): list of uint8 tensors
    - Python `random`: `(version, 625 ints, gauss_next)` -> int64 tensor of the 625 ints (each < 2**32)
    - numpy legacy global RNG: `('MT19937', 624 uint32, pos, has_gauss, cached_gaussian)` -> int64 tensor
    """
    version, mt_state, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "python": {
            "version": int(version),
            "state": torch.tensor(mt_state, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }
    return state


def restore_rng_state(state: dict) -> None:
    """Put back the RNG states captured by `capture_rng_state` (CUDA ones only when the GPUs match)."""
    torch.set_rng_state(state["torch_cpu"].cpu())
    cuda_states = state.get("torch_cuda", [])
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
