import itertools

import pytest

from edgeml_ros.core.offload_window import (
    IN_FLIGHT_HORIZON_S,
    LEAD_CEILING,
    LEAD_MAX,
    LEAD_PROBE,
    LEAD_REGROWTH,
    OffloadWindow,
)

TENSOR = 4096


def frames(window: OffloadWindow, start: float, interval: float, count: int) -> float:
    for i in range(count):
        window.frame_arrived(start + i * interval)
    return start + (count - 1) * interval


def test_an_idle_link_always_takes_an_offload():
    window = OffloadWindow(max_in_flight=2)
    assert window.full(0.0) == (None, 0)
    assert window.drain_s(0.0) == 0.0 and window.delivery_rate_bps is None


def test_queued_replies_measure_the_link_and_pace_the_next_offload():
    # a 40 kbit/s link (5000 B/s): a 4 KB tensor takes 0.82 s; frames come every 0.1 s
    window = OffloadWindow(max_in_flight=2)
    now = frames(window, 10.0, 0.1, 5)
    window.sent(1, now, TENSOR)
    window.sent(2, now, TENSOR)  # queued behind the first
    first_reply = now + TENSOR / 5000 + 0.02
    assert window.answered(1, first_reply, tail_s=0.005) == 0
    # the second reply came one tensor's time on the link after the first: the link's rate
    second_reply = first_reply + TENSOR / 5000
    assert window.answered(2, second_reply, tail_s=0.0) == 0
    assert window.delivery_rate_bps == pytest.approx(5000, rel=1e-6)
    # one offload on the link: another waits until the link would idle before the next frame
    sent = second_reply + 0.05
    window.sent(3, sent, TENSOR)
    why, lost = window.full(sent + 0.1)
    assert lost == 0 and why.startswith("the link is busy for another")
    assert window.drain_s(sent + 0.1) == pytest.approx(TENSOR / 5000 - 0.1)
    assert window.full(sent + TENSOR / 5000 - 0.09) == (None, 0)  # 90 ms: within an interval


def test_a_fast_link_is_never_paced():
    window = OffloadWindow(max_in_flight=2)
    now = frames(window, 0.0, 0.1, 3)
    window.sent(1, now, TENSOR)
    window.answered(1, now + 0.022, tail_s=0.001)  # RTT-bound: the rate is underestimated
    window.sent(2, now + 0.1, TENSOR)
    assert window.full(now + 0.1) == (None, 0)


def test_a_loss_halves_the_pace_until_new_offloads_measure_it():
    window = OffloadWindow(max_in_flight=2)
    window.sent(1, 0.0, TENSOR)
    window.sent(2, 0.0, TENSOR)
    assert window.full(0.01)[0] == "2 offloads already in flight"
    window.answered(1, 0.1, 0.0)
    assert window.delivery_rate_bps == pytest.approx(TENSOR / 0.1)
    window.sent(3, 0.2, TENSOR)
    window.sent(4, 0.25, TENSOR)
    assert window.answered(4, 1.0, 0.0) == 2  # the two before it never arrived
    # offloads sent before the loss met the old rate on part of their way: half the old pace
    assert window.delivery_rate_bps == pytest.approx(TENSOR / 0.1 / 2)
    # the window keeps its size, at half the pace (0.2 s a tensor) and half the lead (the
    # queue overflowed): with frames every 0.1 s, another goes with 50 ms of work left
    assert window.lead == pytest.approx(LEAD_MAX / 2)
    frames(window, 0.5, 0.1, 5)
    window.sent(5, 1.1, TENSOR)
    assert window.full(1.15)[0] == "the link is busy for another 150 ms"
    assert window.full(1.26) == (None, 0)
    window.answered(5, 2.0, 0.0)
    assert window.delivery_rate_bps == pytest.approx(TENSOR / 0.9)
    # each answered offload gives back part of the lead
    assert window.lead == pytest.approx(LEAD_MAX / 2 + LEAD_REGROWTH)


def answer_alone(window: OffloadWindow, seq: int, at: float, link_s: float) -> float:
    """An offload sent at `at`, alone on the link, answered `link_s` later; the reply's time."""
    window.sent(seq, at, TENSOR)
    window.answered(seq, at + link_s, 0.0)
    return at + link_s


def test_after_a_loss_the_lead_grows_back_fast_only_to_most_of_where_it_was():
    window = OffloadWindow(max_in_flight=2)
    now = answer_alone(window, 1, 0.0, 0.8)
    window.sent(2, now, TENSOR)
    window.sent(3, now + 0.1, TENSOR)
    now = answer_alone(window, 4, now + 0.2, 0.8)  # 2 and 3 were lost: the lead halves
    assert window.lead == pytest.approx(LEAD_MAX / 2)
    leads = []
    for seq in range(5, 15):
        now = answer_alone(window, seq, now, 0.8)
        leads.append(window.lead)
    fast = [lead for lead in leads if lead <= LEAD_CEILING * LEAD_MAX + 1e-9]
    assert len(fast) == 3  # 0.5 -> 0.8 in tenths
    assert fast == pytest.approx([LEAD_MAX / 2 + LEAD_REGROWTH * i for i in (1, 2, 3)])
    slow = leads[len(fast) - 1 :]
    assert all(b - a == pytest.approx(LEAD_PROBE) for a, b in itertools.pairwise(slow))
    # a link twice as fast as at the loss is another link: the lead grows back fast again
    lead = window.lead
    now = answer_alone(window, 15, now, 0.8)
    now = answer_alone(window, 16, now, 0.3)
    assert window.lead == pytest.approx(lead + LEAD_PROBE + LEAD_REGROWTH)


def test_an_offload_lost_for_good_leaves_the_window_after_the_horizon():
    window = OffloadWindow(max_in_flight=1)
    window.sent(1, 0.0, TENSOR)
    assert window.full(IN_FLIGHT_HORIZON_S)[0] is not None
    assert window.full(IN_FLIGHT_HORIZON_S + 0.01) == (None, 1)


def test_frame_interval_is_a_running_mean_of_the_gaps():
    window = OffloadWindow()
    frames(window, 0.0, 0.1, 20)
    assert window.frame_interval_s == pytest.approx(0.1)
    window.frame_arrived(1.9)  # the same instant again: no gap to learn from
    assert window.frame_interval_s == pytest.approx(0.1)


def test_max_in_flight_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        OffloadWindow(max_in_flight=0)
