"""Real datasets read from local files, never downloaded.

Fashion-MNIST comes from Debian's dataset-fashion-mnist; CIFAR-10 is used when a local copy in
the torchvision layout exists (`cifar-10-batches-py` under EDGEML_CIFAR10_DIR); any torchvision
ImageFolder directory (one sub-folder of images per class) is named `imagefolder:/path`;
`drone_scenes` composes drone-camera frames from Fashion-MNIST (core.scenes).
`open_dataset` gives each as a source of train, validation and (where there is one) test
splits.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

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


IMAGE_FOLDER = "imagefolder:"
# The validation split of datasets with a test split: the last images of the training file.
VALIDATION_SIZE = 5000
# PIL modes of single-channel images.
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class DatasetError(ValueError):
    """A dataset that is missing, malformed or unknown; the message names it."""


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

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """One image and its label."""
        return self.images[index], int(self.labels[index])


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
        raise DatasetError(
            f"unknown dataset {name!r}; known: drone_scenes, {', '.join(DATASETS)}, or "
            f"{IMAGE_FOLDER}/path"
        )
    return DATASETS[name](split)


class ArrayDataSource:
    """A dataset of `DATASETS`, read whole.

    `train` is the training file less its last VALIDATION_SIZE images, which are `validation`;
    `test` is the test file. Images keep their size (training resizes them).
    """

    splits = ("train", "validation", "test")

    def __init__(self, name: str) -> None:
        self.name = name
        self._train = load_dataset(name, "train")
        self.class_names = self._train.class_names
        self.channels = 1 if self._train.images.ndim == 3 else 3
        self.split_record = {"validation": f"last {VALIDATION_SIZE} of train"}

    def load(self, split: str, size: tuple[int, int] | None = None) -> ImageDataset:
        """The images of `split` at their own size (`size` is for image folders)."""
        check_split(self, split)
        if split == "test":
            return load_dataset(self.name, "test")
        part = slice(-VALIDATION_SIZE) if split == "train" else slice(-VALIDATION_SIZE, None)
        train = self._train
        return replace(train, split=split, images=train.images[part], labels=train.labels[part])

    def frames(self, split: str) -> ImageDataset:
        """The images of `split` one by one, as a camera publishes them."""
        return self.load(split)


class ImageFolderSource:
    """A torchvision ImageFolder directory: one sub-folder of images per class.

    Images may be grey or colour (the source is grey if all are) and of any size. There is no
    test split: `validation` holds `validation_fraction` of every class, the files first in
    the order of a hash of `split_seed` and their names (the same files for the same folder
    and seed, whatever the versions), and `train` the rest.
    """

    splits = ("train", "validation")

    def __init__(
        self, root: Path | str, split_seed: int = 0, validation_fraction: float = 0.1
    ) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DatasetError(f"image folder {self.root} not found (or not a directory)")
        if not 0 < validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), not {validation_fraction}")
        try:
            classes, class_to_idx = find_classes(str(self.root))
            samples = make_dataset(str(self.root), class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as exc:  # no class folder, or a class without images
            raise DatasetError(f"image folder {self.root}: {exc}") from None
        self.name = f"{IMAGE_FOLDER}{self.root}"
        self.class_names = tuple(classes)
        self.files = [Path(path).relative_to(self.root).as_posix() for path, _ in samples]
        self.labels = np.array([label for _, label in samples], dtype=np.int64)
        self.channels = 1 if all(_mode(self.root / f) in _GREY_MODES for f in self.files) else 3
        validation = _validation_members(self.labels, self.files, split_seed, validation_fraction)
        if not len(validation):
            raise DatasetError(
                f"image folder {self.root}: the validation split is empty ({len(self.files)} "
                "images): add images or raise the validation fraction"
            )
        self._members = {
            "train": np.setdiff1d(np.arange(len(self.files)), validation),
            "validation": validation,
        }
        listing = "".join(
            f"{f}\t{label}\n" for f, label in zip(self.files, self.labels, strict=True)
        )
        self.split_record = {
            "seed": split_seed,
            "validation_fraction": validation_fraction,
            "train": len(self._members["train"]),
            "validation": len(validation),
            "files_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        }

    def load(self, split: str, size: tuple[int, int] | None = None) -> ImageDataset:
        """The images of `split`, resized to `size` (height, width) as they load.

        Resampling is the camera frames' (core.images.resize), so training sees what the
        drone sees.
        """
        from tqdm import tqdm

        check_split(self, split)
        if size is None:
            raise ValueError(f"{self.name}: images of an image folder load at a size")
        members = self._members[split]
        bar = tqdm(members, desc=f"load {split}", unit="image", leave=False)
        images = np.stack(
            [_read_image(self.root / self.files[i], size, self.channels) for i in bar]
        )
        return ImageDataset(self.name, split, images, self.labels[members], self.class_names)

    def frames(self, split: str) -> FolderFrames:
        """The images of `split` one by one at their own size, read as they are asked for."""
        check_split(self, split)
        return FolderFrames(self, self._members[split])


class FolderFrames:
    """The images of an image-folder split, read from their files one at a time."""

    def __init__(self, source: ImageFolderSource, members: np.ndarray) -> None:
        self.source, self.members = source, members

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """One image at its own size, and its label."""
        member = int(self.members[index])
        path = self.source.root / self.source.files[member]
        return _read_image(path, None, self.source.channels), int(self.source.labels[member])


class Frames(Protocol):
    """A split's images one by one, each with its label, as a camera source publishes them."""

    def __len__(self) -> int:
        """How many images."""

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Image `index`, uint8 (H, W) grey or (H, W, 3) RGB, and its label."""


def class_ids(value: str | int | Sequence[int], class_count: int | None = None) -> frozenset[int]:
    """Class ids from a parameter's value: '0,3', 3 or [0, 3]; '' or [] is none.

    With `class_count`, every id must name one of that many classes. ValueError names the value
    that is not a class id.
    """
    if isinstance(value, str):
        items: list = value.split(",") if value.strip() else []
    else:
        items = [value] if isinstance(value, int | float) else list(value)
    ids = set()
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not text.isdecimal():
            raise ValueError(f"{item!r} is not a class id (an integer >= 0)")
        ids.add(int(text))
    unknown = sorted(i for i in ids if class_count is not None and i >= class_count)
    if unknown:
        raise ValueError(f"class {unknown[0]} unknown: the classes are 0..{class_count - 1}")
    return frozenset(ids)


def next_frame(
    frames: Frames, index: int, classes: Collection[int] = ()
) -> tuple[int, np.ndarray, int] | None:
    """The first frame from `index` on (wrapping around) of one of `classes` (empty: any).

    Its index, image and label; None when no frame of the split is of those classes.
    """
    for step in range(len(frames)):
        at = (index + step) % len(frames)
        pixels, label = frames[at]
        if not classes or label in classes:
            return at, pixels, label
    return None


class DataSource(Protocol):
    """What training and profiling read: named splits of labelled images."""

    name: str
    splits: tuple[str, ...]
    channels: int
    class_names: tuple[str, ...]
    split_record: dict

    def load(self, split: str, size: tuple[int, int] | None = None) -> ImageDataset:
        """The images of `split` (resized to `size` where the source needs one)."""

    def frames(self, split: str) -> Frames:
        """The images of `split` one by one at the camera's resolution."""


