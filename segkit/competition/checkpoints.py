"""Model submissions: a team uploads a segkit checkpoint, and the server predicts the test images itself.

What a checkpoint must be, checked in this order (each refusal is a short message, nothing else happens):

1. at most rules.max_checkpoint_bytes bytes;
2. a zip (the format of `torch.save`) whose list of members passes the same guard as a submission zip (its
   size read from the end record zipfile uses, before zipfile parses it), with at most MAX_MEMBERS members
   that declare at most the file's size plus 1 MiB uncompressed (torch stores tensors uncompressed);
3. loadable with `torch.load(weights_only=True)` (segkit.trainer.load_checkpoint): tensors, plain Python
   types and a short list of torch types, never arbitrary pickled objects;
4. a segkit Trainer checkpoint: a config that segkit.config accepts (so the model's name is one of segkit's
   registry), weights that fit the model it names (segkit.build.model_from_checkpoint, pretrained downloads
   switched off), rules.num_classes classes, a VOC-layout dataset (voc or shapes).

Then the model predicts every image of the student pack exactly as `segkit predict CHECKPOINT --root PACK`
does (segkit.inference.write_submission: whole images, on the CPU, one image at a time), into a zip in a
scratch folder, which is scored like any uploaded zip.  So the score equals that of `segkit predict` +
upload of the same checkpoint, and the board also shows the inference time per image (the mean wall-clock
time of predicting one image, PNG writing included).

This runs in a worker process of the service (segkit.competition.workers) under its wall-clock and memory
limits: `weights_only` refuses code in a pickle, but it is not a sandbox, so a student's file is never
loaded in the server's own process.
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from pathlib import Path

from segkit.competition.rules import Rules
from segkit.competition.scoring import ScoreResult, file_sha256, score_submission
from segkit.competition.submission import DIRECTORY_BYTES_PER_MEMBER, Problem, central_directory_size
from segkit.competition.truth import TestSet

MAX_MEMBERS = 100_000  # a checkpoint of a large model holds a few thousand tensors
CHECKPOINT_SUFFIXES = (".pt", ".pth")
VOC_LAYOUT_DATASETS = ("voc", "shapes")


def is_checkpoint_name(file_name: str) -> bool:
    """Whether an uploaded file is meant as a model (by its name: .pt or .pth) rather than a zip of masks."""
    return file_name.lower().endswith(CHECKPOINT_SUFFIXES)


def checkpoint_file_problem(path: str | os.PathLike, rules: Rules) -> str | None:
    """Why the file cannot be a checkpoint worth loading (steps 1 and 2 of the module docstring), or None."""
    size = os.path.getsize(path)
    if size > rules.max_checkpoint_bytes:
        return f"the checkpoint is {size} bytes; the limit is {rules.max_checkpoint_bytes}"
    directory = central_directory_size(path)
    limit = MAX_MEMBERS * DIRECTORY_BYTES_PER_MEMBER
    if directory is None:
        return "not a checkpoint: torch.save writes a zip file, and this file has no zip end record"
    if directory > limit:
        return f"the checkpoint's list of members is {directory} bytes; at most {limit} are allowed"
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            NotImplementedError) as err:
        return f"not a checkpoint: a broken zip file ({type(err).__name__}: {err})"
    if len(infos) > MAX_MEMBERS:
        return f"the checkpoint holds {len(infos)} members; at most {MAX_MEMBERS} are allowed"
    declared = sum(info.file_size for info in infos)
    if declared > size + (1 << 20):
        return (f"the checkpoint's members declare {declared} bytes uncompressed, far more than its {size} "
                "bytes")
    return None


def raise_if_out_of_memory(err: BaseException) -> None:
    """Raise MemoryError for an allocation failure that torch reports as a RuntimeError, so that the worker
    reports it as such (and is replaced) instead of blaming the file."""
    if isinstance(err, MemoryError) or "can't allocate memory" in str(err) or "out of memory" in str(err):
        raise MemoryError(str(err)) from err


def load_submitted_model(path: str | os.PathLike, rules: Rules):
    """(model in eval mode on the CPU, config) of a submitted checkpoint, or (None, the reason)."""
    from segkit.build import model_from_checkpoint
    from segkit.config import ConfigError

    try:
        model, config = model_from_checkpoint(path, device="cpu")
    except ConfigError as err:
        return None, "the checkpoint's config is not accepted: " + "; ".join(err.problems)[:600]
    except Exception as err:  # torch.load and load_state_dict raise many types
        raise_if_out_of_memory(err)
        message = " ".join(str(err).replace(str(path), "the checkpoint").split()) or type(err).__name__
        return None, (f"not a segkit checkpoint that can be loaded safely ({type(err).__name__}: "
                      f"{message[:600]})")
    classes = config["data"]["classes"] or []
    if len(classes) != rules.num_classes:
        return None, f"the model predicts {len(classes)} classes; this competition has {rules.num_classes}"
    if config["data"]["dataset"] not in VOC_LAYOUT_DATASETS:
        return None, (f"the model was trained on a {config['data']['dataset']!r} dataset; the server reads "
                      f"the test images in the VOC layout ({', '.join(VOC_LAYOUT_DATASETS)}): predict them "
                      "yourself and upload the zip")
    return model, config


def score_checkpoint(path: str | os.PathLike, test_set: TestSet, rules: Rules, pack: str | os.PathLike,
                     scratch: str | os.PathLike | None = None) -> ScoreResult:
    """Check, load and run a submitted checkpoint on the student pack's images, and score its masks.

    pack: the competition's student pack (a VOC-layout dataset root holding the test images).
    scratch: where the predicted zip is written (a temporary folder inside it, removed afterwards).
    """
    import torch

    from segkit.build import build_dataset
    from segkit.inference import write_submission

    result = ScoreResult(sha256=file_sha256(path, rules.max_checkpoint_bytes))
    problem = checkpoint_file_problem(path, rules)
    if problem is None:
        model, config = load_submitted_model(path, rules)
        if model is None:
            problem = config
    if problem is not None:
        result.problems = [Problem(None, problem)]
        return result
    data = config["data"]
    data.update(root=str(pack), num_workers=0, cache=False)
    try:
        dataset = build_dataset(config, "test", masks="none", source="the checkpoint's config")
    except Exception as err:  # mean/std of the wrong length, ...
        result.problems = [Problem(None, f"the checkpoint's data settings do not fit the test images "
                                         f"({type(err).__name__}: {str(err)[:300]})")]
        return result
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        predicted = Path(folder) / "predicted.zip"
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                count = write_submission(model, dataset, predicted)
        except Exception as err:  # a model whose forward fails on these images
            raise_if_out_of_memory(err)
            result.problems = [Problem(None, f"the model failed on the test images ({type(err).__name__}: "
                                             f"{str(err)[:300]})")]
            return result
        seconds = time.perf_counter() - start
        scored = score_submission(predicted, test_set, rules)
    scored.sha256 = result.sha256
    scored.seconds_per_image = seconds / max(count, 1)
    return scored
