"""Calibrating the simulator to live runs: the fit recovers known terms, the record round-trips
through the profile, and a calibrated simulator prices frames with them."""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from calibration_helpers import MBPS, RTT_MS, TRUE, synthetic_run

from edgeml_ros.core.calibration import (
    Calibration,
    LiveFrames,
    RunFileError,
    drone_speed,
    fit_affine,
    fit_calibration,
)
from edgeml_ros.core.plan import NO_EARLY_EXIT, ExecutionPlan
from edgeml_ros.core.profiles import PROFILE_DIR, ProfileError, load_profile
from edgeml_ros.core.traces import Trace
from edgeml_ros.policy.sim import ModelCosts, Scenario, SimConfig, TraceLink
from edgeml_ros.policy.world import World

B_VGG = PROFILE_DIR / "fashion_mnist_b_vgg.json"  # the profile the synthetic runs are of


@pytest.fixture(scope="module")
def profile():
    return load_profile(B_VGG)[0]


def test_an_affine_fit_recovers_scale_and_fixed_time_through_stalls():
    rng = np.random.default_rng(1)
    x = np.repeat([1.0, 2.0, 5.0, 9.0], 50)
    y = 1.4 * x + 0.8 + rng.normal(0, 0.05, len(x))
    y[::37] += 40.0  # stalls of the machine
    fit = fit_affine(x, y)
    assert fit.scale == pytest.approx(1.4, rel=0.02) and fit.fixed_ms == pytest.approx(
        0.8, abs=0.05
    )
    assert fit.frames == len(x) and fit.residual_ms_p50 < 0.1


def test_work_too_alike_fits_a_scale_alone_and_no_work_a_fixed_time():
    one = fit_affine(np.full(20, 2.0), np.full(20, 5.0))
    assert (one.scale, one.fixed_ms) == (pytest.approx(2.5), 0.0)
    alike = fit_affine(np.repeat([2.0, 3.0], 20), np.repeat([4.0, 6.0], 20))
    assert (alike.scale, alike.fixed_ms) == (pytest.approx(2.0), 0.0)
    none = fit_affine(np.zeros(20), np.full(20, 0.3))
    assert (none.scale, none.fixed_ms) == (1.0, pytest.approx(0.3))
    with pytest.raises(ValueError, match="no frames"):
        fit_affine(np.zeros(0), np.zeros(0))


def test_the_fit_recovers_the_terms_a_synthetic_run_was_made_with(profile):
    run = synthetic_run(profile, TRUE)
    cal = fit_calibration([run], profile, TRUE.request_fields_bytes, TRUE.reply_bytes, "cmd")
    for name in ("drone_scale", "drone_call_ms", "server_scale", "server_call_ms",
                 "conversion_ms", "encode_ms", "input_hop_ms", "output_hop_ms",
                 "offload_hop_ms", "drone_plan_scale"):  # fmt: skip
        assert getattr(cal, name) == pytest.approx(getattr(TRUE, name), rel=0.05, abs=0.02), name
    assert cal.compute_slowdown == 4.0 and cal.command == "cmd"
    assert (cal.link_burst_ms, cal.link_burst_min_bytes) == (10.0, 1600)
    # the frame-to-frame spread: the compute's 3 % noise (and the stalls, beyond p95)
    spread = np.array(cal.jitter["drone_compute"])
    assert spread[50] == pytest.approx(1.0, abs=0.01) and 1.02 < spread[95] < 1.1 < spread[100]
    assert cal.jitter["input_hop_ms"][50] == pytest.approx(TRUE.input_hop_ms, rel=0.02)
    source = {"file": "synthetic.mcap", "policy": "mixed", "command": "edgeml bench system",
              "frames": len(run.frames)}  # fmt: skip
    assert cal.runs == (source,)
    # every head that ran a block (not cut 0's), and the fallbacks' tails
    assert cal.residuals["drone_compute"]["frames"] == len(run.frames) - 50 + 30
    assert cal.residuals["offload_hop_ms"]["frames"] == 100


