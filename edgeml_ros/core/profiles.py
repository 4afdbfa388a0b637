"""Measured model profiles, saved as versioned files for the simulator, controller and nodes.

They hold per-block latency and output bytes, MACs, and per-sample exit confidences.

A profile is a JSON file plus an .npz beside it holding, for every validation sample and every
exit, the class predicted and the confidence under each exit rule, for clean inputs and for each
synthetic degradation (core.degrade). With those, the accuracy, exit rates and compute of any
threshold setting follow exactly (`ExitTable`). For every image encoding (the camera frame
shipped at cut 0, core.codec.IMAGE_ENCODINGS) it also holds each frame's bytes in it and the
final exit's answer on the frame as the base station decodes it (`ImageExit`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgeml_ros.core.calibration import Calibration
from edgeml_ros.core.checkpoint import ModelBundle
from edgeml_ros.core.codec import ENCODINGS, IMAGE_ENCODINGS, encode_tensor
from edgeml_ros.core.decisions import LocalTimes
from edgeml_ros.core.energy import DeviceEnergy
from edgeml_ros.core.images import (
    decode_frame,
    encode_frame,
    input_frame,
    normalize,
    to_model_input,
)
from edgeml_ros.core.models import MultiExitNet
from edgeml_ros.core.paths import PROFILE_DIR
from edgeml_ros.core.plan import EXIT_RULES

DEFAULT_PROFILE = PROFILE_DIR / "drone_scenes_resnet18.json"
PROFILE_FORMAT = "edgeml_ros.profile"
# 3: the base station's latencies (server_threads), the class count, and the reference model's
# time on this machine (what sets the emulated drone's compute speed, core.energy)
# 4: the image encodings (`image_bytes`, and `ImageExit` tables in the .npz). A version-3
# profile still loads, with no image encodings.
PROFILE_VERSION = 4
LOADABLE_VERSIONS = (3, PROFILE_VERSION)


class ProfileError(ValueError):
    """A profile file that is missing, of another format or version, or inconsistent."""


@dataclass
class BlockProfile:
    """One block: latency on this machine, MACs, and its output size per encoding.

    `latency_ms_*` at the drone's thread count (the profile's `threads`),
    `server_latency_ms_median` at the base station's (`server_threads`).
    """

    index: int
    latency_ms_median: float
    latency_ms_p95: float
    server_latency_ms_median: float
    macs: int
    output_shape: list[int]
    output_bytes: dict[str, int]


@dataclass
class ExitProfile:
    """One exit head: which block it follows, its latency (as a block's) and MACs."""

    index: int
    after_block: int
    latency_ms_median: float
    latency_ms_p95: float
    server_latency_ms_median: float
    macs: int


@dataclass
class Profile:
    """Everything measured about one model on one machine.

    `reference_ms` is the reference model's median time on this machine at `threads`
    (core.energy.REFERENCE_MODEL): with the device class's published time of the same model it
    sets how much slower the emulated drone computes (`compute_slowdown`). `image_bytes` is the
    mean size of a clean validation frame in each image encoding measured (its exit tables
    hold every frame's). `calibration`: the simulator's terms fitted to live runs
    (core.calibration, `edgeml calibrate`), or None.
    """

    model_id: str
    weights_digest: str
    arch: str
    num_classes: int
    machine: dict
    device_class: dict
    threads: int
    server_threads: int
    reference_ms: float
    runs: int
    created: str
    command: str
    input_shape: list[int]
    input_bytes: dict[str, int]
    blocks: list[BlockProfile]
    exits: list[ExitProfile]
    image_bytes: dict[str, float]
    samples: int = 0
    conditions: list[str] = field(default_factory=lambda: ["clean"])
    format: str = PROFILE_FORMAT
    version: int = PROFILE_VERSION
    extra: dict = field(default_factory=dict)
    calibration: dict | None = None

    @property
    def calibrated(self) -> Calibration | None:
        """The calibration record, or None for a profile not calibrated to a live run."""
        return None if self.calibration is None else Calibration.from_dict(self.calibration)

    def compute_slowdown(self, device: DeviceEnergy) -> float:
        """How many times slower than this machine `device` runs models (at least 1)."""
        return device.compute_slowdown(self.reference_ms)

    def times_ms(self, server: bool = False) -> LocalTimes:
        """Median time of each block and exit head (ms), on the drone's or the base's threads."""
        key = "server_latency_ms_median" if server else "latency_ms_median"
        return LocalTimes([getattr(b, key) for b in self.blocks],
                          [getattr(e, key) for e in self.exits],
                          [e.after_block for e in self.exits])  # fmt: skip

    def drone_times(self) -> LocalTimes:
        """The drone's compute times (s, slowdown 1), as the simulator models them.

        Without a calibration, the profiled times. With one, as the live runs measured them:
        `drone_scale` times the profiled times, plus `drone_call_ms` for each compute call.
        """
        cal = self.calibrated
        scale, call_ms = (cal.drone_scale, cal.drone_call_ms) if cal else (1.0, 0.0)
        ms = self.times_ms()
        return LocalTimes([scale * t / 1e3 for t in ms.block_s],
                          [scale * t / 1e3 for t in ms.head_s], ms.exit_after,
                          call_s=call_ms / 1e3)  # fmt: skip

    def drone_times_of(self, bundle: ModelBundle) -> LocalTimes:
        """`drone_times` of `bundle`'s model; ValueError if this is not its profile."""
        if self.weights_digest != bundle.meta.weights_digest:
            raise ValueError(f"the profile is of {self.model_id} weights "
                             f"{self.weights_digest[:23]}..., the checkpoint's are "
                             f"{bundle.meta.weights_digest[:23]}...")  # fmt: skip
        return self.drone_times()

    def save_json(self, path: Path) -> None:
        """Write the JSON profile (the exit tables stay as they are)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    def save(self, path: Path, tables: dict[str, ExitTable]) -> None:
        """Write the JSON profile and the exit tables of every condition (.npz) beside it."""
        self.save_json(path)
        arrays = {}
        for condition, table in tables.items():
            arrays.update({f"{condition}/{k}": v for k, v in table.as_arrays().items()})
        np.savez_compressed(path.with_suffix(".npz"), **arrays)


def load_profile(path: Path | str) -> tuple[Profile, ExitTable]:
    """Load and check a profile and its exit data on clean inputs."""
    profile, tables = load_profile_conditions(path)
    return profile, tables["clean"]


def load_profile_conditions(path: Path | str) -> tuple[Profile, dict[str, ExitTable]]:
    """Load and check a profile and its exit tables, one per input condition."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"profile {path} not found")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not JSON ({exc})") from exc
    if raw.get("format") != PROFILE_FORMAT or raw.get("version") not in LOADABLE_VERSIONS:
        raise ProfileError(
            f"{path}: format {raw.get('format')!r} version {raw.get('version')!r}, expected "
            f"{PROFILE_FORMAT!r} version {PROFILE_VERSION} (or 3, without image encodings)"
        )
    if raw["version"] == 3:
        raw["image_bytes"] = {}  # measured from version 4 on
    try:
        raw["blocks"] = [BlockProfile(**b) for b in raw["blocks"]]
        raw["exits"] = [ExitProfile(**e) for e in raw["exits"]]
        profile = Profile(**raw)
    except (KeyError, TypeError) as exc:
        raise ProfileError(f"{path}: missing or unexpected field ({exc})") from exc
    unknown = sorted(set(profile.image_bytes) - set(IMAGE_ENCODINGS))
    if unknown:
        raise ProfileError(f"{path}: image encodings {unknown} unknown; known: "
                           f"{', '.join(IMAGE_ENCODINGS)}")  # fmt: skip
    try:
        profile.calibrated  # noqa: B018 (checks the record)
    except ValueError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    npz = path.with_suffix(".npz")
    if not npz.is_file():
        raise ProfileError(f"{path}: exit data {npz.name} not found")
    with np.load(npz) as data:
        arrays = dict(data)
    tables = {}
    for condition in profile.conditions:
        prefix = f"{condition}/"
        part = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            tables[condition] = ExitTable.from_arrays(part, profile)
        except ProfileError as exc:
            raise ProfileError(f"{npz} ({condition}): {exc}") from None
    return profile, tables


