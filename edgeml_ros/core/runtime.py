"""Split execution of a multi-exit network: the head runs on the drone, the tail elsewhere.

For any cut point c, `run_head(x, c)` runs blocks [0, c) and checks the exits it passes;
`run_tail(features, c)` runs blocks [c, N) and answers with the final exit. Head followed by
tail computes exactly what the unsplit model computes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from edgeml_ros.core.decisions import checked_exits, exit_fires
from edgeml_ros.core.models import MultiExitNet
from edgeml_ros.core.plan import EXIT_RULES, NO_EARLY_EXIT, shared_thresholds


@dataclass(frozen=True)
class ExitDecision:
    """The answer of one exit: class, confidence score under the exit rule, and which exit."""

    exit_index: int
    class_id: int
    confidence: float


@dataclass
class HeadOutcome:
    """What the head produced: an exit that fired, or the features to offload.

    `deepest_local` is the deepest exit the head evaluated (fired or not), which is what a
    fallback answers with when an offload gets no reply in time.
    """

    fired: ExitDecision | None
    features: torch.Tensor | None
    deepest_local: ExitDecision | None


def exit_score(logits: torch.Tensor, rule: str) -> tuple[int, float]:
    """Predicted class and confidence in [0, 1] of one exit's logits (batch of one)."""
    probs = torch.softmax(logits.reshape(-1).float(), dim=0)
    class_id = int(torch.argmax(probs))
    if rule == "max_prob":
        return class_id, float(probs[class_id])
    if rule == "entropy":
        entropy = float(-(probs * torch.log(probs.clamp_min(1e-12))).sum())
        return class_id, 1.0 - entropy / math.log(probs.numel())
    raise ValueError(f"unknown exit rule {rule!r}; known: {', '.join(EXIT_RULES)}")


def check_device(device: str) -> torch.device:
    """The torch device named `device` ("cpu", "cuda", "cuda:1"), if this machine has it."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device name ({exc})") from None
    if dev.type == "cuda" and (
        not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()
    ):
        raise ValueError(f"device {device!r}: no such CUDA device on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only cpu and cuda are supported")
    return dev


class SplitRunner:
    """Runs a model's head and tail for any cut point, without gradients."""

    def __init__(self, model: MultiExitNet, device: str = "cpu") -> None:
        self.device = check_device(device)
        self.model = model.eval().to(self.device)

    def _decide(self, exit_index: int, features: torch.Tensor, rule: str) -> ExitDecision:
        class_id, confidence = exit_score(self.model.exits[exit_index](features), rule)
        return ExitDecision(exit_index, class_id, confidence)

    def _run_blocks(
        self, x: torch.Tensor, start: int, stop: int, thresholds: Sequence[float], rule: str
    ) -> HeadOutcome:
        """Run blocks [start, stop), checking the exits on the way (core.decisions)."""
        model = self.model
        x = x.to(self.device)
        checked = checked_exits(model.exit_after, start, stop, thresholds)
        deepest = None
        for block in range(start, stop):
            x = model.blocks[block](x)
            exit_index = model.exit_at_block(block)
            if exit_index not in checked:
                continue
            deepest = self._decide(exit_index, x, rule)
            if exit_fires(exit_index, deepest.confidence, thresholds):
                return HeadOutcome(deepest, None, deepest)
        return HeadOutcome(None, x, deepest)

    @torch.inference_mode()
    def run_head(
        self, x: torch.Tensor, cut_point: int, thresholds: Sequence[float], rule: str = "max_prob"
    ) -> HeadOutcome:
        """Run blocks [0, cut_point), stopping at the first confident exit (the drone's part)."""
        return self._run_blocks(x, 0, cut_point, thresholds, rule)

    @torch.inference_mode()
    def run_tail(
        self,
        features: torch.Tensor,
        cut_point: int,
        rule: str = "max_prob",
        thresholds: Sequence[float] | None = None,
    ) -> ExitDecision:
        """Run blocks [cut_point, N) and answer with the final exit.

        With `thresholds`, the remaining exits are checked too and the first confident one
        answers.
        """
        if thresholds is None:
            thresholds = shared_thresholds(NO_EARLY_EXIT, self.model.num_exits)
        return self._run_blocks(features, cut_point, self.model.num_blocks, thresholds, rule).fired

    @torch.inference_mode()
    def run_to_exit(
        self, features: torch.Tensor, cut_point: int, exit_index: int, rule: str = "max_prob"
    ) -> ExitDecision:
        """Run blocks from `cut_point` up to exit `exit_index` and answer with that exit."""
        model = self.model
        stop = model.exit_after[exit_index] + 1
        if stop <= cut_point:
            raise ValueError(f"exit {exit_index} comes before cut point {cut_point}")
        x = features.to(self.device)
        for block in range(cut_point, stop):
            x = model.blocks[block](x)
        return self._decide(exit_index, x, rule)

    @torch.inference_mode()
    def measure(
        self, input_shape: Sequence[int], runs: int = 5
    ) -> tuple[list[float], list[float]]:
        """Median seconds of every block and every exit head for one frame, on this machine."""
        model = self.model
        x = torch.zeros(tuple(input_shape), device=self.device)
        blocks, heads = [], []
        for block in range(model.num_blocks):
            blocks.append(_median_time(lambda b=model.blocks[block], inp=x: b(inp), runs))
            x = model.blocks[block](x)
            exit_index = model.exit_at_block(block)
            if exit_index is not None:
                heads.append(_median_time(lambda h=model.exits[exit_index], f=x: h(f), runs))
        return blocks, heads

    @torch.inference_mode()
    def warm_up(self, input_shape: Sequence[int], runs: int = 3) -> None:
        """Run the whole model a few times before the first real frame.

        torch sets up kernels lazily; without this, the first frames stall.
        """
        x = torch.zeros(tuple(input_shape), device=self.device)
        for _ in range(runs):
            self.model(x)

    @torch.inference_mode()
    def feature_shape(self, input_shape: Sequence[int], cut_point: int) -> tuple[int, ...]:
        """Shape of the tensor at a cut point for a given input shape (batch included)."""
        x = torch.zeros(tuple(input_shape), device=self.device)
        for block in range(cut_point):
            x = self.model.blocks[block](x)
        return tuple(x.shape)


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]
