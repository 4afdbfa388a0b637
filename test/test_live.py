import pytest

from edgeml_ros.policy.live import MAX_WINDOW_RESULTS, LiveController, LiveDecision
from edgeml_ros.policy.registry import named_policies
from edgeml_ros.policy.sim import WHERE_DRONE
from edgeml_ros.policy.world import World


@pytest.fixture(scope="module")
def world():
    return World.load("edgeml_ros/profiles/fashion_mnist_b_vgg.json")


def controller(world, name="rl"):
    return LiveController(world, named_policies(world, [name])[name], window_s=1.0,
                          stale_after_s=3.0, critical_soc=0.1)  # fmt: skip


def test_stale_inputs_give_the_safe_plan(world):
    live = controller(world)
    decision = live.decide(now=10.0)
    assert decision.mode == "stale" and "link estimate" in decision.reason
    assert decision.plan.cut_point == world.costs.num_blocks
    live.on_link(10.0, 20.0, 15.0)
    assert "battery" in live.decide(now=10.5).reason
    live.on_battery(10.5, 0.8)
    assert live.decide(now=11.0).mode == "policy"
    assert live.decide(now=14.0).mode == "stale"  # the link estimate aged past 3 s


def test_a_controller_rebuilt_for_another_policy_keeps_the_readings(world):
    live = controller(world)
    live.on_link(10.0, 20.0, 15.0)
    live.on_battery(10.0, 0.8)
    live.on_result(10.2, 0.01, 0.9, 0, WHERE_DRONE)
    first = live.decide(now=10.5)
    rebuilt = controller(world, "tuned_static")
    assert rebuilt.decide(now=10.6).mode == "stale"  # from no readings
    rebuilt = controller(world, "tuned_static")
    rebuilt.keep_readings(live)
    assert rebuilt.plan == first.plan
    assert rebuilt.observation(10.6) == live.observation(10.6)
    decision = rebuilt.decide(now=10.6)
    assert decision.mode == "policy" and decision.reason.startswith("tuned_static")


def test_critical_battery_answers_at_the_first_exit(world):
    live = controller(world)
    live.on_link(0.0, 20.0, 15.0)
    live.on_battery(0.0, 0.05)
    decision = live.decide(now=0.5)
    assert decision.mode == "battery_critical"
    assert decision.plan.exit_thresholds[0] == 0.0 and decision.plan.cut_point == 5


def test_observation_matches_the_simulator_features(world):
    live = controller(world, "neurosurgeon")
    live.on_link(0.0, 2.0, 20.0)
    live.on_link(1.0, 20.0, 20.0)
    live.on_battery(1.0, 0.5)
    # frames captured at 10 Hz, each dated by its capture, answered in 4 or 36 ms: the frame
    # captured 50 ms ago is not answered yet, so the last second holds 9 of them, and the
    # camera's rate is what their capture stamps show
    for i in range(-1, 9):
        live.on_result(1.05 + i * 0.1, 0.004 if i % 2 else 0.036, 0.9, 0, WHERE_DRONE)
    obs = live.observation(now=2.0)
    assert obs.bandwidth_mbps == 20.0 and obs.battery_soc == 0.5
    assert obs.bandwidth_trend == pytest.approx(1.0, abs=0.01)  # 2 -> 20 Mbit/s
    assert obs.recent_early_exit_rate == 1.0 and obs.fps == pytest.approx(10.0)
    assert obs.recent_latency_ratio == pytest.approx((5 * 0.036 + 4 * 0.004) / 9 / 0.1)
    assert obs.recent_compute_ratio == 0.0  # no compute times given: the drone's speed unread
    for i in range(9):  # the drone's compute at 3 and 5 x its profiled time
        profiled_s = 0.01 if i else 0.006
        live.on_result(1.1 + i * 0.1, 0.036, 0.9, 0, WHERE_DRONE, False, 0.03, profiled_s)
    assert live.observation(now=2.0).recent_compute_ratio == pytest.approx(0.27 / 0.086)
    assert "drone compute 3.14x profiled" in live.decide(now=2.0).reason
    assert live.decide(now=2.0).plan.exit_thresholds[0] > 1.0  # neurosurgeon: no early exits


def test_a_camera_off_the_learned_policys_training_rate_is_named_in_the_reason(world):
    live = controller(world)
    live.on_link(0.0, 20.0, 20.0)
    live.on_battery(0.0, 0.8)
    for i in range(10):
        live.on_result(0.05 + i / 10, 0.004, 0.9, 0, WHERE_DRONE)
    assert "trained at" not in live.decide(now=1.0).reason
    for i in range(30):
        live.on_result(1.5 + i / 30, 0.004, 0.9, 0, WHERE_DRONE)
    reason = live.decide(now=2.5).reason
    assert "the camera runs at 30.0 frames/s, the policy was trained at 10" in reason


def test_audits_reach_the_observation_and_apparate_moves_on_them(world):
    live = controller(world, "apparate")
    live.on_link(0.0, 20.0, 20.0)
    live.on_battery(0.0, 0.8)
    start = live.decide(now=0.0).plan
    assert start.audit_share == world.config.audit_share > 0  # its plans ask for audits
    now = 0.0
    for second in range(1, 21):  # 100 frames a second, 10 audits: all of them agree
        for i in range(100):
            live.on_result(second - 1 + i / 100, 0.004, 0.9, 0, WHERE_DRONE, auditable=True)
        live.on_audits(second - 0.5, 10, 10)
        now = float(second)
        live.on_link(now, 20.0, 20.0)
        live.on_battery(now, 0.8)
        obs = live.observation(now)
        assert (obs.recent_auditable_frames, obs.recent_audits) == (100, 10)
        assert obs.recent_audit_agreement == 1.0
        decision = live.decide(now)
        assert decision.reason.endswith("audits 10 (100% agree)")
        plan = decision.plan
    # 196 agreeing audits (its budget's, the drift requirement's at 10 frames/s) were enough to
    # lower its threshold: more early exits
    assert plan.exit_thresholds[0] < start.exit_thresholds[0]
    # results older than the window and their audits leave the observation
    obs = live.observation(now + 1.5)
    assert (obs.recent_auditable_frames, obs.recent_audits, obs.recent_audit_agreement) == (
        0, 0, 1.0)  # fmt: skip


