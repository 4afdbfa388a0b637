"""The one exit threshold a policy shares across the early exits, chosen on validation data.

BranchyNet's threshold and the live controller's safe plan both use it; `edgeml bench models`
reports the model at it.
"""

from __future__ import annotations

from edgeml_ros.core.profiles import ExitTable, threshold_sweep

MAX_ACCURACY_LOSS = 0.01


def pick_threshold(table: ExitTable, max_loss: float = MAX_ACCURACY_LOSS) -> float:
    """The threshold of least compute whose accuracy is within `max_loss` of the final exit."""
    target = table.exit_accuracy()[-1] - max_loss
    ok = [(compute, t) for t, acc, compute in threshold_sweep(table) if acc >= target]
    return min(ok)[1] if ok else 1.0