@dataclass
class ExitTable:
    """Per-sample exit predictions and confidences, with the cost of reaching each exit.

    `cost[e]` is the compute (MACs) of running the model locally until exit e answers: the
    blocks up to it plus every exit head evaluated on the way.
    """

    predictions: np.ndarray  # (exits, samples) int
    confidence: dict[str, np.ndarray]  # rule -> (exits, samples) float
    labels: np.ndarray  # (samples,)
    cost: np.ndarray  # (exits,) MACs
    full_cost: float  # MACs of the whole model with no early exit evaluated
    images: dict[str, ImageExit] = field(default_factory=dict)  # image encoding -> answers

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray], profile: Profile) -> ExitTable:
        """Build from the arrays of a profile's .npz, checking their shapes."""
        labels = _array(data, "labels")
        shape = (len(profile.exits), len(labels))
        preds, conf = _answers(data, "", shape)
        images = {}
        for encoding in profile.image_bytes:
            prefix = f"image/{encoding}/"
            nbytes = _array(data, f"{prefix}payload_bytes", shape[1:])
            images[encoding] = ImageExit(*_answers(data, prefix, shape[1:]), nbytes)
        stray = sorted({k.split("/")[1] for k in data if k.startswith("image/")} - set(images))
        if stray:
            raise ProfileError(f"exit data holds image encodings {stray} the profile lacks")
        return cls(preds, conf, labels, *exit_costs(profile), images)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for the .npz file."""
        out = {"predictions": self.predictions, "labels": self.labels}
        out.update({f"confidence_{r}": c for r, c in self.confidence.items()})
        for encoding, image in self.images.items():
            prefix = f"image/{encoding}/"
            out.update({f"{prefix}predictions": image.predictions,
                        f"{prefix}payload_bytes": image.payload_bytes})  # fmt: skip
            out.update({f"{prefix}confidence_{r}": c for r, c in image.confidence.items()})
        return out

    def exit_taken(
        self, thresholds: np.ndarray | list[float], rule: str = "max_prob"
    ) -> np.ndarray:
        """Index of the exit each sample takes when everything runs locally."""
        conf = self.confidence[rule]
        thr = np.asarray(thresholds, dtype=np.float64)[:-1, None]
        fires = np.vstack([conf[:-1] >= thr, np.ones((1, conf.shape[1]), bool)])
        return np.argmax(fires, axis=0)

    def evaluate(self, thresholds, rule: str = "max_prob") -> tuple[float, float, np.ndarray]:
        """Accuracy, mean compute as a fraction of the full model, and exit rates."""
        taken = self.exit_taken(thresholds, rule)
        samples = np.arange(len(self.labels))
        accuracy = float(np.mean(self.predictions[taken, samples] == self.labels))
        compute = float(np.mean(self.cost[taken])) / self.full_cost
        rates = np.bincount(taken, minlength=len(self.cost)) / len(self.labels)
        return accuracy, compute, rates

    def exit_accuracy(self) -> list[float]:
        """Accuracy of every exit on its own."""
        return [float(np.mean(p == self.labels)) for p in self.predictions]

    def image_accuracy(self, encoding: str) -> float:
        """Accuracy of the final exit on the frames shipped in image encoding `encoding`."""
        return float(np.mean(self.images[encoding].predictions == self.labels))


@dataclass
class ImageExit:
    """The final exit on validation frames shipped in one image encoding, frame by frame.

    Each frame went through the encoding and back as on the wire (core.images.encode_frame,
    decode_frame), so the accuracy at that quality is measured, not assumed.
    """

    predictions: np.ndarray  # (samples,) int
    confidence: dict[str, np.ndarray]  # rule -> (samples,) float
    payload_bytes: np.ndarray  # (samples,) int: each frame's bytes on the wire


def _array(data: dict[str, np.ndarray], name: str, shape: tuple[int, ...] | None = None):
    """The array `name` of a profile's exit data, of `shape` if given (ProfileError if not)."""
    if name not in data:
        raise ProfileError(f"exit data lacks array {name!r}")
    if shape is not None and data[name].shape != shape:
        raise ProfileError(f"exit data {name} has shape {data[name].shape}, expected {shape}")
    return data[name]


