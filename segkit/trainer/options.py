"""What the Trainer checks itself, beyond the training options (those are checked by segkit.config).

    resume_mode(resume)                       False / None -> None (a new run), True -> "auto", or a mode
    check_class_names(num_classes, names)     the class names, one per class (default "0", "1", ...)

The options epochs, amp, grad_accum_steps, ... have their defaults and checks in one place, the `train`
section of segkit.config.SCHEMA, shared by configs and the Trainer's keyword arguments.
"""

from __future__ import annotations

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


def check_class_names(num_classes, class_names) -> list[str]:
    """`class_names` as a list with one name per class; default the class indices as text."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"Trainer option num_classes must be an integer >= 1, got {num_classes!r}")
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names but num_classes={num_classes}")
    return list(class_names)
