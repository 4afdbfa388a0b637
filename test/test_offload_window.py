import pytest

from edgeml_ros.core.offload_window import (
    IN_FLIGHT_HORIZON_S,
    QUEUE_REGROWTH,
    REPLY_SLACK_S,
    SLOWER_LINK,
    OffloadWindow,
)

TENSOR = 4096


def frames(window: OffloadWindow, start: float, interval: float, count: int) -> float:
    for i in range(count):
        window.frame_arrived(start + i * interval)
    return start + (count - 1) * interval


def test_an_idle_link_always_takes_an_offload():
    window = OffloadWindow(max_in_flight=2)
    assert window.full(0.0) == (None, 0) and window.delivery_rate_bps is None


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
    drain_ms = 1000 * (TENSOR / 5000 - 0.1)  # the link's work left on 3
    assert lost == 0 and why == f"the link is busy for another {drain_ms:.0f} ms"
    assert window.full(sent + TENSOR / 5000 - 0.09) == (None, 0)  # 90 ms: within an interval


def test_a_fast_link_is_never_paced():
    window = OffloadWindow(max_in_flight=2)
    now = frames(window, 0.0, 0.1, 3)
    window.sent(1, now, TENSOR)
    window.answered(1, now + 0.022, tail_s=0.001)  # RTT-bound: the rate is underestimated
    window.sent(2, now + 0.1, TENSOR)
    assert window.full(now + 0.1) == (None, 0)


def test_a_late_reply_slows_the_pace_until_new_offloads_measure_it():
    window = OffloadWindow(max_in_flight=2)
    window.sent(1, 0.0, TENSOR)
    window.sent(2, 0.0, TENSOR)
    assert window.full(0.01)[0] == "2 offloads already in flight"
    window.answered(1, 0.1, 0.0)
    assert window.delivery_rate_bps == pytest.approx(TENSOR / 0.1)
    window.sent(3, 0.2, TENSOR)
    window.sent(4, 0.25, TENSOR)
    # the two before it never arrived, and the reply came 0.9 s after the last, not 0.3 s:
    # the link is slower. Offloads sent before the loss met the old rate on part of their way,
    # so the pace is what this reply shows (at most three tensors in 0.9 s) or half the old
    assert window.answered(4, 1.0, 0.0) == 2
    assert window.delivery_rate_bps == pytest.approx(3 * TENSOR / 0.9)
    # 3 went when the window thought 2 was done: the queue may not have held 3 with the rest
    assert window.queue_bytes == pytest.approx(TENSOR)
    # the link takes 0.3 s a tensor at that pace, and the next offload waits for 5's reply
    assert TENSOR / window.delivery_rate_bps == pytest.approx(0.3)
    window.sent(5, 1.1, TENSOR)
    assert window.full(1.45)[0] == f"the link's queue holds about {TENSOR} B"
    window.answered(5, 2.0, 0.0)
    assert window.full(2.0) == (None, 0)
    assert window.delivery_rate_bps == pytest.approx(TENSOR / 0.9)


def paced_at_40_kbits() -> tuple[OffloadWindow, float]:
    """A window that measured a 40 kbit/s link (5000 B/s), and its last reply's time."""
    window = OffloadWindow(max_in_flight=2)
    now = frames(window, 10.0, 0.1, 5)
    window.sent(1, now, TENSOR)
    window.sent(2, now, TENSOR)
    window.answered(1, now + TENSOR / 5000, 0.0)
    now += 2 * TENSOR / 5000
    window.answered(2, now, 0.0)
    assert window.delivery_rate_bps == pytest.approx(5000)
    return window, now


def test_a_loss_revealed_in_time_keeps_the_pace():
    # a 40 kbit/s link whose queue another node's packet filled for a moment
    window, now = paced_at_40_kbits()
    window.sent(3, now, TENSOR)  # its last packet did not fit in the queue
    window.sent(4, now + 0.7, TENSOR)
    # 4's reply comes when the link was done with the part of 3 it carried, and with 4
    now += 0.6 * TENSOR / 5000 + TENSOR / 5000
    assert window.answered(4, now, 0.0) == 1
    # the link is as fast as before: the pace stays; 3 went onto an idle link, so its loss
    # says nothing of the queue
    assert window.delivery_rate_bps == pytest.approx(5000)
    assert window.queue_bytes == float("inf")
    window.sent(5, now, TENSOR)
    assert window.full(now + TENSOR / 5000 - 0.09) == (None, 0)


def answer_alone(window: OffloadWindow, seq: int, at: float, link_s: float) -> float:
    """An offload sent at `at`, alone on the link, answered `link_s` later; the reply's time."""
    window.sent(seq, at, TENSOR)
    window.answered(seq, at + link_s, 0.0)
    return at + link_s


