#!/usr/bin/env python3
"""How a model's time depends on torch's threads while other work keeps the cores busy.

    tools/run_in_env.sh python tools/tail_threads.py [CHECKPOINT] [--runs N] [--json]

Times the whole model (the base station's tail from cut 0) one frame at a time, 20 ms apart as
a camera's requests come, on 1 and 2 torch threads, with 0, 1 and 2 other processes each
keeping a core busy (a Python busy loop at the same niceness): the offload node's `threads`
(docs/system.md, "The base station's torch threads"). Prints the median, p95 and largest ms.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

from edgeml_ros.core.checkpoint import load_checkpoint

DEFAULT = "edgeml_ros/checkpoints/fashion_mnist_b_vgg.pt"


def frame_times_ms(model: torch.nn.Module, frame: torch.Tensor, runs: int) -> np.ndarray:
    """Each run's time (ms), a camera's pause after each."""
    times = []
    with torch.no_grad():
        for _ in range(runs):
            started = time.perf_counter()
            model(frame)
            times.append((time.perf_counter() - started) * 1000.0)
            time.sleep(0.02)
    return np.array(times)


def main() -> int:
    """Time each setting; print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=DEFAULT)
    parser.add_argument("--runs", type=int, default=150, help="frames per setting")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.runs < 10:
        parser.error(f"--runs must be at least 10, got {args.runs}")
    try:
        bundle = load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot load the checkpoint: {exc}")
    model = bundle.model.eval()
    frame = torch.randn(1, *bundle.meta.input_shape)
    rows = []
    for busy in (0, 1, 2):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(0.5)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                frame_times_ms(model, frame, 10)  # warm up at this setting
                ms = frame_times_ms(model, frame, args.runs)
                rows.append({"busy_cores": busy, "threads": threads,
                             "p50_ms": float(np.median(ms)),
                             "p95_ms": float(np.percentile(ms, 95)),
                             "max_ms": float(ms.max())})  # fmt: skip
        finally:
            for hog in hogs:
                hog.kill()
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "runs": args.runs, "rows": rows}))
        return 0
    print(f"{bundle.meta.model_id}, {args.runs} frames each (ms)")
    print("busy cores  threads     p50     p95     max")
    for r in rows:
        print(f"{r['busy_cores']:>10}  {r['threads']:>7}  {r['p50_ms']:6.2f}  {r['p95_ms']:6.2f}"
              f"  {r['max_ms']:6.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
