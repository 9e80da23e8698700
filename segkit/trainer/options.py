"""The Trainer's options checked before anything is built: clear errors for impossible values.

    check_options(...)   raises ValueError naming the option and the value at fault
    resume_mode(resume)  False / None -> None (a new run), True -> "auto", or one of RESUME_MODES
"""

from __future__ import annotations

import torch

AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}
RESUME_MODES = ("auto", "strict", "best", "restart")  # see `resume` in the Trainer docstring


def resume_mode(resume) -> str | None:
    """The `resume` option as None (a new run) or one of RESUME_MODES; True means "auto"."""
    if resume is None or resume is False:
        return None
    if resume is True:
        return "auto"
    if isinstance(resume, str) and resume in RESUME_MODES:
        return resume
    raise ValueError(f"Trainer option resume must be False or None (a new run), True (= 'auto') or one of "
                     f"{', '.join(repr(m) for m in RESUME_MODES)}; got {resume!r}")


def check_options(num_classes, class_names, epochs, amp, grad_accum_steps, clip_grad_norm, micro_batch_size,
                  overfit_batches, limit_batches, checkpoint_every_steps, keep_last_k, best_mode) -> None:
    """Clear errors for impossible Trainer options."""

    def positive_int(name, value):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"Trainer option {name} must be an integer >= 1, got {value!r}")

    positive_int("num_classes", num_classes)
    positive_int("epochs", epochs)
    positive_int("grad_accum_steps", grad_accum_steps)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names but num_classes={num_classes}")
    if amp not in AMP_DTYPES:
        raise ValueError(f"Trainer option amp must be one of None, 'bf16', 'fp16', got {amp!r}")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"Trainer option clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")
    if micro_batch_size not in (None, "auto"):
        positive_int("micro_batch_size (or None or 'auto')", micro_batch_size)
    if not isinstance(overfit_batches, int) or overfit_batches < 0:
        raise ValueError(f"Trainer option overfit_batches must be an integer >= 0, got {overfit_batches!r}")
    if isinstance(limit_batches, float):
        if not 0 < limit_batches <= 1:
            raise ValueError(f"Trainer option limit_batches as a fraction must be in (0, 1], "
                             f"got {limit_batches}")
    elif limit_batches is not None:
        positive_int("limit_batches (or a fraction, or None)", limit_batches)
    if checkpoint_every_steps is not None:
        positive_int("checkpoint_every_steps", checkpoint_every_steps)
    if not isinstance(keep_last_k, int) or keep_last_k < 0:
        raise ValueError(f"Trainer option keep_last_k must be an integer >= 0, got {keep_last_k!r}")
    if best_mode not in ("max", "min"):
        raise ValueError(f"Trainer option best_mode must be 'max' or 'min', got {best_mode!r}")