def test_a_runs_drone_speed_is_its_compute_over_the_calibrations(profile):
    run = synthetic_run(profile, TRUE)
    assert drone_speed(profile, run, TRUE) == pytest.approx(1.0, abs=0.01)
    # a run on a machine a quarter slower than the one the calibration came from
    slower = synthetic_run(profile, replace(TRUE, drone_scale=1.25 * TRUE.drone_scale,
                                            drone_call_ms=1.25 * TRUE.drone_call_ms))  # fmt: skip
    assert drone_speed(profile, slower, TRUE) == pytest.approx(1.25, abs=0.02)
    dropped = replace(run, frames=replace(run.frames, status=np.full(len(run.frames), 4.0)))
    assert drone_speed(profile, dropped, TRUE) is None  # no answered frame to compare


def test_runs_without_an_answered_offload_keep_the_base_stations_terms(profile):
    run = synthetic_run(profile, TRUE)
    f = run.frames
    status = np.where(f.where == 2, 4.0, f.status)  # every answered offload dropped instead
    run = replace(run, frames=replace(f, status=status))
    before = replace(TRUE, server_scale=7.0, server_call_ms=0.5, offload_hop_ms=9.0,
                     command="edgeml calibrate before.json")  # fmt: skip
    cal = fit_calibration([run], profile, TRUE.request_fields_bytes, TRUE.reply_bytes, "cmd",
                          before)  # fmt: skip
    assert (cal.server_scale, cal.server_call_ms, cal.offload_hop_ms) == (7.0, 0.5, 9.0)
    assert cal.residuals["server_compute"]["kept_from"] == "edgeml calibrate before.json"
    assert cal.drone_scale == pytest.approx(TRUE.drone_scale, rel=0.05)  # fitted as ever
    alone = fit_calibration([run], profile, TRUE.request_fields_bytes, TRUE.reply_bytes)
    assert (alone.server_scale, alone.offload_hop_ms) == (1.0, 0.0)  # nothing to go by


def test_runs_that_do_not_fit_the_profile_or_each_other_are_refused(profile):
    run = synthetic_run(profile, TRUE)
    with pytest.raises(RunFileError, match="weights"):
        fit_calibration([replace(run, weights_digest="sha256:0123")], profile, 0, 0)
    with pytest.raises(RunFileError, match="different drone slowdowns"):
        fit_calibration([run, replace(run, compute_slowdown=2.0)], profile, 0, 0)
    with pytest.raises(RunFileError, match="no runs"):
        fit_calibration([], profile, 0, 0)
    columns = {name: [0.0] for name in LiveFrames.__dataclass_fields__}
    columns["thresholds"], columns["head_ms"] = [None], [float("nan")]
    with pytest.raises(RunFileError, match="head_ms"):
        LiveFrames.from_columns(columns)


def test_the_record_round_trips_through_the_profile_and_bad_ones_are_refused(profile, tmp_path):
    path = tmp_path / "p.json"
    shutil.copy(B_VGG.with_suffix(".npz"), path.with_suffix(".npz"))
    calibrated = replace(profile, calibration=replace(TRUE, command="c").as_dict())
    calibrated.save_json(path)
    assert load_profile(path)[0].calibrated == replace(TRUE, command="c")
    raw = json.loads(path.read_text())
    raw["calibration"]["terms"]["drone_scale"] = -1
    path.write_text(json.dumps(raw))
    with pytest.raises(ProfileError, match="drone_scale must be a finite number >= 0"):
        load_profile(path)
    raw["calibration"]["terms"]["fudge"] = 1
    path.write_text(json.dumps(raw))
    with pytest.raises(ProfileError, match="unknown fields"):
        load_profile(path)


def steady_world(profile, cal: Calibration | None, **config) -> World:
    calibrated = replace(profile, calibration=None if cal is None else cal.as_dict())
    world = World.load(B_VGG)
    cfg = SimConfig(**config)
    return World(calibrated, world.tables, cfg, ModelCosts(calibrated, cfg))


def steady(seconds: float = 5.0) -> Scenario:
    trace = Trace(np.array([0.0]), np.array([MBPS]), np.array([RTT_MS]), "steady")
    return Scenario("steady", trace, seconds, ((0.0, "clean"),), 0.9)