def _answers(
    data: dict[str, np.ndarray], prefix: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Predictions and confidences (per rule) under `prefix` in a profile's exit data."""
    confidence = {r: _array(data, f"{prefix}confidence_{r}", shape) for r in EXIT_RULES}
    return _array(data, f"{prefix}predictions", shape), confidence


# Shared thresholds swept from "every early exit fires" (0) to "only the most confident" (1).
THRESHOLD_GRID = np.round(np.arange(0.0, 1.0001, 0.005), 3)


def threshold_sweep(table: ExitTable, rule: str = "max_prob") -> list[tuple[float, float, float]]:
    """(threshold, accuracy, compute fraction) with one threshold for every early exit."""
    out = []
    for t in THRESHOLD_GRID:
        acc, compute, _ = table.evaluate([t] * len(table.cost), rule)
        out.append((float(t), acc, compute))
    return out


def exit_costs(profile: Profile) -> tuple[np.ndarray, float]:
    """MACs to reach each exit locally, and MACs of the plain model.

    Reaching an exit includes every exit head evaluated on the way; the plain model (every
    block and the final exit only) is the baseline of compute fractions.
    """
    block_macs = np.cumsum([b.macs for b in profile.blocks])
    head_macs = np.cumsum([e.macs for e in profile.exits])
    cost = [block_macs[e.after_block] + head_macs[i] for i, e in enumerate(profile.exits)]
    return np.array(cost, dtype=np.float64), float(block_macs[-1] + profile.exits[-1].macs)


def count_macs(model: MultiExitNet, input_shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Multiply-accumulates of each block and each exit head for one input (conv + linear)."""
    counter = [0]

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * \
                module.kernel_size[1]  # fmt: skip
            counter[0] += int(output.numel() * per_output)
        elif isinstance(module, nn.Linear):
            counter[0] += int(output.numel() * module.in_features)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]  # fmt: skip
    blocks, exits = [], []
    try:
        with torch.inference_mode():
            x = torch.zeros(input_shape)
            for i, block in enumerate(model.blocks):
                counter[0] = 0
                x = block(x)
                blocks.append(counter[0])
                e = model.exit_at_block(i)
                if e is not None:
                    counter[0] = 0
                    model.exits[e](x)
                    exits.append(counter[0])
    finally:
        for h in handles:
            h.remove()
    return blocks, exits


def time_call(fn, runs: int, warmup: int = 5) -> tuple[float, float]:
    """Median and p95 wall time of `fn()` in milliseconds over `runs` warm runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times)), float(np.percentile(times, 95))


