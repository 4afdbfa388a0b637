"""Drone scenes: a synthetic composition of real Fashion-MNIST images, as a drone camera sees them.

No real aerial data set can be had on the development machines, so the default workload
composes one from the real Fashion-MNIST: each RGB frame shows one item (the label) at a random
scale, position and colour over a varied background (colour gradients, blotchy terrain,
speckle), with up to three smaller items of any class as clutter. The images are synthetic;
the objects in them are real photographs. Sensor degradations (blur, noise, low light; see
core.degrade) are applied on top, at several severities, where training and profiling ask.

Every scene is a pure function of (seed, split, index), so the splits are fixed: `train` and
`validation` compose items of Fashion-MNIST's training file (its last 5,000 items are the
validation items, as for Fashion-MNIST itself), `test` composes the 10,000 test items, one scene
each, in order. A split's clutter comes from the same items as its targets.
"""

from __future__ import annotations

import numpy as np

from edgeml_ros.core.data import (
    FASHION_MNIST_CLASSES,
    VALIDATION_SIZE,
    DatasetError,
    ImageDataset,
    check_split,
    load_fashion_mnist,
)

NAME = "drone_scenes"
VERSION = 1
SCENE_SIZE = 96  # pixels, square
SPLIT_SIZES = {"train": 30000, "validation": VALIDATION_SIZE, "test": 10000}
_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
# The item a scene is about is this many pixels across; clutter is smaller.
TARGET_PIXELS = (40, 80)
CLUTTER_PIXELS = (14, 34)
MAX_CLUTTER = 3
# Least distance (RGB in [0, 1]) between an item's colour and the mean background colour.
MIN_CONTRAST = 0.35


class DroneScenes:
    """The drone-scenes data source: train, validation and test splits of RGB frames."""

    name = NAME
    splits = ("train", "validation", "test")
    channels = 3
    class_names = FASHION_MNIST_CLASSES

    def __init__(self, seed: int = 0, size: int = SCENE_SIZE) -> None:
        train = load_fashion_mnist("train")
        test = load_fashion_mnist("test")
        self.seed, self.size = seed, size
        self._items = {
            "train": (train.images[:-VALIDATION_SIZE], train.labels[:-VALIDATION_SIZE]),
            "validation": (train.images[-VALIDATION_SIZE:], train.labels[-VALIDATION_SIZE:]),
            "test": (test.images, test.labels),
        }
        self.split_record = {"version": VERSION, "seed": seed, "size": size, **SPLIT_SIZES}

    def scene(self, split: str, index: int) -> tuple[np.ndarray, int]:
        """Scene `index` of `split`: a (size, size, 3) uint8 RGB frame and its label."""
        check_split(self, split)
        if not 0 <= index < SPLIT_SIZES[split]:
            last = SPLIT_SIZES[split] - 1
            raise DatasetError(f"{NAME} {split} has scenes 0..{last}, not {index}")
        images, labels = self._items[split]
        rng = np.random.default_rng((self.seed, _SPLIT_CODES[split], index))
        target = index if split != "train" else int(rng.integers(len(images)))
        frame = _background(rng, self.size)
        mean_colour = frame.mean(axis=(0, 1))
        for _ in range(int(rng.integers(0, MAX_CLUTTER + 1))):
            item = images[int(rng.integers(len(images)))]
            _paste(frame, item, rng, CLUTTER_PIXELS, mean_colour, float(rng.uniform(0.6, 1.0)))
        _paste(frame, images[target], rng, TARGET_PIXELS, mean_colour, 1.0)
        return np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8), int(labels[target])

    def frames(self, split: str) -> SceneFrames:
        """The scenes of `split` one by one, composed as they are asked for."""
        check_split(self, split)
        return SceneFrames(self, split)

    def load(self, split: str, size: tuple[int, int] | None = None) -> ImageDataset:
        """Every scene of `split` (a progress bar while they are composed)."""
        from tqdm import tqdm

        if size is not None and tuple(size) != (self.size, self.size):
            raise DatasetError(f"{NAME} frames are {self.size}x{self.size}, not {size}")
        check_split(self, split)
        count = SPLIT_SIZES[split]
        frames = np.empty((count, self.size, self.size, 3), np.uint8)
        labels = np.empty(count, np.int64)
        for i in tqdm(range(count), desc=f"compose {NAME} {split}", unit="scene", leave=False):
            frames[i], labels[i] = self.scene(split, i)
        return ImageDataset(NAME, split, frames, labels, self.class_names)


class SceneFrames:
    """The scenes of one split, composed one at a time."""

    def __init__(self, source: DroneScenes, split: str) -> None:
        self.source, self.split = source, split

    def __len__(self) -> int:
        return SPLIT_SIZES[self.split]

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Scene `index` and its label."""
        return self.source.scene(self.split, index)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) float background: a gradient, blotchy terrain or speckle, textured."""
    kind = rng.integers(3)
    if kind == 0:  # a colour gradient in a random direction
        c0, c1 = rng.random(3), rng.random(3)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        frame = c0 * (1 - t) + c1 * t
    elif kind == 1:  # blotchy terrain: a coarse random grid, smoothly upsampled
        cells = int(rng.integers(3, 9))
        frame = _upsample(rng.random((cells, cells, 3)), size)
    else:  # speckle over a flat colour
        frame = np.broadcast_to(rng.random(3), (size, size, 3)) + 0.15 * _upsample(
            rng.standard_normal((size // 4, size // 4, 3)), size
        )
    texture = rng.normal(0.0, rng.uniform(0.01, 0.06), (size, size, 1))
    return np.clip(frame + texture, 0.0, 1.0)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of an (h, w, 3) grid to (size, size, 3)."""
    h, w, _ = grid.shape
    ys, xs = np.linspace(0, h - 1, size), np.linspace(0, w - 1, size)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _paste(
    frame: np.ndarray,
    item: np.ndarray,
    rng: np.random.Generator,
    pixels: tuple[int, int],
    mean_colour: np.ndarray,
    opacity: float,
) -> None:
    """Paste a 28x28 grey item, scaled and coloured, at a random place inside the frame.

    The item's grey level is both its shading and its alpha: its background stays see-through.
    """
    size = frame.shape[0]
    side = int(rng.integers(pixels[0], min(pixels[1], size) + 1))
    grey = _upsample(item[..., None].astype(np.float64) / 255.0, side)[..., 0]
    colour = rng.random(3)
    for _ in range(10):  # a colour that stands out from the background
        if np.linalg.norm(colour - mean_colour) >= MIN_CONTRAST:
            break
        colour = rng.random(3)
    top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
    alpha = (grey * opacity)[..., None]
    shaded = colour * (0.3 + 0.7 * grey[..., None])
    region = frame[top : top + side, left : left + side]
    region *= 1 - alpha
    region += alpha * shaded
