"""Getting pretrained weights, and failing fast with a clear message when they cannot be had.

Pretrained weights are a user option: the course itself never needs them and tests never download.
torchvision keeps its files in ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``); smp keeps its
encoder weights in the Hugging Face cache (``$HF_HOME/hub``). With ``$SEGKIT_PRETRAINED`` set (see
segkit.paths) they go to ``$SEGKIT_PRETRAINED/torch/checkpoints`` and ``$SEGKIT_PRETRAINED/huggingface``
instead: ``torch_weights_dir()`` and ``hf_weights_dir()`` (segkit.paths). When a file is not cached we
first open one TCP connection to the download host (a few seconds at most): offline, this fails at once,
whereas the download libraries themselves may retry for half a minute (huggingface_hub backs off 1 + 2 + 4 +
8 + 8 s).
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from urllib.parse import urlparse

import torch

from segkit.paths import hf_weights_dir, torch_weights_dir

CONNECT_TIMEOUT_S = 5.0


class PretrainedWeightsUnavailable(RuntimeError):
    """Raised when pretrained weights were asked for but are neither cached nor downloadable."""


@contextmanager
def hf_cache_at(folder: str | os.PathLike):
    """Within the block, huggingface_hub downloads to and reads from `folder` (smp builds its pretrained
    encoders with hf_hub_download, which has no folder argument of its own). Restored afterwards."""
    from huggingface_hub import constants

    before = constants.HF_HUB_CACHE
    constants.HF_HUB_CACHE = str(folder)
    try:
        yield
    finally:
        constants.HF_HUB_CACHE = before


def network_problem(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Try one TCP connection to the host of ``url``. Returns None when it works, else why it failed."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return None
    except Exception as err:  # any failure to connect (DNS, refused, timeout) means: cannot download now
        return f"cannot connect to {parsed.hostname}:{port} ({type(err).__name__}: {err})"


def torchvision_weights_state_dict(weights, what: str, instead: str) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision ``WeightsEnum`` member, from torch's cache or downloaded.

    Args:
        weights: e.g. ``torchvision.models.ResNet50_Weights.IMAGENET1K_V1``.
        what: words for the error message, e.g. ``"ImageNet weights for the resnet50 backbone"``.
        instead: the option that avoids the download, e.g. ``"pretrained_backbone=False"``.

    Raises:
        PretrainedWeightsUnavailable: offline and not cached, or the download/load failed.
    """
    filename = os.path.basename(urlparse(weights.url).path)
    folder = torch_weights_dir()
    cached = folder / filename
    advice = (
        f"To proceed: download {weights.url} on a machine with internet access and copy it to {cached} "
        f"(set SEGKIT_PRETRAINED, or TORCH_HOME, to move it), or build the model with {instead} to start "
        "from random weights."
    )
    if not cached.is_file():
        problem = network_problem(weights.url)
        if problem is not None:
            raise PretrainedWeightsUnavailable(
                f"Cannot download {what}: the file is not cached and {problem}. {advice}"
            )
    try:
        return weights.get_state_dict(progress=False, model_dir=str(folder))
    except Exception as err:
        message = f"Could not get {what} from {weights.url}: {err}. {advice}"
        raise PretrainedWeightsUnavailable(message) from err


def check_smp_encoder_weights(encoder_name: str, encoder_weights: str, model_name: str) -> None:
    """Fail fast if smp's pretrained ``encoder_weights`` for ``encoder_name`` cannot be had.

    Checks that the weights name exists for this encoder, then that the file is in the Hugging Face cache or
    the Hub can be reached. ``tu-`` (timm) encoders only get the connection check.

    Raises:
        ValueError: ``encoder_weights`` is not offered for this encoder (lists the ones that are).
        PretrainedWeightsUnavailable: not cached and the Hub cannot be reached.
    """
    from huggingface_hub import constants, try_to_load_from_cache
    from segmentation_models_pytorch.encoders import encoders

    if encoder_name.startswith("tu-"):
        where, cached = f"timm model {encoder_name[3:]!r} on the Hugging Face Hub", None
    else:
        offered = encoders[encoder_name]["pretrained_settings"]
        if encoder_weights not in offered:
            raise ValueError(
                f"{model_name}: encoder_weights={encoder_weights!r} is not offered for smp encoder "
                f"{encoder_name!r}; available: {sorted(offered)} (or None for random weights)"
            )
        settings = offered[encoder_weights]
        where = f"Hugging Face Hub repo {settings['repo_id']}"
        cached = try_to_load_from_cache(
            settings["repo_id"], "model.safetensors",
            cache_dir=hf_weights_dir(), revision=settings["revision"]
        )
    if isinstance(cached, str):
        return
    problem = network_problem(constants.ENDPOINT)
    if problem is not None:
        raise PretrainedWeightsUnavailable(
            f"{model_name}: cannot download the {encoder_weights!r} weights of smp encoder {encoder_name!r} "
            f"({where}): they are not in the Hugging Face cache ({hf_weights_dir()}) and {problem}. "
            "To proceed: build the model once on a machine with internet access and copy that cache folder "
            "here (set SEGKIT_PRETRAINED, or HF_HOME, to point at it), or use encoder_weights=None to start "
            "from random weights."
        )