def open_dataset(name: str, split_seed: int = 0, validation_fraction: float = 0.1) -> DataSource:
    """The source of a dataset: drone_scenes, fashion_mnist, cifar10 or imagefolder:/path.

    `split_seed` and `validation_fraction` choose the validation split of an image folder.
    """
    if name.startswith(IMAGE_FOLDER):
        return ImageFolderSource(name[len(IMAGE_FOLDER) :], split_seed, validation_fraction)
    from edgeml_ros.core.scenes import NAME as SCENES
    from edgeml_ros.core.scenes import DroneScenes

    if name == SCENES:
        return DroneScenes()
    return ArrayDataSource(name)


def _validation_members(
    labels: np.ndarray, files: list[str], seed: int, fraction: float
) -> np.ndarray:
    """Indices of the validation images, sorted.

    `fraction` of each class (leaving it one image to train on), the first in the order of
    sha256(seed/name).
    """
    validation: list[int] = []
    for label in np.unique(labels):
        members = sorted(
            np.flatnonzero(labels == label),
            key=lambda i: hashlib.sha256(f"{seed}/{files[i]}".encode()).digest(),
        )
        validation += members[: min(len(members) - 1, round(fraction * len(members)))]
    return np.array(sorted(validation), dtype=np.int64)


def check_split(source: DataSource, split: str) -> None:
    """DatasetError unless `source` has `split`."""
    if split not in source.splits:
        raise DatasetError(
            f"{source.name} has no {split!r} split; it has {', '.join(source.splits)}"
        )


def _mode(path: Path) -> str:
    """The PIL mode of an image file (its header only is read)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None


def _read_image(path: Path, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """An image file as uint8 (H, W) grey or (H, W, 3) RGB, at `size` or its own."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            converted = img.convert("L" if channels == 1 else "RGB")
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None
    if size is None:
        return np.asarray(converted, dtype=np.uint8)
    from edgeml_ros.core.images import resize

    pixels = np.asarray(converted, dtype=np.float32)
    chw = (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)) / np.float32(255.0)
    out = np.clip(np.rint(resize(chw, size) * 255.0), 0, 255).astype(np.uint8)
    return out[0] if channels == 1 else out.transpose(1, 2, 0)
