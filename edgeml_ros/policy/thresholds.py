"""The one exit threshold a policy shares across the early exits, chosen on validation data.

BranchyNet's threshold and the live controller's safe plan both use `pick_threshold`; `edgeml
bench models` reports the model at it. The threshold loop (`policy.baselines.ThresholdLoop`)
keeps the drift requirement below instead: its agreement budget is `window_agreement_budget`,
and it starts at `pick_agreeing_threshold` for that budget.
"""

from __future__ import annotations

import math

import numpy as np

from edgeml_ros.core.profiles import THRESHOLD_GRID, ExitTable, threshold_sweep

MAX_ACCURACY_LOSS = 0.01
# The drift requirement (issue 19): accuracy within DRIFT_TOLERANCE of the whole model's on the
# same frames in all but DRIFT_MISS_SHARE of the DRIFT_WINDOW_S windows of a run.
DRIFT_WINDOW_S = 10.0
DRIFT_TOLERANCE = 0.01
DRIFT_MISS_SHARE = 0.05


def pick_threshold(table: ExitTable, max_loss: float = MAX_ACCURACY_LOSS) -> float:
    """The threshold of least compute whose accuracy is within `max_loss` of the final exit."""
    target = table.exit_accuracy()[-1] - max_loss
    ok = [(compute, t) for t, acc, compute in threshold_sweep(table) if acc >= target]
    return min(ok)[1] if ok else 1.0


def window_agreement_budget(
    fps: float,
    window_s: float = DRIFT_WINDOW_S,
    tolerance: float = DRIFT_TOLERANCE,
    miss_share: float = DRIFT_MISS_SHARE,
) -> float:
    """The share of frames that must agree with the final exit to keep the drift requirement.

    A window of n = fps * window_s frames may hold floor(tolerance * n) frames answered
    otherwise than the final exit would have. If such disagreements come independently at a
    rate p per frame, a window holds about Poisson(p n) of them; the budget is 1 - p for the
    largest p at which more than that many come in at most `miss_share` of the windows (99.64 %
    at 10 frames/s). It errs on the safe side: an early exit that disagrees is sometimes the
    right one.
    """
    frames = max(1, round(fps * window_s))
    allowed = math.floor(tolerance * frames + 1e-9)

    def too_many(rate: float) -> float:  # P(Poisson(rate) > allowed)
        return 1.0 - sum(math.exp(-rate) * rate**k / math.factorial(k) for k in range(allowed + 1))

    low, high = 0.0, float(frames)
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if too_many(mid) <= miss_share else (low, mid)
    return 1.0 - low / frames


def pick_agreeing_threshold(table: ExitTable, budget: float) -> float:
    """The threshold of least compute whose answers agree with the final exit's on `budget`."""
    samples = np.arange(len(table.labels))
    final = table.predictions[-1]
    ok = []
    for t in THRESHOLD_GRID:
        taken = table.exit_taken([float(t)] * len(table.cost))
        if np.mean(table.predictions[taken, samples] == final) >= budget:
            ok.append((float(np.mean(table.cost[taken])), float(t)))
    return min(ok)[1] if ok else 1.0
