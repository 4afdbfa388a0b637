"""Checkpoints: weights plus the metadata needed to rebuild, verify and preprocess for a model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgeml_ros.core.models import MultiExitNet, build_model

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "fashion_mnist_b_vgg.pt"
# A tiny four-block model: quick to run, used by the tests of the mechanics.
TINY_CHECKPOINT = CHECKPOINT_DIR / "fashion_mnist_small_cnn.pt"
FORMAT_VERSION = 1


@dataclass
class ModelMeta:
    """What a checkpoint says about its model."""

    model_id: str
    arch: str
    arch_kwargs: dict
    dataset: str
    class_names: list[str]
    input_size: list[int]
    norm_mean: float
    norm_std: float
    exit_accuracy: list[float]
    weights_digest: str = ""
    command: str = ""
    extra: dict = field(default_factory=dict)


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


def load_checkpoint(path: Path | str = DEFAULT_CHECKPOINT) -> ModelBundle:
    """Load a checkpoint, rebuild its model and verify its weights digest."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {blob.get('format_version')} unsupported")
    meta = ModelMeta(**blob["meta"])
    model = build_model(meta.arch, **meta.arch_kwargs)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    digest = weights_digest(model)
    if digest != meta.weights_digest:
        raise ValueError(f"{path}: weights digest {digest} does not match metadata")
    return ModelBundle(model, meta)
