"""GPU check, on a machine with CUDA: cuda gives the same answers as cpu.

The drone pipeline and the tail server run 200 Fashion-MNIST test frames on each device; it
prints how many frames got the same class and exit, and the median time per frame.

    python tools/gpu_check.py
"""

import json
import time

import numpy as np
import torch

from edgeml_ros.core.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from edgeml_ros.core.data import load_dataset
from edgeml_ros.core.pipeline import DronePipeline, RawImage, TailServer
from edgeml_ros.core.plan import ExecutionPlan


def main() -> None:
    """Run the check and print the JSON result."""
    images = load_dataset("fashion_mnist", "test").images[:200]
    frames = [RawImage("mono8", 28, 28, 28, False, img.tobytes()) for img in images]
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    answers = {}
    for device in ("cpu", "cuda"):
        bundle = load_checkpoint(DEFAULT_CHECKPOINT)
        plan = ExecutionPlan(2, (0.9, 0.9, 0.9, 0.0))
        pipe = DronePipeline(bundle, plan, 1.0, device=device)
        server = TailServer(bundle, device=device)
        got, times = [], []
        for i, frame in enumerate(frames):
            t0 = time.perf_counter()
            outcome = pipe.process(frame, i)
            if not hasattr(outcome, "status"):
                outcome = pipe.on_reply(server.handle(outcome))
            times.append((time.perf_counter() - t0) * 1000)
            got.append((outcome.class_id, outcome.exit_index, round(outcome.confidence, 3)))
        answers[device] = got
        out[f"{device}_frame_ms_p50"] = float(np.median(times[20:]))
    same = sum(a[:2] == b[:2] for a, b in zip(answers["cpu"], answers["cuda"], strict=True))
    out["same_class_and_exit"] = f"{same}/{len(frames)}"
    print(json.dumps(out, indent=1))
    assert same >= len(frames) - 2, "cuda and cpu disagree"


if __name__ == "__main__":
    main()