def test_bad_readings_are_refused(world):
    live = controller(world)
    with pytest.raises(ValueError, match="state of charge"):
        live.on_battery(0.0, float("nan"))
    with pytest.raises(ValueError, match="finite"):
        live.on_link(0.0, float("inf"), 10.0)
    with pytest.raises(ValueError, match="confidence in"):
        live.on_result(0.0, 0.01, float("nan"), 0, 1)
    with pytest.raises(ValueError, match="finite latency"):
        live.on_result(0.0, -0.01, 0.9, 0, 1)


@pytest.mark.parametrize(
    "reading,match",
    [
        (("link", (-1.0, 10.0)), r"bandwidth must be finite and in \[0, 100000\] Mbit/s, got -1"),
        (("link", (1e9, 10.0)), "got 1000000000.0"),
        (("link", (20.0, float("nan"))), r"RTT must be finite and in \[0, 600000\] ms, got nan"),
        (("link", (20.0, -5.0)), "RTT must be finite"),
        (("battery", (1.5,)), "state of charge must be in"),
        (("result", (0.01, 0.9, 7, WHERE_DRONE)), "exit_index 7 outside 0..3"),
        (("result", (0.01, 0.9, -1, WHERE_DRONE)), "exit_index -1 outside"),
        (("result", (0.01, 0.9, 0, 0)), "where 0 is not drone, base or fallback"),
        (("result", (float("inf"), 0.9, 0, WHERE_DRONE)), "finite latency"),
        (
            ("result", (0.01, 0.9, 0, WHERE_DRONE, False, float("nan"), 0.01)),
            "finite compute times >= 0, got nan s compute",
        ),
        (("result", (0.01, 0.9, 0, WHERE_DRONE, False, 0.01, -1.0)), "-1.0 s profiled"),
        (("audits", (3, 4)), r"agreeing must be in \[0, answered\], got 4 of 3"),
        (("audits", (2, -1)), "agreeing must be in"),
    ],
)
def test_impossible_readings_are_refused_counted_and_change_nothing(world, reading, match):
    live = controller(world, "neurosurgeon")
    live.on_link(0.0, 20.0, 15.0)
    live.on_battery(0.0, 0.8)
    live.on_result(0.0, 0.004, 0.9, 0, WHERE_DRONE)
    before = live.observation(now=0.5)
    kind, args = reading
    with pytest.raises(ValueError, match=match):
        getattr(live, f"on_{kind}")(0.4, *args)
    assert live.refused == {kind: 1}
    assert live.observation(now=0.5) == before


def test_results_kept_for_a_window_are_bounded(world):
    live = controller(world)
    for _ in range(MAX_WINDOW_RESULTS + 10):
        live.on_result(1.0, 0.004, 0.9, 0, WHERE_DRONE)
    assert len(live._results) == MAX_WINDOW_RESULTS


def test_the_bandit_runs_live_and_credits_the_plan_in_force(world):
    live = controller(world, "ucb")

    def step(now: float, link: bool = True) -> LiveDecision:
        if link:
            live.on_link(now, 20.0, 15.0)
        live.on_battery(now, 0.8)
        decision = live.decide(now)
        for i in range(10):  # the window's frames, under the plan just published
            live.on_result(now + 0.05 + 0.1 * i, 0.01, 0.9, 0, WHERE_DRONE)
        return decision

    # the first decision credits nothing: its window ran the node's plan; then arm after arm
    assert [step(t).plan.cut_point for t in (0.0, 1.0, 2.0)] == [0, 1, 2]
    stale = step(6.0, link=False)  # the link estimate aged past 3 s: the safe plan
    assert stale.mode == "stale" and stale.plan == live.safe_plan
    # the safe plan is the bandit's last arm (everything on the drone at BranchyNet's
    # threshold): its window is credited to it, so cut 2 is next again, then cut 3
    assert step(7.0).plan.cut_point == 2 and step(8.0).plan.cut_point == 3


def test_the_planner_runs_live_and_reads_a_slow_drone_from_its_results(world):
    """The committed planner, from live readings only: frames answered at the deadline (a drone
    slower than the profile's) move its belief to the slow drones of its table."""
    live = controller(world, "planner")
    planner = live.policy

    def window(now: float, latency_s: float) -> LiveDecision:
        live.on_link(now, 5.0, 20.0)
        live.on_battery(now, 0.8)
        decision = live.decide(now)
        for i in range(10):
            live.on_result(now + 0.05 + 0.1 * i, latency_s, 0.9, 0, WHERE_DRONE)
        return decision

    decisions = [window(float(t), 0.1) for t in range(8)]
    assert all(d.mode == "policy" and d.reason.startswith("planner") for d in decisions)
    slowdowns = planner.table.slowdowns
    expected_slowdown = planner.belief.sum(axis=1) @ slowdowns
    live = controller(world, "planner")
    planner = live.policy
    for t in range(8):
        window(float(t), 0.005)
    assert planner.belief.sum(axis=1) @ slowdowns < expected_slowdown
