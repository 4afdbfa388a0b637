"""Joint multi-exit training on real Fashion-MNIST, deterministic for a given seed.

The loss is a weighted sum of every exit's cross-entropy, optionally with distillation from the
final exit into the earlier ones.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from edgeml_ros.core.checkpoint import ModelMeta, save_checkpoint
from edgeml_ros.core.data import ImageDataset, load_dataset
from edgeml_ros.core.degrade import degrade
from edgeml_ros.core.images import resize_and_normalize
from edgeml_ros.core.models import MultiExitNet, build_model

VALIDATION_SIZE = 5000


@dataclass
class TrainConfig:
    """Everything that determines a training run."""

    arch: str = "small_cnn"
    dataset: str = "fashion_mnist"
    width: float = 1.0
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    exit_weights: tuple[float, ...] | None = None
    distill_weight: float = 0.0
    distill_temperature: float = 3.0
    seed: int = 0
    threads: int = 2
    device: str = "cpu"


def seed_everything(seed: int, warn_only: bool = False) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels.

    `warn_only` lets kernels without a deterministic version run (with a warning): some CUDA
    backward passes have none.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=warn_only)


def to_tensors(
    ds: ImageDataset,
    mean: float,
    std: float,
    input_size: tuple[int, int],
    condition: str = "clean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized (N, 1, H, W) float images at the model's input size, and int64 labels.

    Resizing matches what the perception node does to camera frames (to_model_input).
    `condition` degrades the images first (see core.degrade).
    """
    x = torch.from_numpy(ds.images.astype(np.float32) / 255.0)
    x = degrade(x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2), condition)
    return resize_and_normalize(x, input_size, mean, std), torch.from_numpy(ds.labels)


def split_tensors(
    meta: ModelMeta, split: str, condition: str = "clean"
) -> tuple[torch.Tensor, np.ndarray]:
    """Model-ready inputs and labels of a split, preprocessed as at training time.

    `validation` is the last VALIDATION_SIZE images of the training set (never trained on).
    """
    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    ds = load_dataset(meta.dataset, "train" if split == "validation" else "test")
    x, y = to_tensors(ds, meta.norm_mean, meta.norm_std, tuple(meta.input_size), condition)
    if split == "validation":
        x, y = x[-VALIDATION_SIZE:], y[-VALIDATION_SIZE:]
    return x, y.numpy()


def multi_exit_loss(
    logits: list[torch.Tensor], target: torch.Tensor, cfg: TrainConfig
) -> torch.Tensor:
    """Weighted sum of exit cross-entropies, plus optional distillation from the final exit."""
    weights = cfg.exit_weights or (1.0,) * len(logits)
    loss = sum(w * F.cross_entropy(z, target) for w, z in zip(weights, logits, strict=True))
    if cfg.distill_weight > 0:
        t = cfg.distill_temperature
        teacher = F.softmax(logits[-1].detach() / t, dim=1)
        for z in logits[:-1]:
            kl = F.kl_div(F.log_softmax(z / t, dim=1), teacher, reduction="batchmean")
            loss = loss + cfg.distill_weight * kl * t * t
    return loss


@torch.inference_mode()
def exit_accuracy(model: MultiExitNet, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Accuracy of every exit on (x, y)."""
    model.eval()
    correct = torch.zeros(model.num_exits)
    for start in range(0, len(y), 1000):
        outs = model(x[start : start + 1000])
        for e, z in enumerate(outs):
            correct[e] += (z.argmax(1) == y[start : start + 1000]).sum().cpu()
    return (correct / len(y)).tolist()


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    dy, dx = (int(v) for v in torch.randint(0, 5, (2,), generator=gen))
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def train(cfg: TrainConfig, out: Path, command: str) -> ModelMeta:
    """Train a multi-exit model on Fashion-MNIST and save a checkpoint at `out`.

    On CUDA (`cfg.device`), runs are deterministic for one GPU model and software stack only.
    """
    cuda = cfg.device.startswith("cuda")
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    seed_everything(cfg.seed, warn_only=cuda)
    torch.set_num_threads(cfg.threads)
    full = load_dataset(cfg.dataset, "train")
    test = load_dataset(cfg.dataset, "test")
    mean = float(full.images.mean() / 255.0)
    std = float(full.images.std() / 255.0)
    in_channels = 1 if full.images.ndim == 3 else full.images.shape[-1]
    model = build_model(
        cfg.arch, num_classes=len(full.class_names), in_channels=in_channels, width=cfg.width
    ).to(cfg.device)
    input_size = model.input_shape[1:]
    x_all, y_all = to_tensors(full, mean, std, input_size)
    x_train, y_train = x_all[:-VALIDATION_SIZE], y_all[:-VALIDATION_SIZE]
    x_test, y_test = to_tensors(test, mean, std, input_size)
    x_train, y_train = x_train.to(cfg.device), y_train.to(cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * (len(y_train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(total=steps, desc=f"train {cfg.arch}", unit="batch")
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        for b in range(len(y_train) // cfg.batch_size):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size].to(cfg.device)
            loss = multi_exit_loss(model(_augment(x_train[idx], gen)), y_train[idx], cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss):.3f}")
    bar.close()
    accuracy = exit_accuracy(model, x_test.to(cfg.device), y_test.to(cfg.device))
    model = model.cpu()
    meta = ModelMeta(
        model_id=f"{full.name}/{cfg.arch}",
        arch=cfg.arch,
        arch_kwargs={
            "num_classes": len(full.class_names),
            "in_channels": in_channels,
            "width": cfg.width,
        },
        dataset=full.name,
        class_names=list(full.class_names),
        input_size=list(input_size),
        norm_mean=mean,
        norm_std=std,
        exit_accuracy=accuracy,
        command=command,
        extra={"train_config": {k: v for k, v in cfg.__dict__.items() if v is not None}},
    )
    return save_checkpoint(out, model.eval(), meta)
