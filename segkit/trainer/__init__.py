"""segkit.trainer: the training loop, its callbacks, checkpoints and distributed plumbing.

    trainer.py      Trainer: fit / evaluate, train_one_epoch, train_step
    callbacks.py    Callback events and the built-ins (progress bar, CSV, TensorBoard, checkpoints, ...)
    checkpoint.py   atomic saves, weights_only loads, RNG states as tensors, archived run folders
    data_order.py   seeded, resumable, sharded data order (why the Trainer re-creates DataLoaders)
    distributed.py  torchrun environment, process group, rank-0-only writes
    options.py      resume modes and class names (the training options are checked by segkit.config)
"""

from .callbacks import (
    Callback,
    Checkpointer,
    CSVLogger,
    EarlyStopping,
    MetricsTable,
    ProgressBar,
    TensorBoardLogger,
)
from .checkpoint import (
    archive_run_folder,
    atomic_save,
    capture_rng_state,
    find_resume_checkpoint,
    load_checkpoint,
    restore_rng_state,
)
from .distributed import cleanup_distributed, dist_info_from_env, init_distributed
from .options import RESUME_MODES
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "Callback",
    "Checkpointer",
    "CSVLogger",
    "EarlyStopping",
    "MetricsTable",
    "NonFiniteLossError",
    "RESUME_MODES",
    "ProgressBar",
    "TensorBoardLogger",
    "Trainer",
    "archive_run_folder",
    "atomic_save",
    "capture_rng_state",
    "cleanup_distributed",
    "dist_info_from_env",
    "find_resume_checkpoint",
    "init_distributed",
    "load_checkpoint",
    "restore_rng_state",
]
