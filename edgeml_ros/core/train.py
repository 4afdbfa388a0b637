"""Multi-exit training, deterministic for a given seed.

Two modes. `joint` trains blocks and exits together; `heads` freezes the backbone (its weights
and its batch-norm statistics) and trains the early exit heads only, the usual case for a model
that is trained already; the final exit, the model's own classifier, stays frozen unless
`train_final_exit`. The loss is a weighted sum of every exit's cross-entropy, optionally with
distillation from the final exit into the earlier ones.

Data come from core.data.open_dataset (Fashion-MNIST, CIFAR-10 or an image folder), converted
to the model's channels, resized to its input size and normalised per channel with the mean and
standard deviation of the training split.
"""

from __future__ import annotations

import inspect
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from edgeml_ros.core.checkpoint import CHECKPOINT_DIR, ModelMeta, save_checkpoint
from edgeml_ros.core.data import IMAGE_FOLDER, DatasetError, DataSource, ImageDataset, open_dataset
from edgeml_ros.core.degrade import CONDITIONS, degrade
from edgeml_ros.core.images import Norm, match_channels, normalize, resize
from edgeml_ros.core.models import MultiExitNet, build_model, resolve_architecture

MODES = ("joint", "heads")


@dataclass
class TrainConfig:
    """Everything that determines a training run.

    `arch` is a registered architecture or a `package.module:function` factory; it gets
    `num_classes` and `in_channels` from the data, and `width` when set, if it takes them, then
    `arch_kwargs`; all of these are recorded in the checkpoint. `init_kwargs` go to the factory
    for the initial model only (the path of a trained model's weights, say): the checkpoint
    holds the weights, so loading it needs none of them. `split_seed` and
    `validation_fraction` split an image folder. `degraded_fraction` of the training images
    are degraded (blur, noise or low light at a random severity from 0.5 to 3) as they are
    drawn, so the exits learn the inputs a drone camera gives.
    """

    arch: str = "small_cnn"
    arch_kwargs: dict = field(default_factory=dict)
    init_kwargs: dict = field(default_factory=dict)
    dataset: str = "fashion_mnist"
    mode: str = "joint"
    train_final_exit: bool = False
    width: float | None = None
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
    split_seed: int = 0
    validation_fraction: float = 0.1
    degraded_fraction: float = 0.0


def model_id(dataset: str, arch: str) -> str:
    """The model id: `dataset/arch` in short.

    fashion_mnist/b_vgg; birds/net for imagefolder:/data/birds and my_pkg.models:net.
    """
    if dataset.startswith(IMAGE_FOLDER):
        dataset = Path(dataset.removeprefix(IMAGE_FOLDER)).expanduser().resolve().name
    return f"{dataset}/{arch.rpartition(':')[2]}"


def default_checkpoint_path(dataset: str, arch: str) -> Path:
    """Where a run saves by default: the package's checkpoints, named by the model id."""
    return CHECKPOINT_DIR / f"{model_id(dataset, arch).replace('/', '_')}.pt"


def seed_everything(seed: int, warn_only: bool = False) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels.

    `warn_only` lets kernels without a deterministic version run (with a warning): some CUDA
    backward passes have none.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=warn_only)


