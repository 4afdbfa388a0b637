"""Measured model profiles, saved as versioned files for the simulator, controller and nodes.

They hold per-block latency and output bytes, MACs, and per-sample exit confidences.

A profile is a JSON file plus an .npz beside it holding, for every validation sample and every
exit, the class predicted and the confidence under each exit rule, for clean inputs and for each
synthetic degradation (core.degrade). With those, the accuracy, exit rates and compute of any
threshold setting follow exactly (`ExitTable`).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgeml_ros.core.calibration import Calibration
from edgeml_ros.core.checkpoint import ModelBundle
from edgeml_ros.core.codec import ENCODINGS, encode_tensor
from edgeml_ros.core.energy import DeviceEnergy
from edgeml_ros.core.models import MultiExitNet
from edgeml_ros.core.plan import EXIT_RULES

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
DEFAULT_PROFILE = PROFILE_DIR / "fashion_mnist_b_vgg.json"
PROFILE_FORMAT = "edgeml_ros.profile"
# 3: the base station's latencies (server_threads), the class count, and the reference model's
# time on this machine (what sets the emulated drone's compute speed, core.energy)
PROFILE_VERSION = 3


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
    sets how much slower the emulated drone computes (`compute_slowdown`). `calibration`: the
    simulator's terms fitted to live runs (core.calibration, `edgeml calibrate`), or None.
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
    if raw.get("format") != PROFILE_FORMAT or raw.get("version") != PROFILE_VERSION:
        raise ProfileError(
            f"{path}: format {raw.get('format')!r} version {raw.get('version')!r}, expected "
            f"{PROFILE_FORMAT!r} version {PROFILE_VERSION}"
        )
    try:
        raw["blocks"] = [BlockProfile(**b) for b in raw["blocks"]]
        raw["exits"] = [ExitProfile(**e) for e in raw["exits"]]
        profile = Profile(**raw)
    except (KeyError, TypeError) as exc:
        raise ProfileError(f"{path}: missing or unexpected field ({exc})") from exc
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

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray], profile: Profile) -> ExitTable:
        """Build from the arrays of a profile's .npz, checking their shapes."""
        n_exits = len(profile.exits)
        try:
            preds, labels = data["predictions"], data["labels"]
            conf = {rule: data[f"confidence_{rule}"] for rule in EXIT_RULES}
        except KeyError as exc:
            raise ProfileError(f"exit data lacks array {exc}") from exc
        for name, arr in [
            ("predictions", preds),
            *((f"confidence_{r}", a) for r, a in conf.items()),
        ]:
            if arr.shape != (n_exits, len(labels)):
                raise ProfileError(f"exit data {name} has shape {arr.shape}, expected "
                                   f"{(n_exits, len(labels))}")  # fmt: skip
        return cls(preds, conf, labels, *exit_costs(profile))

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for the .npz file."""
        out = {"predictions": self.predictions, "labels": self.labels}
        out.update({f"confidence_{r}": c for r, c in self.confidence.items()})
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


def profile_model(
    bundle: ModelBundle,
    inputs: dict[str, torch.Tensor],
    y_val: np.ndarray,
    device: DeviceEnergy,
    runs: int = 50,
    threads: int = 1,
    server_threads: int = 2,
    command: str = "",
) -> tuple[Profile, dict[str, ExitTable]]:
    """Profile a model on this machine.

    Measures per-block and per-exit latency (single frame, with the drone's `threads` torch
    threads and the base station's `server_threads`; the perception node computes on one, the
    offload node on two), the reference model's time, bytes per encoding at every cut, MACs,
    and an exit table over each condition's inputs (clean first), all labelled `y_val`.
    """
    x_val = inputs["clean"]
    model, meta = bundle.model, bundle.meta
    input_shape = (1, *x_val.shape[1:])
    block_macs, exit_macs = count_macs(model, input_shape)

    def wire_bytes(t: torch.Tensor) -> dict[str, int]:
        return {enc: len(encode_tensor(t.numpy(), enc).data) for enc in ENCODINGS}

    def latency(fn) -> tuple[float, float, float]:
        torch.set_num_threads(threads)
        med, p95 = time_call(fn, runs)
        torch.set_num_threads(server_threads)
        return med, p95, time_call(fn, runs)[0]

    blocks, exits = [], []
    x = x_val[:1].clone()
    with torch.inference_mode():
        input_bytes = wire_bytes(x)
        for i, block in enumerate(tqdm(model.blocks, desc="block latency", unit="block")):
            times = latency(lambda b=block, inp=x: b(inp))
            y = block(x)
            blocks.append(BlockProfile(i, *times, block_macs[i], list(y.shape), wire_bytes(y)))
            e = model.exit_at_block(i)
            if e is not None:
                times = latency(lambda h=model.exits[e], inp=y: h(inp))
                exits.append(ExitProfile(e, i, *times, exit_macs[e]))
            x = y
    profile = Profile(
        model_id=meta.model_id,
        weights_digest=meta.weights_digest,
        arch=meta.arch,
        num_classes=model.num_classes,
        machine={"node": platform.node(), "processor": platform.processor() or platform.machine(),
                 "torch": torch.__version__, "python": platform.python_version()},
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
        samples=len(y_val),
        conditions=list(inputs),
    )  # fmt: skip
    tables = {}
    for condition, x in inputs.items():
        preds, conf = collect_exit_table(model, x, y_val, desc=f"exit confidences ({condition})")
        tables[condition] = ExitTable(preds, conf, np.asarray(y_val), *exit_costs(profile))
    return profile, tables