def test_an_offload_that_did_not_fit_teaches_the_queue_size():
    # a 40 kbit/s link whose queue holds little more than a tensor
    window, now = paced_at_40_kbits()
    window.sent(3, now, TENSOR)
    window.sent(4, now + TENSOR / 5000 - 0.06, TENSOR)  # 300 B of 3 still ahead: it overflowed
    now += TENSOR / 5000 + 0.02
    window.answered(3, now, 0.0)
    window.sent(5, now + 0.05, TENSOR)
    # 5's reply comes in time (4 had taken part of the link before its last packet was dropped)
    now += 0.05 + 1.5 * TENSOR / 5000
    assert window.answered(5, now, 0.0) == 1
    assert window.queue_bytes == pytest.approx(300 + TENSOR)
    # the queue holds one tensor: the next offload waits for the reply to the one ahead, not
    # for when the delivery rate says the link is done with it
    window.sent(6, now, TENSOR)
    done = now + TENSOR / window.delivery_rate_bps  # 6 alone on the link from now
    why, _ = window.full(done + 0.03)
    assert why == f"the link's queue holds about {300 + TENSOR} B"
    # each answered offload lets the learnt size grow back a little
    window.answered(6, done + 0.05, 0.0)
    assert window.full(done + 0.05) == (None, 0)
    assert window.queue_bytes == pytest.approx((300 + TENSOR) * QUEUE_REGROWTH)
    # a link twice as fast as when the size was learnt is another link: the size is forgotten
    answer_alone(window, 7, done + 0.1, TENSOR / 10000)
    assert window.queue_bytes == float("inf")


def test_an_offload_lost_for_good_leaves_the_window_after_the_horizon():
    window = OffloadWindow(max_in_flight=1)
    window.sent(1, 0.0, TENSOR)
    assert window.full(IN_FLIGHT_HORIZON_S)[0] is not None
    assert window.full(IN_FLIGHT_HORIZON_S + 0.01) == (None, 1)
    # at any faster rate its reply would have come within the horizon
    assert window.delivery_rate_bps == pytest.approx(TENSOR / IN_FLIGHT_HORIZON_S)


def test_offloads_lost_without_a_reply_count_as_lost_once_overdue():
    # the link's queue was flushed with both offloads in it (its rate changed): no reply comes
    window, now = paced_at_40_kbits()
    window.sent(3, now, TENSOR)
    window.sent(4, now + 0.72, TENSOR)
    # 3's reply is overdue once later than a late one (1.5x its 0.82 s) and the slack
    overdue = now + SLOWER_LINK * TENSOR / 5000 + REPLY_SLACK_S
    assert window.full(overdue - 0.01)[1] == 0
    assert window.full(overdue + 0.01)[1] == 1
    # the link got slower or lost it: half the pace, as a late reply would have set it
    assert window.delivery_rate_bps == pytest.approx(2500)
    # 4 was on the link with 3: its loss (here past the horizon) does not halve the pace again,
    # and as it went with 3 still ahead, the queue may not have held both
    assert window.full(now + 0.72 + IN_FLIGHT_HORIZON_S + 0.01)[1] == 1
    assert window.delivery_rate_bps == pytest.approx(2500)
    assert window.queue_bytes == pytest.approx(2 * TENSOR - 0.72 * 5000)
    # a reply that comes after all finds nothing in flight
    assert window.answered(3, now + 3.0, 0.0) == 0


def test_frame_interval_is_a_running_mean_of_the_gaps():
    window = OffloadWindow()
    frames(window, 0.0, 0.1, 20)
    assert window.frame_interval_s == pytest.approx(0.1)
    window.frame_arrived(1.9)  # the same instant again: no gap to learn from
    assert window.frame_interval_s == pytest.approx(0.1)


def test_max_in_flight_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        OffloadWindow(max_in_flight=0)


def test_recent_replies_tell_how_long_an_offload_waits_for_its_reply():
    window = OffloadWindow(max_in_flight=2)
    assert window.reply_delay_s is None
    for seq, took in enumerate((0.03, 0.05, 0.04)):
        window.sent(seq, seq * 1.0, TENSOR)
        window.answered(seq, seq * 1.0 + took, tail_s=0.01)
    assert window.reply_delay_s == pytest.approx(0.04)  # the median
    window.answered(7, 2.5, tail_s=0.01)  # no such offload in flight: nothing learnt
    assert window.reply_delay_s == pytest.approx(0.04)
    # forgotten after RATE_MEMORY_S without a reply
    window.sent(3, 10.0, TENSOR)
    window.answered(3, 10.2, tail_s=0.01)
    assert window.reply_delay_s == pytest.approx(0.2)


def test_a_copy_moves_apart_from_its_original():
    window = OffloadWindow(max_in_flight=2)
    now = frames(window, 0.0, 0.1, 3)
    window.sent(1, now, TENSOR)
    window.sent(2, now, TENSOR)
    twin = window.copy()
    twin.answered(1, now + 0.9, tail_s=0.0)
    twin.answered(2, now + 1.7, tail_s=0.0)
    twin.frame_arrived(now + 2.0)
    assert 1 in window and 2 in window and window.delivery_rate_bps is None
    assert window.frame_interval_s == pytest.approx(0.1)
    assert 1 not in twin and twin.delivery_rate_bps == pytest.approx(TENSOR / 0.8)
