import subprocess
import sys

import numpy as np
import pytest

from edgeml_ros.core.decisions import (
    EXPIRE_PERIOD_S,
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
    at = fallback_time(TIMES, 2, None, arrived, 100.001, deadline)
    assert at == pytest.approx(100.1 - TIMES.finish(2) - FALLBACK_MARGIN_S)
    assert fallback_time(TIMES, 2, None, arrived, 100.09, deadline) == 100.09  # never before


def test_an_offload_waits_as_long_as_its_fallback_keeps_the_deepest_exit_in_time():
    arrived, deadline = 100.0, 0.06  # the drone cannot finish from cut 1 (62 ms) in time
    at = fallback_time(TIMES, 1, None, arrived, 100.001, deadline)
    assert at == pytest.approx(100.06 - TIMES.to_exit(1, 1) - FALLBACK_MARGIN_S)
    # checked up to one period late, that exit is still in the fallback's budget
    late = fallback_budget(arrived, at + EXPIRE_PERIOD_S, deadline)
    assert fallback_exit(TIMES, 1, late, None) == (1, True)
    # no exit after the cut in time: the head's checked exit answers at the last moment ...
    at = fallback_time(TIMES, 1, 0, arrived, 100.04, deadline)
    assert at == pytest.approx(100.06 - FALLBACK_MARGIN_S)
    # ... and without one, waiting would only make the frame later still
    assert fallback_time(TIMES, 1, None, arrived, 100.04, deadline) == 100.04


def test_an_offload_waits_for_a_reply_that_recent_ones_say_comes_in_time_for_an_exit():
    arrived, sent, deadline = 100.0, 100.001, 0.1  # from cut 1: exit 1 22 ms, exit 2 62 ms
    last = 100.1 - FALLBACK_MARGIN_S
    # replies that come before the final exit's moment change nothing
    assert fallback_time(TIMES, 1, None, arrived, sent, deadline, 0.01) == pytest.approx(
        last - TIMES.finish(1)
    )
    # one expected after it: the wait gives up the final exit for the reply, keeping exit 1
    assert fallback_time(TIMES, 1, None, arrived, sent, deadline, 0.04) == pytest.approx(
        last - TIMES.to_exit(1, 1)
    )
    # later still: the head's checked exit (no compute) keeps the reply its time ...
    assert fallback_time(TIMES, 1, 0, arrived, sent, deadline, 0.08) == pytest.approx(last)
    # ... and where no exit can wait for it, the fallback keeps the deepest exit in time
    assert fallback_time(TIMES, 1, 0, arrived, sent, deadline, 0.5) == pytest.approx(
        last - TIMES.finish(1)
    )


def test_a_fallback_answers_at_the_deepest_exit_in_its_budget():
    assert fallback_exit(TIMES, 1, 0.03, None) == (1, True)
    assert fallback_exit(TIMES, 1, 1.0, None) == (2, True)
    # no time for any exit after the cut: the head's deepest checked exit, else the fastest
    assert fallback_exit(TIMES, 1, 0.001, 0) == (0, False)
    assert fallback_exit(TIMES, 1, 0.001, None) == (1, True)
    budget = fallback_budget(100.0, 100.05, 0.1)
    assert budget < 0.05 and fallback_exit(TIMES, 2, budget, None)[0] == 2
