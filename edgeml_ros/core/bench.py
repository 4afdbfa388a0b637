"""`edgeml bench models`: benchmarks of the committed multi-exit models on this machine.

Accuracy per exit (clean and degraded inputs), the compute that early exits save, the time of
every block on the emulated drone and on the base station, split latency and bytes on the wire.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgeml_ros.core.checkpoint import CHECKPOINT_DIR, ModelBundle, load_checkpoint
from edgeml_ros.core.codec import ENCODINGS, decode_tensor, encode_tensor
from edgeml_ros.core.degrade import CONDITIONS, SEVERITIES
from edgeml_ros.core.energy import device_class
from edgeml_ros.core.plan import NO_EARLY_EXIT
from edgeml_ros.core.profiles import (
    ExitTable,
    collect_exit_table,
    profile_model,
    threshold_sweep,
    time_call,
)
from edgeml_ros.core.runtime import SplitRunner
from edgeml_ros.core.train import (
    exit_accuracy,
    reopen_dataset,
    split_frames,
    split_tensors,
    to_tensors,
)
from edgeml_ros.policy.thresholds import pick_threshold

# The committed models and the drone computer each is emulated on.
BENCH_MODELS = {
    "drone_resnet18": (CHECKPOINT_DIR / "drone_scenes_resnet18.pt", "raspberry_pi_4"),
    "b_vgg": (CHECKPOINT_DIR / "fashion_mnist_b_vgg.pt", "jetson_nano"),
    "resnet": (CHECKPOINT_DIR / "fashion_mnist_resnet.pt", "jetson_nano"),
    "mobilenet_v2": (CHECKPOINT_DIR / "fashion_mnist_mobilenet_v2.pt", "jetson_nano"),
}


def degraded_exit_accuracy(bundle: ModelBundle, samples: int) -> dict[str, dict[str, list]]:
    """Accuracy of every exit on the first `samples` test images, per degradation and severity."""
    meta = bundle.meta
    size = tuple(meta.input_size)
    test = reopen_dataset(meta).load("test", size)
    test = replace(test, images=test.images[:samples], labels=test.labels[:samples])
    out: dict[str, dict[str, list]] = {}
    for condition in CONDITIONS[1:]:
        for severity in SEVERITIES:
            x, y = to_tensors(test, meta.norm_mean, meta.norm_std, size, meta.channels,
                              condition, severity)  # fmt: skip
            out.setdefault(condition, {})[str(severity)] = exit_accuracy(bundle.model, x, y)
    return out


@torch.inference_mode()
def encoding_accuracy(
    runner: SplitRunner, x: torch.Tensor, y: np.ndarray, cut: int, batch: int = 500
) -> dict[str, dict[str, float]]:
    """Final-exit accuracy when the tensor at `cut` travels in each encoding, and bytes.

    Each frame is encoded on its own, as on the wire. Bytes are the mean per frame,
    uncompressed over every frame and zstd-compressed over the first batch.
    """
    model = runner.model
    correct = dict.fromkeys(ENCODINGS, 0)
    sizes = {enc: [0, 0] for enc in ENCODINGS}
    for start in range(0, len(x), batch):
        feats = x[start : start + batch]
        for block in range(cut):
            feats = model.blocks[block](feats)
        for enc in ENCODINGS:
            decoded = []
            for f in feats.numpy():
                wire = encode_tensor(f[None], enc)
                sizes[enc][0] += len(wire.data)
                if start == 0:
                    sizes[enc][1] += len(encode_tensor(f[None], enc, "zstd").data)
                decoded.append(decode_tensor(wire))
            out = torch.from_numpy(np.concatenate(decoded))
            for block in range(cut, model.num_blocks):
                out = model.blocks[block](out)
            logits = model.exits[-1](out)
            correct[enc] += int((logits.argmax(1).numpy() == y[start : start + batch]).sum())
    first = min(batch, len(x))
    return {
        enc: {
            "accuracy": correct[enc] / len(x),
            "bytes": sizes[enc][0] / len(x),
            "bytes_zstd": sizes[enc][1] / first,
        }
        for enc in ENCODINGS
    }


def bench_model(
    name: str,
    bundle: ModelBundle,
    device: str,
    runs: int = 30,
    threads: int = 2,
    encoding_samples: int = 2000,
) -> dict:
    """Every benchmark of one model, emulated on the drone computer `device`.

    See docs/results.md for what each number means. Accuracy per encoding uses the whole test
    set at the middle cut and the first `encoding_samples` test images at the other cuts, as
    does accuracy on degraded inputs (to keep the run to minutes).
    """
    model, runner = bundle.model, SplitRunner(bundle.model)
    frames_val, y_val = split_frames(bundle.meta, "validation")
    x_test, y_test = split_tensors(bundle.meta, "test")
    drone = device_class(device)
    profile, val_tables = profile_model(bundle, {"clean": frames_val}, y_val, drone, runs,
                                        image_encodings=())  # fmt: skip
    torch.set_num_threads(threads)
    slowdown = profile.compute_slowdown(drone)
    val_table = val_tables["clean"]
    preds, conf = collect_exit_table(model, x_test, y_test, desc=f"{name} test exits")
    test_table = ExitTable(preds, conf, y_test, val_table.cost, val_table.full_cost)
    threshold = pick_threshold(val_table)
    acc_at, compute_at, rates_at = test_table.evaluate([threshold] * model.num_exits)
    never = [NO_EARLY_EXIT] * model.num_exits
    frame = x_test[:1]
    mid = model.num_blocks // 2
    cuts = []
    for cut in tqdm(range(model.num_blocks + 1), desc=f"{name} cuts", unit="cut"):
        head_ms, _ = time_call(lambda c=cut: runner.run_head(frame, c, never), runs)
        entry = {"cut": cut, "head_ms_median": head_ms}
        if cut < model.num_blocks:
            feats = runner.run_head(frame, cut, never).features
            entry["tail_ms_median"], _ = time_call(
                lambda c=cut, f=feats: runner.run_tail(f, c), runs
            )
            n = len(y_test) if cut == mid else encoding_samples
            entry["encoding_samples"] = n
            entry["encodings"] = encoding_accuracy(runner, x_test[:n], y_test[:n], cut)
        cuts.append(entry)
    enc = cuts[mid]["encodings"]
    full_ms, _ = time_call(lambda: runner.run_head(frame, model.num_blocks, never), runs)
    return {
        "model_id": bundle.meta.model_id,
        "weights_digest": bundle.meta.weights_digest,
        "params": sum(p.numel() for p in model.parameters()),
        "macs": val_table.full_cost,
        "exit_accuracy": test_table.exit_accuracy(),
        "exit_accuracy_degraded": degraded_exit_accuracy(bundle, encoding_samples),
        "degraded_samples": min(encoding_samples, len(y_test)),
        "device_class": drone.name,
        "compute_slowdown": slowdown,
        "block_ms": {
            "drone": [b.latency_ms_median * slowdown for b in profile.blocks],
            "base": [b.server_latency_ms_median for b in profile.blocks],
        },
        "exit_ms": {
            "drone": [e.latency_ms_median * slowdown for e in profile.exits],
            "base": [e.server_latency_ms_median for e in profile.exits],
        },
        "exit_after_block": [e.after_block for e in profile.exits],
        "drone_threads": profile.threads,
        "base_threads": profile.server_threads,
        "threshold_at_1pt_loss": threshold,
        "accuracy_at_1pt_loss": acc_at,
        "accuracy_loss_at_threshold_pts": 100 * (test_table.exit_accuracy()[-1] - acc_at),
        "compute_fraction_at_1pt_loss": compute_at,
        "exit_rates_at_1pt_loss": rates_at.tolist(),
        "mid_cut": mid,
        "mid_cut_encodings": enc,
        "int8_mid_cut_accuracy_drop_pts": 100
        * (enc["fp32"]["accuracy"] - enc["int8"]["accuracy"]),
        "int8_mid_cut_bytes_ratio": enc["int8"]["bytes"] / enc["fp32"]["bytes"],
        "cuts": cuts,
        "single_frame_ms_median": full_ms,
        "single_frame_fps": 1000.0 / full_ms,
        "threads": threads,
        "runs": runs,
        "tradeoff_test": [
            {"threshold": t, "accuracy": a, "compute_fraction": c}
            for t, a, c in threshold_sweep(test_table)
        ],
        "exit_compute_fraction": (val_table.cost / val_table.full_cost).tolist(),
    }


def plot_tradeoff(results: dict[str, dict], path: Path) -> None:
    """Accuracy against mean local compute across thresholds, one curve per model (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results.items():
        curve = r["tradeoff_test"]
        line = ax.plot([p["compute_fraction"] for p in curve],
                       [100 * p["accuracy"] for p in curve], label=name)[0]  # fmt: skip
        ax.scatter(r["exit_compute_fraction"], [100 * a for a in r["exit_accuracy"]],
                   color=line.get_color(), marker="o", s=18)  # fmt: skip
        ax.scatter([r["compute_fraction_at_1pt_loss"]], [100 * r["accuracy_at_1pt_loss"]],
                   color=line.get_color(), marker="*", s=140, edgecolor="k")  # fmt: skip
    ax.set_xlabel("mean local compute (fraction of the full model's MACs)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Early exits: accuracy vs compute (dots: single exits, star: <=1 pt loss)")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(names: list[str], runs: int, threads: int, encoding_samples: int) -> dict[str, dict]:
    """Benchmark the named committed models."""
    results = {}
    for name in names:
        checkpoint, device = BENCH_MODELS[name]
        results[name] = bench_model(name, load_checkpoint(checkpoint), device, runs, threads,
                                    encoding_samples)  # fmt: skip
    return results
