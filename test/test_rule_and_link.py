import pytest

from edgeml_ros.core.link import LinkEstimator
from edgeml_ros.policy.rule import Conditions, RulePolicy

RULE = RulePolicy(num_blocks=4, exit_thresholds=(0.9, 0.9, 0.0), offload_cut=2)


def test_good_link_offloads():
    choice = RULE.decide(Conditions(bandwidth_mbps=20.0, rtt_ms=5.0, battery_soc=0.9))
    assert choice.cut_point == 2 and choice.exit_thresholds == (0.9, 0.9, 0.0)


@pytest.mark.parametrize(
    "conditions,why",
    [
        (Conditions(bandwidth_mbps=0.1, rtt_ms=5.0), "too slow"),
        (Conditions(bandwidth_mbps=50.0, rtt_ms=500.0), "RTT"),
    ],
)
def test_weak_link_stays_local(conditions, why):
    choice = RULE.decide(conditions)
    assert choice.cut_point == 4 and why in choice.reason


def test_unknown_link():
    assert RULE.decide(Conditions()).cut_point == 2
    cautious = RulePolicy(4, (0.9, 0.9, 0.0), 2, offload_when_unknown=False)
    assert cautious.decide(Conditions()).cut_point == 4


def test_low_battery_exits_earlier():
    choice = RULE.decide(Conditions(bandwidth_mbps=20.0, rtt_ms=5.0, battery_soc=0.1))
    assert choice.exit_thresholds == pytest.approx((0.72, 0.72, 0.0))
    assert "battery" in choice.reason


def test_bad_offload_cut():
    with pytest.raises(ValueError, match="offload_cut 5"):
        RulePolicy(4, (0.9,), 5)


def test_link_estimator():
    est = LinkEstimator(window=4)
    assert est.estimate() is None
    est.add_transfer(1000, 2.0)  # the smallest round trip: the RTT
    est.add_transfer(126_000, 3.0)  # 1 MBit in 1 ms beyond the RTT
    e = est.estimate()
    assert e.rtt_ms == 2.0 and e.loss_ratio == 0.0 and e.samples == 2
    assert e.bandwidth_mbps == pytest.approx(8 * 127_000 / 1.05e-3 / 1e6)
    est.add_loss()
    est.add_loss()
    assert est.estimate().loss_ratio == 0.5
    est.add_loss()
    est.add_loss()
    assert est.estimate().bandwidth_mbps == 0.0 and est.estimate().loss_ratio == 1.0