def test_a_calibrated_simulator_prices_local_frames_with_the_fitted_terms(profile):
    world = steady_world(profile, TRUE)
    final = len(profile.exits) - 1
    plan = ExecutionPlan(len(profile.blocks), (NO_EARLY_EXIT,) * final + (0.0,))
    records = world.simulation(steady()).run(plan, 20)
    drone = profile.times_ms()
    compute = TRUE.drone_ms(sum(drone.block_s) + drone.head_s[final])
    expected = TRUE.input_hop_ms + TRUE.conversion_ms + compute + TRUE.output_hop_ms
    np.testing.assert_allclose(records.latency_s * 1000, expected)
    assert world.costs.full_local_s * 1000 == pytest.approx(compute)
    # without a calibration, as profiled (the profile's device class: no slowdown here)
    plain = steady_world(profile, None).simulation(steady()).run(plan, 20)
    np.testing.assert_allclose(plain.latency_s * 1000, sum(drone.block_s) + drone.head_s[final])


@pytest.mark.parametrize("cut", [0, 1])
def test_a_calibrated_offload_pays_headers_hops_and_the_base_stations_fitted_time(profile, cut):
    world = steady_world(profile, TRUE, deadline_ms=300.0)
    final = len(profile.exits) - 1
    plan = ExecutionPlan(cut, (NO_EARLY_EXIT,) * final + (0.0,))
    records = world.simulation(steady()).run(plan, 20)
    assert np.all(records.where == 2)
    # what the link's token bucket does not let through at once takes the link's rate: all of
    # the input (4 KB), the features of cut 1 (32 KB) in part
    payload = profile.input_bytes["fp32"] if cut == 0 else profile.blocks[0].output_bytes["fp32"]
    burst = TRUE.burst_bits(MBPS)
    bits = max(0, 8 * TRUE.request_wire_bytes(payload) - burst)
    bits += max(0, 8 * TRUE.reply_wire_bytes() - burst)
    assert (bits > 0) == (cut == 1)
    drone, server = profile.times_ms(), profile.times_ms(server=True)
    tail = TRUE.server_scale * server.finish(cut) + TRUE.server_call_ms
    head = TRUE.drone_ms(sum(drone.block_s[:cut])) if cut else 0.0  # cut 0: no compute
    expected = (TRUE.input_hop_ms + TRUE.conversion_ms + head + TRUE.encode_ms
                + bits / (MBPS * 1e3) + tail + TRUE.offload_hop_ms + RTT_MS
                + TRUE.output_hop_ms)  # fmt: skip
    np.testing.assert_allclose(records.latency_s * 1000, expected)


def test_other_drones_queue_at_the_base_station(profile):
    final = len(profile.exits) - 1
    plan = ExecutionPlan(0, (NO_EARLY_EXIT,) * final + (0.0,))
    slow_base = replace(TRUE, server_call_ms=15.0)  # each request holds the base for ~20 ms
    lax = {"deadline_ms": 300.0}  # every frame waits for its reply, however long it queued
    tail_s = steady_world(profile, slow_base).costs.server_tail_s[0]
    alone = steady_world(profile, slow_base, **lax).simulation(steady()).run(plan, 50)
    # two other drones, 7 requests a second each: their requests drift across ours
    world = steady_world(profile, slow_base, other_drones=2, other_drones_offload_hz=7.0, **lax)
    shared = world.simulation(steady()).run(plan, 50)
    assert np.all(alone.where == 2) and np.all(shared.where == 2)
    waited = shared.latency_s - alone.latency_s
    # ours waits for the other requests ahead of it, never for more than one of each drone
    assert np.all(waited >= -1e-9) and np.all(waited <= 2 * tail_s + 1e-9)
    assert np.mean(waited) > 0.1 * tail_s and np.max(waited) > tail_s
    none = (
        steady_world(profile, slow_base, other_drones=0, **lax).simulation(steady()).run(plan, 50)
    )
    np.testing.assert_array_equal(none.latency_s, alone.latency_s)


