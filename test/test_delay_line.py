import threading
import time
from collections.abc import Callable

import pytest

from edgeml_ros.core.delay_line import DelayLine


def record_into(ran: list) -> Callable[[str], None]:
    def record(label) -> None:
        ran.append((label, time.monotonic()))

    return record


def test_calls_run_after_their_delay_in_due_order():
    ran, errors = [], []
    line = DelayLine(errors.append)
    record = record_into(ran)
    start = time.monotonic()
    line.call_later(0.06, record, "late")
    line.call_later(0.02, record, "early")
    line.call_later(0.02, record, "early, queued second")
    line.drain()
    assert [label for label, _ in ran] == ["early", "early, queued second", "late"]
    assert ran[0][1] - start >= 0.02 and ran[2][1] - start >= 0.06
    assert errors == [] and line.pending() == 0


def test_any_number_of_held_calls_takes_one_thread():
    ran = []
    line = DelayLine(pytest.fail)
    before = threading.active_count()
    for i in range(200):
        line.call_later(0.05, ran.append, i)
    assert threading.active_count() == before + 1 and line.pending() == 200
    line.drain()
    assert ran == list(range(200))


def test_a_failing_call_is_reported_and_the_line_goes_on():
    ran, errors = [], []
    line = DelayLine(errors.append)

    def fail() -> None:
        raise RuntimeError("publisher destroyed")

    line.call_later(0.0, fail)
    line.call_later(0.01, ran.append, "after")
    line.drain()
    assert [str(e) for e in errors] == ["publisher destroyed"] and ran == ["after"]


def test_a_negative_delay_is_refused():
    line = DelayLine(pytest.fail)
    with pytest.raises(ValueError, match="delay_s must not be negative, got -1"):
        line.call_later(-1, print)
    assert line.pending() == 0


def test_a_drained_line_takes_more_calls_on_the_same_thread():
    ran = []
    line = DelayLine(pytest.fail)
    line.call_later(0.0, ran.append, 1)
    line.drain()
    threads = threading.active_count()
    line.call_later(0.01, ran.append, 2)
    line.drain()
    assert ran == [1, 2] and threading.active_count() == threads
