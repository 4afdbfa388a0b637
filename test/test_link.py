import pytest

from edgeml_ros.core.link import LinkEstimator, ProbeTracker


def test_link_estimator():
    est = LinkEstimator(window=4)
    assert est.estimate() is None
    est.add_transfer(100, 2.0)  # the smallest round trip: the RTT (too small for goodput)
    est.add_transfer(125_000, 3.0)  # 1 Mbit in 1 ms beyond the RTT: 1000 Mbit/s
    e = est.estimate()
    assert e.rtt_ms == 2.0 and e.loss_ratio == 0.0 and e.samples == 2
    assert e.bandwidth_mbps == pytest.approx(1000.0)
    est.add_loss()
    est.add_loss()
    assert est.estimate().loss_ratio == 0.5
    est.add_loss()
    est.add_loss()
    assert est.estimate().bandwidth_mbps == 0.0 and est.estimate().loss_ratio == 1.0


def test_probes_measure_rtt_and_goodput_and_count_losses():
    est = LinkEstimator(window=10)
    probes = ProbeTracker(est, payload_bytes=1000, timeout_s=1.0)
    seq, padding = probes.next_probe(now=0.0)
    assert padding == 0 and probes.on_echo(seq, now=0.010) == pytest.approx(10.0)
    seq, padding = probes.next_probe(now=1.0)
    assert padding == 1000
    probes.on_echo(seq, now=1.018)  # 8 kbit in 8 ms beyond the 10 ms RTT: 1 Mbit/s
    e = est.estimate()
    assert e.rtt_ms == pytest.approx(10.0) and e.bandwidth_mbps == pytest.approx(1.0, rel=0.02)
    assert probes.on_echo(seq, now=1.02) is None  # a duplicate echo is ignored
    probes.next_probe(now=2.0)
    assert probes.expire(now=2.5) == 0 and probes.expire(now=3.1) == 1
    assert est.estimate().loss_ratio == pytest.approx(1 / 3)


def test_probes_stay_within_their_share_of_a_slow_link():
    est = LinkEstimator(window=10)
    probes = ProbeTracker(est, payload_bytes=1000, timeout_s=5.0, budget=0.05)
    est.add_transfer(0, 20.0)
    est.add_transfer(5000, 1020.0)  # 40 kbit in 1 s beyond the RTT: 40 kbit/s
    # 5 % of 40 kbit/s is 250 B/s: a small probe (150 B on the wire) every 0.6 s ...
    seq, padding = probes.next_probe(now=0.0)
    assert padding == 0
    # ... then the padded one (1150 B) 4.6 s after it
    assert probes.next_probe(now=0.5) is None and probes.next_probe(now=4.5) is None
    seq_next, padding = probes.next_probe(now=4.7)
    assert seq_next == seq + 1 and padding == 1000
    with pytest.raises(ValueError, match="budget"):
        ProbeTracker(est, payload_bytes=10, timeout_s=1.0, budget=0.0)