def test_the_base_station_serves_requests_in_the_order_they_arrive():
    from edgeml_ros.policy.sim import BaseStation

    base = BaseStation(np.array([0.0, 0.05]), rate_hz=10.0)
    # the others' requests at 0.00 and 0.05 come first: 0.00-0.03, 0.05-0.08, then ours
    assert base.serve(0.06, 0.03) == pytest.approx(0.11)
    # ours at 0.10 with another's at 0.10: ours first (it waits for ours to end at 0.11)
    assert base.serve(0.10, 0.03) == pytest.approx(0.14)
    # the others' at 0.10 and 0.15 first, 0.14-0.17 and 0.17-0.20: ours then has the base
    assert base.serve(0.20, 0.03) == pytest.approx(0.23)
    assert base.serve(0.21, 0.03) == pytest.approx(0.29)  # behind the other's of 0.20
    assert BaseStation(np.zeros(0), 10.0).serve(0.5, 0.03) == pytest.approx(0.53)


def test_the_link_lets_its_token_bucket_through_at_once_and_refills_while_idle():
    trace = Trace(np.array([0.0]), np.array([1.0]), np.array([20.0]), "1 Mbit/s")
    link = TraceLink(trace, burst_bits=lambda mbps: 10_000.0)
    assert link.send(0.0, 8_000.0) == (0.0, 0.0)  # within the bucket: at once
    delivered, airtime = link.send(0.0, 8_000.0)  # 2,000 bits left: the rest at 1 Mbit/s
    assert delivered == pytest.approx(0.006) and airtime == pytest.approx(0.006)
    assert link.send(1.0, 8_000.0) == (1.0, 0.0)  # refilled while idle
    assert link.reply(1.0, 1.0, 12_000.0) == pytest.approx(1.022)  # RTT, then 2,000 bits


def test_the_drone_gives_up_on_its_reply_when_its_own_times_say(profile):
    final = len(profile.exits) - 1
    plan = ExecutionPlan(0, (NO_EARLY_EXIT,) * final + (0.0,))

    def run(drone_plan_scale: float, deadline_ms: float):
        world = steady_world(profile, replace(TRUE, drone_plan_scale=drone_plan_scale),
                             deadline_ms=deadline_ms)  # fmt: skip
        return world, world.simulation(steady()).run(plan, 20)

    # the reply comes about 30 ms after the frame; the deadline leaves time to wait for it...
    assert np.all(run(1.0, 90.0)[1].where == 2)
    # ...unless the drone thinks it needs eight times as long: its first exit (65 ms) leaves
    # the reply too little time
    fell_back = run(8.0, 90.0)[1]
    assert np.all(fell_back.where == 3) and np.all(fell_back.offloaded)
    # At four times, exit 2 (69 ms) would leave the reply 9 ms: the first offload falls back
    # there; its late reply shows how long replies take, so the next wait for theirs, with
    # exit 1 (49 ms) to fall back to.
    learnt = run(4.0, 90.0)[1]
    assert learnt.where[0] == 3 and np.all(learnt.where[1:] == 2)
    # A drone too slow to finish the model in time waits as long as its deepest exit in time
    # (here the first, 82 ms) allows: the reply comes in time, from the first frame on.
    slow, records = run(10.0, 130.0)
    assert slow.costs.drone_plan.finish(0) > 0.13
    assert np.all(records.where == 2)


def test_jitter_spreads_the_drone_compute_and_the_hops_as_measured(profile):
    spread = replace(
        TRUE,
        jitter={
            "drone_compute": np.linspace(0.5, 1.5, 101).tolist(),
            "output_hop_ms": np.linspace(0.0, 2.0, 101).tolist(),
        },
    )
    final = len(profile.exits) - 1
    plan = ExecutionPlan(len(profile.blocks), (NO_EARLY_EXIT,) * final + (0.0,))
    world = steady_world(profile, spread, fps=2.0)  # frames never wait for one another
    sim = world.simulation(steady(300.0))
    records = sim.run(plan, sim.frames)
    fixed = steady_world(profile, TRUE, fps=2.0).simulation(steady(300.0)).run(plan, sim.frames)
    compute = fixed.latency_s[0] - (TRUE.input_hop_ms + TRUE.conversion_ms
                                    + TRUE.output_hop_ms) / 1000  # fmt: skip
    # the compute over the fitted time, and the hop, uniform over their ranges here
    extra = records.latency_s - (TRUE.input_hop_ms + TRUE.conversion_ms) / 1000 - compute * 0.5
    assert np.all(extra >= 0) and np.all(extra <= compute + 0.002)
    assert np.median(records.latency_s) == pytest.approx(np.median(fixed.latency_s), abs=0.001)
    np.testing.assert_allclose(np.percentile(records.energy_j / fixed.energy_j, [5, 50, 95]),
                               [0.55, 1.0, 1.45], atol=0.03)  # fmt: skip


