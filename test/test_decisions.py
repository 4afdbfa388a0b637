import subprocess
import sys

import numpy as np
import pytest

from edgeml_ros.core.decisions import (
    FALLBACK_MARGIN_S,
    LocalTimes,
    checked_exits,
    exit_fires,
    fallback_budget,
    fallback_exit,
    fallback_time,
)
from edgeml_ros.core.plan import NO_EARLY_EXIT

# four blocks of 10 ms, exits after blocks 0, 1 and 3 (heads of 1 ms), on a device 2x slower
TIMES = LocalTimes([0.01] * 4, [0.001] * 3, [0, 1, 3], slowdown=2.0)


def test_the_decision_core_needs_neither_ros_nor_torch():
    code = (
        "import sys\nimport edgeml_ros.core.decisions, edgeml_ros.core.offload_window\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'torch')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_local_times_count_the_blocks_from_the_cut_and_the_exit_head():
    assert TIMES.to_exit(1, 1) == pytest.approx(2 * (0.01 + 0.001))
    assert TIMES.finish(1) == pytest.approx(2 * (0.03 + 0.001))
    assert TIMES.finish(4) == pytest.approx(2 * 0.001)  # all blocks ran: the final head only
    assert TIMES.exits_after(1) == [1, 2] and TIMES.exits_after(2) == [2]


def test_only_exits_that_can_fire_are_checked_and_the_final_one_always_answers():
    thresholds = (0.5, NO_EARLY_EXIT, 0.0)
    assert checked_exits([0, 1, 3], 0, 2, thresholds) == [0]
    assert checked_exits([0, 1, 3], 0, 4, thresholds) == [0, 2]
    assert checked_exits([0, 1, 3], 1, 4, thresholds) == [2]
    assert exit_fires(0, 0.5, thresholds) and not exit_fires(0, 0.49, thresholds)
    assert exit_fires(2, 0.0, thresholds)
    np.testing.assert_array_equal(exit_fires(0, np.array([0.2, 0.7]), thresholds), [False, True])


def test_float32_confidences_are_compared_as_the_live_drone_compares_floats():
    confidence = np.float32(0.9)  # 0.89999998, below the threshold 0.9 in float64
    assert (
        exit_fires(0, float(confidence), (0.9, 0.0))
        == exit_fires(0, np.array([confidence]), (0.9, 0.0))[0]
    )


def test_an_offload_falls_back_in_time_to_finish_on_the_drone():
    arrived, deadline = 100.0, 0.1
    at = fallback_time(arrived, 100.001, deadline, TIMES.finish(2))
    assert at == pytest.approx(100.1 - TIMES.finish(2) - FALLBACK_MARGIN_S)
    assert fallback_time(arrived, 100.09, deadline, TIMES.finish(2)) == 100.09  # never before


def test_a_fallback_answers_at_the_deepest_exit_in_its_budget():
    assert fallback_exit(TIMES, 1, 0.03, None) == (1, True)
    assert fallback_exit(TIMES, 1, 1.0, None) == (2, True)
    # no time for any exit after the cut: the head's deepest checked exit, else the fastest
    assert fallback_exit(TIMES, 1, 0.001, 0) == (0, False)
    assert fallback_exit(TIMES, 1, 0.001, None) == (1, True)
    budget = fallback_budget(100.0, 100.05, 0.1)
    assert budget < 0.05 and fallback_exit(TIMES, 2, budget, None)[0] == 2
