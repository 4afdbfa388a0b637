"""Real datasets read from local files, never downloaded.

Fashion-MNIST comes from Debian's dataset-fashion-mnist; CIFAR-10 is used when a local copy in
the torchvision layout exists (`cifar-10-batches-py` under EDGEML_CIFAR10_DIR).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path(
    os.environ.get("EDGEML_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
)
CIFAR10_DIR = Path(os.environ.get("EDGEML_CIFAR10_DIR", "/usr/share/datasets/cifar10"))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


class DatasetError(RuntimeError):
    """A dataset file is missing or malformed."""


@dataclass(frozen=True)
class ImageDataset:
    """uint8 images, (N, H, W) grayscale or (N, H, W, 3) colour, with integer labels (N,)."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(
            f"{path} not found: install the dataset with `apt-get install dataset-fashion-mnist` "
            "or point EDGEML_FASHION_MNIST_DIR at a folder holding the idx .gz files"
        )
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetError(f"{path}: truncated idx header")
    header = np.frombuffer(raw, dtype=">i4", count=1 + ndim)
    if int(header[0]) != magic:
        raise DatasetError(f"{path}: idx magic {int(header[0])}, expected {magic}")
    dims = tuple(int(d) for d in header[1:])
    expected = int(np.prod(dims))
    if len(raw) - header_len != expected:
        raise DatasetError(
            f"{path}: {len(raw) - header_len} data bytes, header promises {expected} for {dims}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def load_fashion_mnist(split: str = "test", root: Path | None = None) -> ImageDataset:
    """Load the real Fashion-MNIST `train` (60k) or `test` (10k) split from idx files."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", _IDX_IMAGES_MAGIC, 3)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", _IDX_LABELS_MAGIC, 1)
    if len(images) != len(labels):
        raise DatasetError(f"{root}: {len(images)} images but {len(labels)} labels ({split})")
    return ImageDataset(
        "fashion_mnist", split, images, labels.astype(np.int64), FASHION_MNIST_CLASSES
    )


def load_cifar10(split: str = "test", root: Path | None = None) -> ImageDataset:
    """Load CIFAR-10 from a local torchvision-layout copy (no download)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else CIFAR10_DIR
    if not (root / "cifar-10-batches-py").is_dir():
        raise DatasetError(
            f"no CIFAR-10 copy at {root}/cifar-10-batches-py (torchvision layout); it is never "
            "downloaded: point EDGEML_CIFAR10_DIR at a local copy"
        )
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(root), train=split == "train", download=False)
    return ImageDataset(
        "cifar10", split, np.asarray(ds.data, dtype=np.uint8),
        np.asarray(ds.targets, dtype=np.int64), tuple(ds.classes),
    )  # fmt: skip


DATASETS = {"fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


def load_dataset(name: str, split: str) -> ImageDataset:
    """Load a dataset by name (`fashion_mnist` or `cifar10`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name](split)