def to_frames(
    ds: ImageDataset,
    input_size: tuple[int, int],
    channels: int,
    condition: str = "clean",
    severity: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, channels, H, W) float images in [0, 1] at the model's input size, and int64 labels.

    Channels and resizing match what the perception node does to camera frames
    (decode_image, to_model_input). `condition` degrades the images first, at `severity` (see
    core.degrade).
    """
    x = ds.images.astype(np.float32) / 255.0
    x = match_channels(x[..., None] if x.ndim == 3 else x, channels)
    chw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    x = degrade(chw, condition, severity=severity)
    return resize(x, input_size), torch.from_numpy(ds.labels)


def to_tensors(
    ds: ImageDataset,
    mean: Norm,
    std: Norm,
    input_size: tuple[int, int],
    channels: int,
    condition: str = "clean",
    severity: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`to_frames`, normalised per channel: model inputs, and int64 labels."""
    x, y = to_frames(ds, input_size, channels, condition, severity)
    return normalize(x, mean, std), y


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each channel of (N, C, H, W) images."""
    std, mean = torch.std_mean(x, dim=(0, 2, 3), correction=0)
    return mean.tolist(), std.tolist()


def reopen_dataset(meta: ModelMeta) -> DataSource:
    """The data a checkpoint was trained on, split as recorded (DatasetError if it changed)."""
    record = meta.extra.get("data_split", {})
    source = open_dataset(
        meta.dataset, record.get("seed", 0), record.get("validation_fraction", 0.1)
    )
    if record and source.split_record != record:
        raise DatasetError(
            f"{meta.dataset} changed since {meta.model_id} was trained: its split was {record}, "
            f"now {source.split_record}"
        )
    return source


def split_frames(
    meta: ModelMeta, split: str, condition: str = "clean"
) -> tuple[torch.Tensor, np.ndarray]:
    """The [0, 1] frames of a split at the model's input size (`to_frames`), and labels.

    `validation` was never trained on (see core.data for how each dataset holds it out).
    """
    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    size = tuple(meta.input_size)
    x, y = to_frames(reopen_dataset(meta).load(split, size), size, meta.channels, condition)
    return x, y.numpy()


def split_tensors(
    meta: ModelMeta, split: str, condition: str = "clean"
) -> tuple[torch.Tensor, np.ndarray]:
    """Model-ready inputs and labels of a split (`split_frames`, normalised as in training)."""
    x, y = split_frames(meta, split, condition)
    return normalize(x, meta.norm_mean, meta.norm_std), y


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


def _degrade_some(x: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """`fraction` of a batch of [0, 1] images degraded, each by a random condition."""
    if fraction <= 0:
        return x
    picked = torch.rand(len(x), generator=gen) < fraction
    kinds = torch.randint(1, len(CONDITIONS), (len(x),), generator=gen)
    x = x.clone()
    for kind in range(1, len(CONDITIONS)):
        members = (picked & (kinds == kind)).to(x.device)
        if members.any():
            severity = 0.5 + 2.5 * float(torch.rand(1, generator=gen))
            seed = int(torch.randint(2**31, (1,), generator=gen))
            x[members] = degrade(x[members], CONDITIONS[kind], seed, severity)
    return x


def _factory_kwargs(
    cfg: TrainConfig, factory: Callable[..., MultiExitNet], num_classes: int, in_channels: int
) -> dict:
    """The factory's arguments.

    Those of num_classes, in_channels (from the data) and width (when set) that it takes, then
    cfg.arch_kwargs.
    """
    offered = {"num_classes": num_classes, "in_channels": in_channels, "width": cfg.width}
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if cfg.width is not None and not (takes_any or "width" in params):
        raise ValueError(f"architecture {cfg.arch!r} takes no width")
    taken = {k: v for k, v in offered.items() if v is not None and (takes_any or k in params)}
    return {**taken, **cfg.arch_kwargs}


def _freeze(model: MultiExitNet, cfg: TrainConfig) -> list[torch.nn.Module]:
    """Turn gradients off for what does not train (the backbone in heads mode); those parts."""
    if cfg.mode == "joint":
        return []
    frozen = [*model.blocks, *([] if cfg.train_final_exit else [model.exits[-1]])]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def train(cfg: TrainConfig, out: Path, command: str) -> ModelMeta:
    """Train a multi-exit model and save a checkpoint at `out`.

    Exit accuracy is measured on the test split, or on the validation split of an image folder
    (which has no test split). On CUDA (`cfg.device`), runs are deterministic for one GPU model
    and software stack only.
    """
    cuda = cfg.device.startswith("cuda")
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    seed_everything(cfg.seed, warn_only=cuda)
    torch.set_num_threads(cfg.threads)
    if cfg.mode not in MODES:
        raise ValueError(f"unknown training mode {cfg.mode!r}; known: {', '.join(MODES)}")
    if cfg.train_final_exit and cfg.mode != "heads":
        raise ValueError("train_final_exit is for heads mode (joint mode trains every exit)")
    factory = resolve_architecture(cfg.arch)
    source = open_dataset(cfg.dataset, cfg.split_seed, cfg.validation_fraction)
    classes = source.class_names
    arch_kwargs = _factory_kwargs(cfg, factory, len(classes), source.channels)
    model = build_model(cfg.arch, **arch_kwargs, **cfg.init_kwargs)
    if model.num_classes != len(classes):
        raise ValueError(
            f"{cfg.arch!r} has {model.num_classes} outputs, but {source.name} has "
            f"{len(classes)} classes ({', '.join(classes)})"
        )
    frozen = _freeze(model, cfg)
    channels, size = model.input_shape[0], model.input_shape[1:]
    x_train, y_train = to_tensors(source.load("train", size), 0.0, 1.0, size, channels)
    mean, std = channel_stats(x_train)  # x_train stays in [0, 1]: batches are normalised
    eval_split = "test" if "test" in source.splits else "validation"
    x_eval, y_eval = to_tensors(source.load(eval_split, size), mean, std, size, channels)
    batches = len(y_train) // cfg.batch_size
    if batches == 0:
        raise ValueError(
            f"{len(y_train)} training images are less than a batch of "
            f"{cfg.batch_size}: lower the batch size"
        )
    model = model.to(cfg.device)
    x_train, y_train = x_train.to(cfg.device), y_train.to(cfg.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * batches
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(total=steps, desc=f"train {cfg.arch} ({cfg.mode})", unit="batch")
    for epoch in range(cfg.epochs):
        model.train()
        for module in frozen:
            module.eval()  # batch-norm statistics stay the backbone's
        order = torch.randperm(len(y_train), generator=gen)
        for b in range(batches):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size].to(cfg.device)
            x = _degrade_some(_augment(x_train[idx], gen), cfg.degraded_fraction, gen)
            loss = multi_exit_loss(model(normalize(x, mean, std)), y_train[idx], cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()
    accuracy = exit_accuracy(model, x_eval.to(cfg.device), y_eval.to(cfg.device))
    model = model.cpu()
    meta = ModelMeta(
        model_id=model_id(source.name, cfg.arch),
        arch=cfg.arch,
        arch_kwargs=arch_kwargs,
        dataset=source.name,
        class_names=list(classes),
        input_size=list(size),
        norm_mean=mean,
        norm_std=std,
        exit_accuracy=accuracy,
        command=command,
        channels=channels,
        extra={
            "train_config": {k: v for k, v in cfg.__dict__.items() if v is not None},
            "data_split": source.split_record,
            "accuracy_split": eval_split,
        },
    )
    return save_checkpoint(out, model.eval(), meta)
