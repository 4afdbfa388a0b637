"""Checkpoints: weights plus the metadata needed to rebuild, verify and preprocess for a model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgeml_ros.core.models import ArchitectureError, MultiExitNet, build_model
from edgeml_ros.core.paths import CHECKPOINT_DIR

DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "drone_scenes_resnet18.pt"
# A tiny four-block model: quick to run, used by the tests of the mechanics.
TINY_CHECKPOINT = CHECKPOINT_DIR / "fashion_mnist_small_cnn.pt"
# 2: channels and per-channel normalisation; format 1 (one scalar mean and std) still loads.
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)


@dataclass
class ModelMeta:
    """What a checkpoint says about its model.

    `arch` is a registered architecture or a `package.module:function` factory, called with
    `arch_kwargs`. Inputs are `channels` x `input_size` (height, width), normalised per channel
    by `norm_mean` and `norm_std` (one value, or one per channel). A format-1 checkpoint's
    scalar mean and std load as one-value lists, its channels from `arch_kwargs`' in_channels.
    """

    model_id: str
    arch: str
    arch_kwargs: dict
    dataset: str
    class_names: list[str]
    input_size: list[int]
    norm_mean: list[float]
    norm_std: list[float]
    exit_accuracy: list[float]
    weights_digest: str = ""
    command: str = ""
    extra: dict = field(default_factory=dict)
    channels: int | None = None

    def __post_init__(self) -> None:
        self.norm_mean = _per_channel(self.norm_mean)
        self.norm_std = _per_channel(self.norm_std)
        if self.channels is None:
            self.channels = int(self.arch_kwargs.get("in_channels", 1))
        for values in (self.norm_mean, self.norm_std):
            if len(values) not in (1, self.channels):
                raise ValueError(
                    f"{self.model_id}: {len(values)} normalisation values for "
                    f"{self.channels} channels"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(channels, height, width) of one model input."""
        return (self.channels, *self.input_size)


def _per_channel(values: float | list[float]) -> list[float]:
    return [float(v) for v in values] if isinstance(values, (list, tuple)) else [float(values)]


@dataclass
class ModelBundle:
    """A loaded model in eval mode with its metadata."""

    model: MultiExitNet
    meta: ModelMeta


# Offload requests carry the digest's first characters ("sha256:" and 16 hex digits, 64 bits):
# plenty to tell checkpoints apart, and 48 bytes less per request on the radio link.
OFFLOAD_DIGEST_CHARS = 23


def digest_matches(sent: str, digest: str) -> bool:
    """Whether `sent` (OFFLOAD_DIGEST_CHARS characters or more) is the start of `digest`."""
    return len(sent) >= OFFLOAD_DIGEST_CHARS and digest.startswith(sent)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the parameter and buffer names and bytes, in state-dict order."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "sha256:" + h.hexdigest()


def save_checkpoint(path: Path, model: MultiExitNet, meta: ModelMeta) -> ModelMeta:
    """Save weights and metadata; fills in the weights digest."""
    meta.weights_digest = weights_digest(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "meta": meta.__dict__,
            "state_dict": model.state_dict(),
        },
        path,
    )
    return meta


def _read(path: Path) -> tuple[dict, ModelMeta]:
    """A checkpoint file's contents and its metadata, checked."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format_version") not in _READABLE_FORMATS:
        raise ValueError(f"{path}: checkpoint format {blob.get('format_version')} unsupported")
    return blob, ModelMeta(**blob["meta"])


def read_meta(path: Path | str) -> ModelMeta:
    """What a checkpoint says about its model, without building the model."""
    return _read(Path(path))[1]


def load_checkpoint(path: Path | str = DEFAULT_CHECKPOINT) -> ModelBundle:
    """Load a checkpoint, rebuild its model and verify its weights digest.

    A model named by a factory (`package.module:function`) is built by importing and calling
    it: load checkpoints whose factories you trust.
    """
    path = Path(path)
    blob, meta = _read(path)
    try:
        model = build_model(meta.arch, **meta.arch_kwargs)
    except ArchitectureError as exc:
        raise ArchitectureError(f"{path}: {exc}") from exc
    if model.input_shape != meta.input_shape:
        raise ValueError(
            f"{path}: the checkpoint's inputs are {meta.input_shape}, but {meta.arch!r} builds "
            f"a model for {model.input_shape}"
        )
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: the weights do not fit the model {meta.arch!r} builds: {exc}"
        ) from None
    model.eval()
    digest = weights_digest(model)
    if digest != meta.weights_digest:
        raise ValueError(f"{path}: weights digest {digest} does not match metadata")
    return ModelBundle(model, meta)