def lagging_estimates(
    link: list[tuple[float, float]], end_s: float, lag: Calibration, spread: float, seed: int = 0
) -> np.ndarray:
    """A link monitor's readings at 10 Hz: each change read `lag.estimate_lag_s` late, noisy;
    the RTT read `lag.link_estimate_rtt_ms` over RTT_MS, give or take 1 ms."""
    rng = np.random.default_rng(seed)
    read = [(link[0][0], link[0][1])]
    read += [(t + lag.estimate_lag_s(before, after), after)
             for (_, before), (t, after) in itertools.pairwise(link)]  # fmt: skip
    rows = []
    for t in np.arange(link[0][0], end_s, 0.1):
        rate = [mbps for start, mbps in read if start <= t][-1]
        rows.append((t, rate * float(np.exp(spread * rng.standard_normal())),
                     RTT_MS + lag.link_estimate_rtt_ms + rng.uniform(-1.0, 1.0)))  # fmt: skip
    return np.array(rows)


def test_the_fit_recovers_how_late_and_how_noisy_the_link_estimate_was(profile):
    link = [(1000.0, 20.0), (1012.0, 0.13), (1024.0, 0.04), (1036.0, 20.0)]
    lag = replace(TRUE, link_estimate_lag_s=0.5, link_estimate_lag_kbit=100.0,
                  link_estimate_rtt_ms=3.0)  # fmt: skip
    assert lag.estimate_lag_s(20.0, 0.04) == pytest.approx(0.5 + 100 / 40)
    assert lag.estimate_lag_s(0.0, 0.04) == pytest.approx(0.5 + 100 / 40)  # an outage's side
    runs = []
    for seed in range(3):
        run = synthetic_run(profile, TRUE, seed=seed)
        estimates = lagging_estimates(link, 1048.0, lag, spread=0.02, seed=seed)
        shaped = np.array([(t, mbps, RTT_MS) for t, mbps in [*link, (1048.0, 20.0)]])
        runs.append(replace(run, link=shaped, estimates=estimates))
    cal = fit_calibration(runs, profile, TRUE.request_fields_bytes, TRUE.reply_bytes)
    # readings come every 0.1 s: a change is read up to 0.1 s later than its lag
    assert cal.link_estimate_lag_s == pytest.approx(0.5, abs=0.15)
    assert cal.link_estimate_lag_kbit == pytest.approx(100.0, abs=8.0)
    assert cal.link_estimate_noise == pytest.approx(0.02, rel=0.2)
    assert cal.link_estimate_rtt_ms == pytest.approx(3.0, abs=0.1)
    assert cal.residuals["link_estimate_rtt"]["residual_p95"] == pytest.approx(0.95, abs=0.05)
    assert cal.residuals["link_estimate_lag"]["frames"] == 9  # three changes in each run
    # runs without recorded estimates fit nothing: no lag, the simulator's default noise
    plain = fit_calibration([synthetic_run(profile, TRUE)], profile, 190, 120)
    assert (plain.link_estimate_lag_s, plain.link_estimate_lag_kbit) == (0.0, 0.0)
    assert (plain.link_estimate_noise, plain.link_estimate_rtt_ms) == (None, 0.0)
    # ... or keep the previous calibration's
    kept = fit_calibration([synthetic_run(profile, TRUE)], profile, 190, 120, previous=cal)
    assert kept.estimate_lag_s(20.0, 0.13) == cal.estimate_lag_s(20.0, 0.13)
    assert kept.link_estimate_noise == cal.link_estimate_noise
    assert kept.link_estimate_rtt_ms == cal.link_estimate_rtt_ms
    assert kept.residuals["link_estimate_lag"]["kept_from"] == cal.command
    with pytest.raises(ValueError, match="link_estimate_noise must be in"):
        replace(TRUE, link_estimate_noise=1.5)