@torch.inference_mode()
def collect_exit_table(
    model: MultiExitNet, x: torch.Tensor, labels: np.ndarray, batch: int = 500, desc: str = ""
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Predictions and confidences (per rule) of every exit for every sample."""
    preds = np.zeros((model.num_exits, len(x)), np.int64)
    conf = {r: np.zeros((model.num_exits, len(x)), np.float32) for r in EXIT_RULES}
    for start in tqdm(range(0, len(x), batch), desc=desc or "exit confidences", unit="batch"):
        outs = model(x[start : start + batch])
        for e, logits in enumerate(outs):
            probs = torch.softmax(logits.float(), dim=1)
            preds[e, start : start + batch] = probs.argmax(1).numpy()
            conf["max_prob"][e, start : start + batch] = probs.max(1).values.numpy()
            entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)
            conf["entropy"][e, start : start + batch] = (
                1.0 - entropy / np.log(probs.shape[1])
            ).numpy()
    return preds, conf


def reference_ms(runs: int, threads: int) -> float:
    """Median time of the reference model (core.energy.REFERENCE_MODEL) on this machine."""
    from torchvision.models import resnet18

    torch.set_num_threads(threads)
    model = resnet18(weights=None).eval()
    x = torch.zeros(1, 3, 224, 224)
    with torch.inference_mode():
        return time_call(lambda: model(x), runs)[0]


def collect_image_exits(
    bundle: ModelBundle, frames: torch.Tensor, labels: np.ndarray, encodings: Sequence[str],
    desc: str = "",
) -> dict[str, ImageExit]:  # fmt: skip
    """The final exit on `frames` shipped in each image encoding, as the base station gets them.

    `frames` are (N, C, H, W) in [0, 1] at the model's input size. Each becomes the uint8 frame
    the drone sends, goes through the encoding and back, and is preprocessed as the base
    station preprocesses it (core.images: input_frame, encode_frame, decode_frame,
    to_model_input).
    """
    meta = bundle.meta
    size = tuple(meta.input_size)
    sent = [input_frame(f, size) for f in frames.permute(0, 2, 3, 1).numpy()]
    out, answers = {}, {}  # answers by the digest of the inputs they were measured on
    for encoding in encodings:
        wire = [encode_frame(f, encoding) for f in sent]
        x = torch.cat([to_model_input(decode_frame(w, meta.channels), size, meta.norm_mean,
                                      meta.norm_std) for w in wire])  # fmt: skip
        digest = hashlib.sha256(x.numpy().tobytes()).digest()
        if digest not in answers:  # a lossless encoding gives another's inputs bit for bit
            answers[digest] = collect_exit_table(
                bundle.model, x, labels, desc=f"{desc} {encoding}"
            )
        preds, conf = answers[digest]
        nbytes = np.array([len(w.data) for w in wire], np.int64)
        out[encoding] = ImageExit(preds[-1], {r: c[-1] for r, c in conf.items()}, nbytes)
    return out


def time_parts(
    model: MultiExitNet, x: torch.Tensor, runs: int, threads: int, server_threads: int
) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]:
    """Times of every block and exit head on one input `x`: blocks first, then exits.

    Each: the median and p95 ms with `threads` torch threads, the median with `server_threads`.
    """

    def latency(fn) -> tuple[float, float, float]:
        torch.set_num_threads(threads)
        med, p95 = time_call(fn, runs)
        torch.set_num_threads(server_threads)
        return med, p95, time_call(fn, runs)[0]

    blocks, exits = [], []
    with torch.inference_mode():
        for i, block in enumerate(tqdm(model.blocks, desc="block latency", unit="block")):
            blocks.append(latency(lambda b=block, inp=x: b(inp)))
            y = block(x)
            e = model.exit_at_block(i)
            if e is not None:
                exits.append(latency(lambda h=model.exits[e], inp=y: h(inp)))
            x = y
    return blocks, exits


def retime_profile(
    profile: Profile,
    bundle: ModelBundle,
    runs: int = 50,
    threads: int = 1,
    server_threads: int = 2,
    command: str = "",
) -> Profile:
    """The profile with its times measured again on this machine, the rest kept.

    Exit tables, bytes and MACs do not depend on the machine; latencies and the reference
    model's time do. For profiling on the drone's own computer, where computing the exit
    tables would take long, and for timing again on a quiet machine.
    """
    if bundle.meta.weights_digest != profile.weights_digest:
        raise ProfileError(
            f"the checkpoint ({bundle.meta.model_id}) is not the profile's model "
            f"({profile.model_id}): other weights"
        )
    x = torch.zeros(profile.input_shape)
    block_times, exit_times = time_parts(bundle.model, x, runs, threads, server_threads)
    retimed = copy.deepcopy(profile)
    for part, times in zip([*retimed.blocks, *retimed.exits], [*block_times, *exit_times],
                           strict=True):  # fmt: skip
        part.latency_ms_median, part.latency_ms_p95, part.server_latency_ms_median = times
    retimed.threads, retimed.server_threads, retimed.runs = threads, server_threads, runs
    retimed.reference_ms = reference_ms(runs, threads)
    retimed.machine = machine()
    retimed.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    retimed.command = f"{profile.command} (times: {command})"
    return retimed


def machine() -> dict:
    """What a profile records of the machine it was measured on."""
    return {"node": platform.node(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "python": platform.python_version()}  # fmt: skip


def profile_model(
    bundle: ModelBundle,
    frames: dict[str, torch.Tensor],
    labels: np.ndarray,
    device: DeviceEnergy,
    runs: int = 50,
    threads: int = 1,
    server_threads: int = 2,
    command: str = "",
    image_encodings: Sequence[str] = IMAGE_ENCODINGS,
) -> tuple[Profile, dict[str, ExitTable]]:
    """Profile a model on this machine.

    Measures per-block and per-exit latency (single frame, with the drone's `threads` torch
    threads and the base station's `server_threads`; the perception node computes on one, the
    offload node on two), the reference model's time, bytes per encoding at every cut, MACs,
    and an exit table over each condition's frames (clean first), all labelled `labels`,
    with the final exit's answers on the frames shipped in each of `image_encodings`.
    `frames` are each condition's (N, C, H, W) images in [0, 1] at the model's input size
    (core.train.split_frames); the model sees them normalised as in training.
    """
    model, meta = bundle.model, bundle.meta
    x_val = normalize(frames["clean"][:1], meta.norm_mean, meta.norm_std)
    input_shape = tuple(x_val.shape)
    block_macs, exit_macs = count_macs(model, input_shape)

    def wire_bytes(t: torch.Tensor) -> dict[str, int]:
        return {enc: len(encode_tensor(t.numpy(), enc).data) for enc in ENCODINGS}

    with torch.inference_mode():
        input_bytes = wire_bytes(x_val)
        outputs = []
        x = x_val.clone()
        for block in model.blocks:
            x = block(x)
            outputs.append(x)
    block_times, exit_times = time_parts(model, x_val, runs, threads, server_threads)
    blocks = [BlockProfile(i, *block_times[i], block_macs[i], list(y.shape), wire_bytes(y))
              for i, y in enumerate(outputs)]  # fmt: skip
    exits = [ExitProfile(e, model.exit_after[e], *exit_times[e], exit_macs[e])
             for e in range(model.num_exits)]  # fmt: skip
    images = {
        condition: collect_image_exits(bundle, x, labels, image_encodings, f"image ({condition})")
        for condition, x in frames.items()
    }
    profile = Profile(
        model_id=meta.model_id,
        weights_digest=meta.weights_digest,
        arch=meta.arch,
        num_classes=model.num_classes,
        machine=machine(),
        device_class=device.as_dict(),
        threads=threads,
        server_threads=server_threads,
        reference_ms=reference_ms(runs, threads),
        runs=runs,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command=command,
        input_shape=list(input_shape),
        input_bytes=input_bytes,
        blocks=blocks,
        exits=exits,
        image_bytes={enc: float(np.mean(image.payload_bytes))
                     for enc, image in images["clean"].items()},
        samples=len(labels),
        conditions=list(frames),
    )  # fmt: skip
    tables = {
        condition: exit_table_of(bundle, profile, x, labels, images[condition], condition)
        for condition, x in frames.items()
    }
    return profile, tables


def exit_table_of(
    bundle: ModelBundle,
    profile: Profile,
    frames: torch.Tensor,
    labels: np.ndarray,
    images: dict[str, ImageExit],
    desc: str = "",
) -> ExitTable:
    """The exit table of `frames` ((N, C, H, W) in [0, 1] at the model's input size)."""
    meta = bundle.meta
    x = normalize(frames, meta.norm_mean, meta.norm_std)
    preds, conf = collect_exit_table(bundle.model, x, labels, desc=f"exit confidences ({desc})")
    return ExitTable(preds, conf, np.asarray(labels), *exit_costs(profile), images)