def test_a_calibrated_link_estimate_reads_each_change_as_late_as_fitted(profile):
    trace = Trace(np.array([0.0, 3.0, 4.0, 20.0]), np.array([20.0, 0.1, 0.1, 20.0]),
                  np.array([RTT_MS, 30.0, 30.0, RTT_MS]), "drop")  # fmt: skip
    scenario = Scenario("drop", trace, 30.0, ((0.0, "clean"),), 0.9)
    lagging = replace(TRUE, link_estimate_lag_s=1.0, link_estimate_lag_kbit=200.0,
                      link_estimate_noise=0.0)  # fmt: skip
    sim = steady_world(profile, lagging).simulation(scenario)
    # 20 -> 0.1 Mbit/s at 3 s is read 3 s later (1 + 200/100); the step at 4 s keeps the rate
    # and is read with it; back to 20 at 20 s, read 3 s later too
    at = (5.9, 6.1, 22.9, 23.1)
    assert [sim.link_estimate(at_s=t) for t in at] == [
        pytest.approx(read) for read in [(20.0, RTT_MS), (0.1, 30.0), (0.1, 30.0), (20.0, RTT_MS)]
    ]
    # without the fit: the last window's average, with SimConfig.estimate_noise
    plain = steady_world(profile, TRUE, estimate_noise=0.0).simulation(scenario)
    assert plain.link_estimate(at_s=3.5)[0] == pytest.approx(np.mean(
        trace.at(np.linspace(2.5, 3.5, 9))[0]))  # fmt: skip
    noisy = steady_world(profile, replace(lagging, link_estimate_noise=0.05)).simulation(scenario)
    readings = np.array([noisy.link_estimate(at_s=10.0)[0] for _ in range(400)])
    assert np.std(readings / 0.1) == pytest.approx(0.05, rel=0.2)


def test_the_rtt_read_carries_the_fitted_excess_and_predictions_take_it_off(profile):
    trace = Trace(np.array([0.0]), np.array([20.0]), np.array([RTT_MS]), "steady")
    scenario = Scenario("steady", trace, 10.0, ((0.0, "clean"),), 0.9)
    excess = replace(TRUE, link_estimate_noise=0.0, link_estimate_rtt_ms=3.0)
    world = steady_world(profile, excess)
    assert world.simulation(scenario).link_estimate(at_s=5.0) == pytest.approx((20.0, RTT_MS + 3))
    costs, plain = world.costs, steady_world(profile, TRUE).costs
    assert (costs.path_rtt_ms(RTT_MS + 3), costs.path_rtt_ms(1.0)) == pytest.approx((RTT_MS, 0))
    # a prediction from the reading is the one from the path's RTT
    assert costs.offload_s(2, 20.0, RTT_MS + 3) == pytest.approx(plain.offload_s(2, 20.0, RTT_MS))


def test_an_emulating_drone_pads_to_the_times_the_simulators_drone_computes_in(profile):
    cal = profile.calibrated
    emulated, profiled = profile.drone_times(), profile.times_ms()
    # a calibrated profile's drone: scaled, plus a fixed time per call (s, slowdown 1)
    assert emulated.head(2, [0]) == pytest.approx(
        (cal.drone_scale * profiled.head(2, [0]) + cal.drone_call_ms) / 1e3
    )
    # the simulator's drone is the same one, at the slowdown the live runs emulated
    sim_drone = ModelCosts(profile, SimConfig()).drone
    assert sim_drone == replace(emulated, slowdown=cal.compute_slowdown)
    # without a calibration, the profiled times
    bare = replace(profile, calibration=None).drone_times()
    assert bare.finish(0) == pytest.approx(profiled.finish(0) / 1e3)
