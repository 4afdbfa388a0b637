import copy
import json
import math
import subprocess
import sys
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from edgeml_ros.core.codec import IMAGE_ENCODINGS
from edgeml_ros.core.degrade import CONDITIONS
from edgeml_ros.core.paths import POLICY_DIR
from edgeml_ros.core.plan import NO_EARLY_EXIT, ExecutionPlan, shared_thresholds
from edgeml_ros.core.profiles import ExitTable, ImageExit
from edgeml_ros.core.traces import Trace, outage_trace, step_trace
from edgeml_ros.core.workloads import DEFAULT_WORKLOAD, workload
from edgeml_ros.policy.agents import (
    LoopPolicy,
    PolicyFileError,
    load_policy,
    policy_file,
    train_agent,
)
from edgeml_ros.policy.baselines import (
    Apparate,
    FixedPolicy,
    Neurosurgeon,
    ThresholdLoop,
    apparate_min_audits,
    pick_image_encoding,
)
from edgeml_ros.policy.env import (
    LOOP_OBSERVATION_SIZE,
    EdgeMLDDPGEnv,
    EdgeMLEnv,
    EdgeMLLoopEnv,
    ddpg_reward,
    loop_routes,
)
from edgeml_ros.policy.evaluate import (
    by_kind,
    evaluate,
    kind_table,
    run_policy,
    summarize,
    windows_near_full_model,
)
from edgeml_ros.policy.observation import (
    Observation,
    action_index,
    action_plan,
    num_actions,
    observe,
    plan_action,
)
from edgeml_ros.policy.planner import (
    SPEED_PROBE_WINDOWS,
    TELEMETRY_SPREAD_FLOOR,
    Planner,
    UtilityTable,
    tabulate,
)
from edgeml_ros.policy.registry import (
    chosen_policies,
    make_policy,
    named_policies,
    policy_names,
    policy_spec,
    register,
    training_differences,
)
from edgeml_ros.policy.scenarios import (
    TEST_SCENARIOS,
    TEST_SEED_BASE,
    resolve_scenario,
    steady_scenario,
    train_scenario,
)
from edgeml_ros.policy.sim import (
    THRESHOLD_LEVELS,
    WHERE_BASE,
    WHERE_DRONE,
    WHERE_FALLBACK,
    FrameRecords,
    ModelCosts,
    Scenario,
    SimConfig,
    _transfer,
)
from edgeml_ros.policy.thresholds import pick_agreeing_threshold, window_agreement_budget
from edgeml_ros.policy.world import World


@pytest.fixture(scope="module")
def calibrated():
    """The committed profile, calibrated to live runs (what the committed policies train on)."""
    return World.load("edgeml_ros/profiles/fashion_mnist_b_vgg.json")


@pytest.fixture(scope="module")
def world(calibrated):
    """The committed profile as profiled: the simulator's own rules (calibration: its tests)."""
    profile = replace(calibrated.profile, calibration=None)
    config = calibrated.config
    return World(profile, calibrated.tables, config, ModelCosts(profile, config))


def steady(mbps: float, rtt_ms: float, seconds: float = 10.0, condition="clean") -> Scenario:
    return steady_scenario("steady", mbps, rtt_ms, ((0.0, condition),), seconds, initial_soc=0.9)


def no_exits(world, cut):
    return ExecutionPlan(cut, (NO_EARLY_EXIT,) * (world.costs.num_exits - 1) + (0.0,))


def test_local_frames_cost_the_profiled_compute(world):
    sim = world.simulation(steady(10, 20))
    records = sim.run(no_exits(world, world.costs.num_blocks), sim.frames)
    assert len(records.t_s) == sim.frames == 100 and sim.done
    np.testing.assert_allclose(records.latency_s, world.costs.full_local_s)
    assert np.all(records.where == WHERE_DRONE) and np.all(records.exit_index == 3)
    table = world.tables["clean"]
    expected = table.predictions[3, sim.sample] == table.labels[sim.sample]
    np.testing.assert_array_equal(records.correct, expected)
    energy = world.costs.device.compute_w * world.costs.full_local_s
    np.testing.assert_allclose(records.energy_j, energy)


def test_a_scenario_can_fly_a_slower_drone(world):
    # 12x the profiler's time for 2 s, then 3x: a change takes effect with the next window
    scenario = replace(steady(10, 20), compute_schedule=((0.0, 12.0), (2.0, 3.0)))
    sim = world.simulation(scenario)
    local = no_exits(world, world.costs.num_blocks)
    slowed, faster = world.slowed(12.0).costs, world.slowed(3.0).costs
    np.testing.assert_allclose(sim.run(local, 20).latency_s[:5], slowed.full_local_s)
    np.testing.assert_allclose(sim.run(local, 10).latency_s[5:], faster.full_local_s)
    assert slowed.full_local_s > 4 * world.costs.full_local_s  # the world's drone: 2.5x
    with pytest.raises(ValueError, match="a compute slowdown must be in"):
        replace(scenario, compute_schedule=((0.0, 0.5),))
    with pytest.raises(ValueError, match="must start at t = 0 and go forward"):
        replace(scenario, compute_schedule=((0.0, 2.0), (0.0, 3.0)))


def test_offload_latency_is_transfer_plus_rtt_plus_tail(world):
    sim = world.simulation(steady(8.0, 30.0))
    records = sim.run(no_exits(world, 0), 20)
    costs = world.costs
    expected = costs.cut_bytes[0] * 8 / 8e6 + 0.030 + costs.server_tail_s[0]
    assert np.all(records.where == WHERE_BASE)
    np.testing.assert_allclose(records.latency_s, expected)
    assert costs.offload_s(0, 8.0, 30.0) == pytest.approx(expected)


def test_outage_falls_back_on_the_drone_and_loses_no_frame(world):
    trace = outage_trace(10.0, 3.0, 4.0, rtt_ms=20.0)
    sim = world.simulation(Scenario("o", trace, 10.0, ((0.0, "clean"),)))
    records = sim.run(no_exits(world, 2), sim.frames)
    assert len(records.t_s) == sim.frames
    during = (records.t_s >= 3.0) & (records.t_s < 6.9)
    assert np.all(records.where[during] == WHERE_FALLBACK)
    assert np.all(records.where[records.t_s < 2.9] == WHERE_BASE)
    assert not records.missed.any()  # the fallback leaves time to finish on the drone
    assert np.all(records.latency_s <= sim.deadline_s)


def test_a_frame_the_offload_window_refuses_finishes_on_the_drone_at_once(world):
    sim = world.simulation(steady(0.2, 20.0))  # an input takes 164 ms on the link
    records = sim.run(no_exits(world, 0), sim.frames)
    refused = (records.where == WHERE_FALLBACK) & ~records.offloaded
    assert refused.any() and records.offloaded.any()
    np.testing.assert_allclose(records.latency_s[refused], world.costs.full_local_s)
    assert np.all(records.exit_index[refused] == world.costs.num_exits - 1)


def test_the_drone_computes_one_frame_or_fallback_at_a_time(world):
    # a dead link, 100 frames a second: two offloads wait in vain, every later frame is refused
    # and runs the whole model (made to take 15 ms) at once, behind the frames before it
    profile = copy.deepcopy(world.profile)
    for part in (*profile.blocks, *profile.exits):
        part.latency_ms_median *= 0.015 / world.costs.full_local_s
    config = SimConfig(fps=100.0, deadline_ms=1000.0, max_frame_age_ms=None)  # a backlog
    slow = World(profile, world.tables, config, ModelCosts(profile, config))
    dead = Scenario("dead", Trace(np.array([0.0]), np.array([0.0]), np.array([20.0])), 0.5)
    records = slow.simulation(dead).run(no_exits(world, 0), 50)
    assert slow.costs.full_local_s == pytest.approx(0.015)
    assert records.offloaded[:2].all() and not records.offloaded[2:].any()
    np.testing.assert_allclose(np.diff(records.latency_s[2:]), 0.015 - 0.01)
    # the two offloads fall back at their time, after the backlog: the first finishes the
    # model, the second waits for it and has time left only for an earlier exit
    assert records.exit_index[0] == 3 and records.exit_index[1] < 3
    assert np.all(records.latency_s[:2] <= 1.0)


def test_transfers_integrate_bandwidth_steps_and_outages():
    trace = Trace(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0, 2.0]), np.full(3, 10.0))
    end, airtime = _transfer(trace, 0.5, 1.5e6)  # 0.5 Mbit by t=1, pause, 1 Mbit at 2 Mbit/s
    assert end == pytest.approx(2.5) and airtime == pytest.approx(1.0)
    dead = Trace(np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.full(2, 10.0))
    assert math.isinf(_transfer(dead, 0.5, 1e6)[0])


def test_utility_follows_its_formula(world):
    cfg = world.config
    sim = world.simulation(steady(10, 20))
    records = sim.run(action_plan(7, world.costs.num_blocks, world.costs.num_exits), 30)
    w = cfg.weights
    soc = 0.9 - np.cumsum(records.energy_j) / (cfg.battery_wh * 3600)
    expected = (
        records.correct * w.accuracy
        - w.latency * records.latency_s / sim.deadline_s
        - w.energy_weight(soc) * records.energy_j / world.costs.reference_energy_j
        - w.deadline_miss * records.missed
    )
    np.testing.assert_allclose(records.utility, expected)


def test_simulation_is_deterministic_and_preview_changes_nothing(world):
    scenario = resolve_scenario(TEST_SCENARIOS[0])
    a, b = world.simulation(scenario), world.simulation(scenario)
    plan = action_plan(20, world.costs.num_blocks, world.costs.num_exits)
    preview = a.preview(plan, 10)
    ran = a.run(plan, 10)
    np.testing.assert_array_equal(preview.utility, ran.utility)
    np.testing.assert_array_equal(b.run(plan, 10).latency_s, ran.latency_s)


def test_harder_inputs_are_less_accurate(world):
    def accuracy(condition):
        sim = world.simulation(steady(10, 20, 60.0, condition))
        return np.mean(sim.run(no_exits(world, world.costs.num_blocks), sim.frames).correct)

    assert accuracy("blur") < accuracy("clean") - 0.03


def test_env_passes_the_gymnasium_checker_and_is_deterministic(world):
    check_env(EdgeMLEnv(world), skip_render_check=True)
    check_env(EdgeMLDDPGEnv(world), skip_render_check=True)
    check_env(EdgeMLLoopEnv(world), skip_render_check=True)
    sb3_check_env(EdgeMLEnv(world))
    sb3_check_env(EdgeMLDDPGEnv(world), warn=False)  # the authors' asymmetric action bounds

    def rollout():
        env = EdgeMLEnv(world)
        obs, _ = env.reset(seed=3)
        out = [obs]
        for action in range(0, num_actions(world.costs.num_blocks), 5):
            obs, reward, *_ = env.step(action)
            out += [obs, reward]
        return out

    for x, y in zip(rollout(), rollout(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_redrawn_rewards_keep_the_path_and_lose_the_noise_of_which_frames_came(world):
    action = 7  # cut 0: every frame offloaded, so the frames' difficulty is all that varies

    def rollout(draws):
        env = EdgeMLEnv(world, reward_draws=draws)
        obs, _ = env.reset(seed=3, options={"scenario": steady(10, 20, seconds=40.0)})
        observations, rewards, done = [obs], [], False
        while not done:
            obs, reward, _, done, _ = env.step(action)
            observations.append(obs)
            rewards.append(reward)
        actual = [float(np.mean(r.utility)) for r in env.sim.history]
        return observations, np.array(rewards), np.array(actual)

    plain_obs, plain, plain_actual = rollout(0)
    drawn_obs, drawn, drawn_actual = rollout(4)
    np.testing.assert_array_equal(plain, plain_actual)  # no draws: the window's own utility
    for x, y in zip(plain_obs, drawn_obs, strict=True):  # previews leave the run as it was
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(drawn_actual, plain_actual)
    assert np.std(drawn) < 0.7 * np.std(plain)
    assert np.mean(drawn) == pytest.approx(np.mean(plain), abs=0.05)
    with pytest.raises(ValueError, match="reward draws apply to ppo, dqn, ppo_loop"):
        train_agent(world, "static", POLICY_DIR, "unused", timesteps=1, reward_draws=2)


def test_episodes_end_truncated_at_the_time_limit_and_steps_report_their_frames(world):
    costs = world.costs
    ddpg_action = np.array([0.5, 0.5, 0.5, 2.0, 5.0], dtype=np.float32)  # 6 frames a step
    ddpg_plan = EdgeMLDDPGEnv(world).tracker.plan(ddpg_action, costs.num_blocks)[0]
    for env, action, plan in (
        (EdgeMLEnv(world), 7, action_plan(7, costs.num_blocks, costs.num_exits)),
        (EdgeMLDDPGEnv(world), ddpg_action, ddpg_plan),
    ):
        env.reset(options={"scenario": steady(10, 20, seconds=3.0)})
        steps = [env.step(action)]
        while not (steps[-1][2] or steps[-1][3]):
            steps.append(env.step(action))
        terminated = [step[2] for step in steps]
        truncated = [step[3] for step in steps]
        assert not any(terminated) and truncated == [False] * (len(steps) - 1) + [True]
        infos = [step[4] for step in steps]
        assert sum(info["frames"] for info in infos) == 30
        for info, records in zip(infos, env.sim.history, strict=True):
            assert info["plan"] == plan and info["frames"] == len(records.t_s)
            assert info["accuracy"] == np.mean(records.correct)
            assert info["latency_ms_mean"] == pytest.approx(1000 * np.mean(records.latency_s))
            assert info["energy_j"] == pytest.approx(np.sum(records.energy_j))
            assert info["deadline_misses"] == np.sum(records.missed)
            assert info["fallbacks"] == np.sum(records.where == WHERE_FALLBACK)


def test_the_authors_reward_is_piecewise():
    assert ddpg_reward(0.2, 2.0, 3, 4) == -2.0
    assert ddpg_reward(0.3, 1.0, 3, 4) == pytest.approx(-(2 / math.pi) * math.atan(0.2))
    assert ddpg_reward(0.05, 2.5, 3, 4) == pytest.approx(-(2 / math.pi) * math.atan(1.0))
    assert ddpg_reward(0.05, 1.0, 1.5, 4) == pytest.approx((2.5 / 4) ** 2)
    assert ddpg_reward(0.05, 1.0, 1.5, 3) == pytest.approx((2.5 / 3) ** 2)  # three exits


def test_neurosurgeon_follows_the_bandwidth(world):
    policy = Neurosurgeon(world.costs)
    obs = Observation(0.0, 20.0, 0.0, 0.9, 1.0, 0.0, 0.0, 0.0, 10.0, 100.0, 0, 0)
    assert policy.decide(obs).plan.cut_point == world.costs.num_blocks
    fast = Observation(1000.0, 0.0, 0.0, 0.9, 1.0, 0.0, 0.0, 0.0, 10.0, 100.0, 0, 0)
    assert policy.decide(fast).plan.cut_point < world.costs.num_blocks


def ucb(world):
    return make_policy("ucb", world)


@pytest.mark.parametrize(("mbps", "rtt_ms"), [(50.0, 10.0), (0.05, 80.0)])
def test_ucb_settles_near_its_best_arm_on_a_steady_link(world, mbps, rtt_ms):
    # 200 windows: one for each arm first, then the bandit's own choices
    scenario = steady(mbps, rtt_ms, seconds=200.0)
    half = int(100 * world.config.fps)

    def second_half(policy) -> float:
        return float(np.mean(run_policy(world, policy, scenario).utility[half:]))

    bandit = ucb(world)
    fixed = [second_half(FixedPolicy("f", arm)) for arm in bandit.arms]
    best = max(fixed)
    assert min(fixed) < best - 0.05  # the arms differ: a wrong choice would show
    assert second_half(bandit) >= best - 0.05


def test_ucb_is_deterministic_after_reset_and_credits_the_plan_in_force(world):
    policy = ucb(world)
    scenario = steady(2.0, 30.0, seconds=80.0)
    first, again = run_policy(world, policy, scenario), run_policy(world, policy, scenario)
    np.testing.assert_array_equal(first.utility, again.utility)
    np.testing.assert_array_equal(first.cut_point, again.cut_point)
    np.testing.assert_array_equal(first.threshold, again.threshold)
    fresh = run_policy(world, ucb(world), scenario)
    np.testing.assert_array_equal(first.cut_point, fresh.cut_point)

    blocks = world.costs.num_blocks
    level = plan_action(policy.arms[0], blocks)[1]  # every arm's threshold level

    def window(cut: int, level: int = level, frames: bool = True) -> Observation:
        latency = 0.2 if frames else 0.0  # recent_stats: 0 for a window without frames
        return Observation(2.0, 30.0, 0.0, 0.9, 0.9, 0.5, 0.0, latency, 10.0, 100.0, cut, level)

    def cut(obs: Observation) -> int:
        return policy.decide(obs).plan.cut_point

    policy.reset()
    assert cut(window(3)) == 0  # the first decision credits nothing: arm 0 first
    assert cut(window(1)) == 0  # a window overridden to arm 1: 1 is credited, not 0
    assert cut(window(0, level=(level + 1) % len(THRESHOLD_LEVELS))) == 0  # no arm's plan
    assert cut(window(0)) == 2
    assert cut(window(0, frames=False)) == 2  # a window without frames credits nothing


def test_scenarios_split_and_resolve(tmp_path):
    rng = np.random.default_rng(0)
    drawn = [train_scenario(rng, steady_share=0.25) for _ in range(400)]
    assert all(s.seed < TEST_SEED_BASE for s in drawn)
    assert not any(train_scenario(rng).name.startswith("steady-") for _ in range(100))
    # asked for a quarter steady: one link rate, one condition, one drone, 1-16x, throughout
    steady = [s for s in drawn if s.name.startswith("steady-")]
    assert 0.18 < len(steady) / len(drawn) < 0.32
    times = np.arange(0.0, 120.0, 0.5)
    for s in steady:
        rates = s.trace.at(times)[0]
        assert np.all(rates == rates[0]) and 0.04 <= rates[0] <= 50.0
        assert len(s.difficulty) == 1 and len(s.compute_schedule) == 1
        assert 1 <= s.compute_schedule[0][1] <= 16
    assert {s.difficulty[0][1] for s in steady} == {"clean", "blur", "noise", "low_light"}
    # of the other kinds that fly the world's drone, half fly another, 1-16x slower
    one_drone = [s for s in drawn if s not in steady and not s.name.startswith("compute")]
    slowdowns = [s.compute_schedule[0][1] for s in one_drone if s.compute_schedule]
    assert all(len(s.compute_schedule) < 2 for s in one_drone)
    assert 0.35 < len(slowdowns) / len(one_drone) < 0.65
    assert min(slowdowns) >= 1 and max(slowdowns) <= 16
    assert min(slowdowns) < 2 and max(slowdowns) > 8
    # compute-SEED: markov-SEED on a drone whose compute changes every 10-40 s
    markov, compute = resolve_scenario("markov-100000"), resolve_scenario("compute-100000")
    assert not markov.compute_schedule and len(compute.compute_schedule) >= 3
    np.testing.assert_array_equal(compute.trace.at(times), markov.trace.at(times))
    assert compute.difficulty == markov.difficulty
    assert "compute-100002" in TEST_SCENARIOS and len(TEST_SCENARIOS) == 15
    assert all(resolve_scenario(n).seed >= TEST_SEED_BASE for n in TEST_SCENARIOS)
    path = tmp_path / "link.csv"
    step_trace((5.0, 0.0, 5.0), 10.0).save(path)
    scenario = resolve_scenario(str(path), condition="noise")
    assert scenario.duration_s == 30.0 and scenario.difficulty == ((0.0, "noise"),)
    with pytest.raises(ValueError, match="neither a trace file nor a built-in"):
        resolve_scenario("nope-x")
    with pytest.raises(ValueError, match="condition 'fog' unknown"):
        resolve_scenario(str(path), condition="fog")


def test_sim_config_refuses_nonsense():
    with pytest.raises(ValueError, match="deadline_ms"):
        SimConfig(deadline_ms=0)
    with pytest.raises(ValueError, match="unknown device class"):
        SimConfig(device_class="toaster")


def test_committed_policies_load_and_beat_the_fixed_baselines(calibrated):
    world = calibrated
    names = chosen_policies((), world)[0]
    policies = named_policies(world, names)
    assert all(policy.name == name for name, policy in policies.items())
    scenario = resolve_scenario(TEST_SCENARIOS[-1], duration_s=40.0)
    results, records = evaluate(world, policies, [scenario])
    scores = results["policies"]
    assert set(scores) == set(names) and "conditions_oracle" not in names
    assert scores["oracle"]["oracle_ratio"] == 1.0
    for adaptive in ("rl", "planner"):
        assert scores[adaptive]["utility"] > max(scores["edge_only"]["utility"],
                                                 scores["cloud_only"]["utility"])  # fmt: skip
    assert all(len(r.t_s) == 400 for runs in records.values() for r in runs.values())


def test_the_conditions_oracle_knows_the_conditions_but_not_the_frames(calibrated):
    world = calibrated
    scenario = resolve_scenario(TEST_SCENARIOS[0], duration_s=30.0)
    sim = world.simulation(scenario)
    kept, conditions = sim.sample.copy(), sim.condition.copy()
    policy = make_policy("conditions_oracle", world)
    obs = observe(sim, None)
    chosen = policy.decide(obs, sim).plan
    with sim.frames_redrawn(np.random.default_rng(3)):
        assert np.mean(sim.sample != kept) > 0.9  # other frames
        assert np.array_equal(sim.condition, conditions)  # in the same conditions
        policy.reset()
        assert policy.decide(obs, sim).plan == chosen  # which frames come: unknown to it
    assert np.array_equal(sim.sample, kept)
    with pytest.raises(ValueError, match="cannot run live"):
        policy.decide(obs)


@pytest.mark.parametrize("name", ["rl", "rl_loop", "dqn"])
def test_a_learned_policy_ignores_the_features_it_never_saw_vary(name):
    # `make bench-system`'s dqn, live, as the link fell to 130 kbit/s: its window had counted
    # 9 results, not the 10 frames a second it trained on, and it offloaded every frame at cut 1
    world = World.load("edgeml_ros/profiles/drone_scenes_resnet18.json")
    policy = make_policy(name, world)
    seen = Observation(bandwidth_mbps=0.13, rtt_ms=25.0, bandwidth_trend=-2.19, battery_soc=0.88,
                       recent_confidence=0.62, recent_early_exit_rate=1.0,
                       recent_fallback_rate=0.0, recent_latency_ratio=0.1, fps=10.0,
                       deadline_ms=100.0, cut_point=3, threshold_level=0)  # fmt: skip

    def plan(obs):
        policy.reset()
        return policy.decide(obs).plan

    trained = plan(seen)
    for fps in (9.0, 9.9, 10.1, 11.0):
        assert plan(replace(seen, fps=fps)) == trained
    # what it did learn still moves it: frames answered at twice the deadline (a slow drone)
    assert plan(replace(seen, recent_latency_ratio=2.0)) != trained


def test_the_registry_names_every_policy_once_and_which_run_live():
    assert policy_names() == ("rl", "rl_loop", "dqn", "planner", "edgeml_ddpg", "edge_only",
                              "cloud_only", "cloud_png", "cloud_jpeg", "neurosurgeon",
                              "branchynet", "tuned_static", "spinn", "ucb", "apparate", "oracle",
                              "conditions_oracle")  # fmt: skip
    offline = {"edgeml_ddpg", "oracle", "conditions_oracle"}
    assert set(policy_names()) - set(policy_names(live_only=True)) == offline
    assert all(policy_spec(name).description for name in policy_names())
    with pytest.raises(
        ValueError, match="policy 'nope' unknown; known: rl, rl_loop, dqn, planner, edgeml_ddpg"
    ):
        policy_spec("nope")
    with pytest.raises(ValueError, match="registered twice"):
        register("rl", "again")(lambda world, policy_dir: None)


def test_policy_trained_for_other_weights_is_refused(world, tmp_path):
    path = policy_file(tmp_path, world, "ppo")
    meta = json.loads(policy_file(POLICY_DIR, world, "ppo").with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "weights_digest": "sha256:00"}))
    with pytest.raises(PolicyFileError, match="retrain it"):
        load_policy(path, world)


def test_a_saved_policy_scored_for_another_deadline_or_utility_says_so(world):
    assert training_differences("rl", world) is None  # as trained
    config = replace(world.config, deadline_ms=50.0,
                     weights=replace(world.config.weights, energy=0.1))  # fmt: skip
    other = World(world.profile, world.tables, config, ModelCosts(world.profile, config))
    why = training_differences("rl", other)
    assert "deadline_ms 100.0, not 50.0" in why and "'energy': 0.3" in why, why
    assert "'energy': 0.1" in why and "--agent ppo" in why, why
    assert "--agent planner" in training_differences("planner", other)
    assert training_differences("branchynet", other) is None  # no saved policy: nothing trained


def test_short_ppo_training_saves_a_working_policy(world, tmp_path):
    meta = train_agent(world, "ppo", tmp_path, "tiny", timesteps=512, command="test")
    assert meta["weights_digest"] == world.profile.weights_digest
    policy = load_policy(tmp_path / "tiny", world)
    records = run_policy(world, policy, steady(10, 20))
    assert summarize(records)["frames"] == 100


@pytest.mark.parametrize("steady_share", [0.0, 1.0])
def test_the_tuned_static_policy_holds_the_action_of_best_training_utility(
    world, tmp_path, steady_share
):
    windows = 2 * num_actions(world.costs.num_blocks) * 120  # two 120-s training scenarios
    meta = train_agent(world, "static", tmp_path, "tuned", timesteps=windows, command="test",
                       steady_share=steady_share)  # fmt: skip
    assert meta["scenarios"] == 2 and not (tmp_path / "tuned.zip").exists()
    assert meta["steady_share"] == steady_share
    # the same two scenarios, every action held through both: the best is the one saved
    rng = np.random.default_rng(0)
    scenarios = [train_scenario(rng, steady_share), train_scenario(rng, steady_share)]
    costs = world.costs

    def utility(action):
        policy = FixedPolicy("s", action_plan(action, costs.num_blocks, costs.num_exits))
        return np.mean([summarize(run_policy(world, policy, s))["utility"] for s in scenarios])

    best = meta["action"]
    assert meta["mean_utility"][best] == pytest.approx(utility(best), abs=1e-4)
    assert all(utility(a) <= utility(best) for a in (0, best - 1, best + 1) if 0 <= a < 60)
    policy = load_policy(tmp_path / "tuned", world, "tuned_static")
    assert policy.decide(observe_empty()).plan == action_plan(best, costs.num_blocks,
                                                              costs.num_exits)  # fmt: skip
    broken = tmp_path / "tuned.json"
    broken.write_text(json.dumps({**meta, "action": 60}))
    with pytest.raises(PolicyFileError, match=r"action 60 is not one of 0\.\.59"):
        load_policy(tmp_path / "tuned", world)


def test_the_loop_agent_picks_routes_and_its_loop_the_threshold(world, tmp_path):
    costs = world.costs
    env = EdgeMLLoopEnv(world)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (LOOP_OBSERVATION_SIZE,) == env.observation_space.shape
    start = env.loop.threshold
    np.testing.assert_allclose(obs[-3:], [start, 1.0, 0.0])  # the loop's state, no audits yet
    # this profile measured no image encodings: one route per cut point
    assert loop_routes(world) == [(c, "fp32") for c in range(costs.num_blocks + 1)]
    _, _, _, _, info = env.step(costs.num_blocks)
    thresholds = shared_thresholds(start, costs.num_exits)
    share = world.config.audit_share
    assert info["plan"] == ExecutionPlan(costs.num_blocks, thresholds, audit_share=share)
    # the drone workload's profile did: the camera frame at cut 0 is a route too
    drone = World.load(workload(DEFAULT_WORKLOAD).profile)
    routes = loop_routes(drone)
    assert routes[-len(IMAGE_ENCODINGS) :] == [(0, e) for e in IMAGE_ENCODINGS]
    # trained briefly, it runs the simulator from its routes, auditing
    meta = train_agent(world, "ppo_loop", tmp_path, "tiny_loop", timesteps=512, command="test")
    assert meta["agent"] == "ppo_loop"
    policy = load_policy(tmp_path / "tiny_loop", world)
    assert isinstance(policy, LoopPolicy)
    records = run_policy(world, policy, steady(10, 20, 60.0))
    assert summarize(records)["frames"] == 600 and records.auditable.any()
    assert policy.decide(observe_empty()).plan.audit_share == world.config.audit_share


def test_utility_by_scenario_kind_averages_the_scenarios_of_each_kind():
    per_scenario = {"markov-1": {"a": 1.0, "b": 0.0}, "markov-2": {"a": 3.0, "b": 1.0},
                    "link": {"a": 2.0, "b": 2.0}}  # fmt: skip
    assert by_kind(per_scenario) == {"markov": {"a": 2.0, "b": 0.5}, "link": {"a": 2.0, "b": 2.0}}
    table = kind_table(by_kind(per_scenario))
    assert "| policy | markov | link |" in table and "| b | 0.500 | 2.000 |" in table
    assert kind_table(by_kind({"markov-1": {"a": 1.0}})) == []  # one kind: the main table says it


def test_drift_windows_compare_each_10_s_with_the_whole_model_on_the_same_frames():
    def run(wrong_in_second_window: int):
        n = 300  # 30 s at 10 frames/s: three windows
        records = replace(FrameRecords.empty(), t_s=np.arange(n) / 10.0,
                          correct=np.ones(n, bool), full_correct=np.ones(n, bool))  # fmt: skip
        records.correct[100 : 100 + wrong_in_second_window] = False
        return records

    assert windows_near_full_model(run(0)) == 1.0
    assert windows_near_full_model(run(1)) == 1.0  # 99 %: within a point
    assert windows_near_full_model(run(2)) == pytest.approx(2 / 3)
    # runs one after the other: each its own windows, though their times start over
    both = FrameRecords.concat([run(0), run(5)])
    assert windows_near_full_model(both) == pytest.approx(5 / 6)


def test_evaluate_command_writes_json_and_plots(tmp_path, world):
    trace = tmp_path / "link.csv"
    trace.write_text("# a throttled link\nt_s,mbps,rtt_ms\n0,20,15\n5,0.04,80\n10,20,15\n")
    out = tmp_path / "eval.json"
    cmd = [sys.executable, "-m", "edgeml_ros.cli", "evaluate", "--workload", "fashion_mnist",
           "--scenario", str(trace), "--duration", "15", "--json", str(out),
           "--plots", str(tmp_path / "plots")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    keys = {"utility", "oracle_ratio", "accuracy", "latency_ms_p50", "latency_ms_p95",
            "deadline_miss_rate", "energy_j_per_frame"}  # fmt: skip
    assert set(results["policies"]) == set(chosen_policies((), world)[0])
    for name in set(policy_names()) - set(policy_names(world=world)):  # an older profile's
        assert f"left out: policy {name} needs" in proc.stderr
    assert all(keys <= set(r) for r in results["policies"].values())
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "latency_cdf.png", "policy_bars.png", "timeline_link.png"]  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,mbps\n0,5\n3,fast\n")
    proc = subprocess.run([*cmd[:7], str(bad)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "bad.csv:3" in proc.stderr


def test_evaluate_command_runs_one_learned_policy_alone(tmp_path):
    trace = tmp_path / "link.csv"
    trace.write_text("t_s,mbps\n0,20\n")
    out, page = tmp_path / "eval.json", tmp_path / "results.md"
    cmd = [sys.executable, "-m", "edgeml_ros.cli", "evaluate", "--workload", "fashion_mnist",
           "--scenario", str(trace), "--duration", "5", "--policy", "rl", "--json", str(out),
           "--markdown", str(page), "--plots", str(tmp_path / "plots")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert list(results["policies"]) == ["rl"] and results["rl_vs_baselines"] == {}
    assert "| rl |" in page.read_text()


def test_utility_weights_from_the_command_line(capsys):
    from edgeml_ros.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--utility-weights", "energy=0.1,latency=0.5"])
    assert args.utility_weights.energy == 0.1 and args.utility_weights.latency == 0.5
    assert args.utility_weights.accuracy == 1.0  # unnamed: the default
    for bad, why in (("speed=1", "name one of"), ("energy=lots", "not a number"),
                     ("energy=-1", "must be a finite number >= 0")):  # fmt: skip
        with pytest.raises(SystemExit):
            build_parser().parse_args(["evaluate", "--utility-weights", bad])
        assert why in capsys.readouterr().err
    train = ["policy", "train", "--agent", "ppo"]
    assert build_parser().parse_args(train).steady_share == 0.0
    assert build_parser().parse_args([*train, "--steady-share", "0.25"]).steady_share == 0.25
    with pytest.raises(SystemExit):
        build_parser().parse_args([*train, "--steady-share", "1.5"])
    assert "--steady-share: must be from 0 to 1, got 1.5" in capsys.readouterr().err


def test_the_authors_formulation_fits_a_model_of_any_exit_count(bundle):
    from edgeml_ros.core.energy import device_class
    from edgeml_ros.core.profiles import profile_model
    from edgeml_ros.core.train import split_frames

    x, y = split_frames(bundle.meta, "validation")
    profile, tables = profile_model(bundle, {"clean": x[:200]}, y[:200],
                                    device_class("jetson_nano"), runs=1,
                                    image_encodings=())  # fmt: skip
    config = SimConfig()
    tiny = World(profile, dict.fromkeys(CONDITIONS, tables["clean"]), config,
                 ModelCosts(profile, config))  # fmt: skip
    env = EdgeMLDDPGEnv(tiny)
    assert tiny.costs.num_exits == 3 and env.action_space.shape == (4,)  # 2 thresholds, cut, hold
    check_env(env, skip_render_check=True)
    plan, hold = env.tracker.plan(np.array([0.5, 1.0, 2.7, 5.0]), tiny.costs.num_blocks)
    assert plan.cut_point == 2 and hold == 6
    assert plan.exit_thresholds == pytest.approx((1 - 0.5 / math.log(10), 1 - 1 / math.log(10), 0))


def test_the_regime_map_scores_policies_against_the_best_static_configuration(world, tmp_path):
    from edgeml_ros.policy.regime import (
        cell_scenario,
        markdown_regime_map,
        plot_regime_map,
        regime_map,
    )

    cells = regime_map(world, ["edge_only", "cloud_only"], POLICY_DIR, rates_mbps=(0.04, 50.0),
                       slowdowns=(1.0, 16.0), duration_s=3.0, draws=1)  # fmt: skip
    assert len(cells) == 2 * 2 * 2
    for c in cells:  # both are static configurations too: at best as good as the best one
        assert all(r is None or r <= 1 + 1e-9 for r in c["of_best_static"].values()), c
    cloud = {(c["rate_mbps"], c["slowdown"], c["condition"]): c["utility"]["cloud_only"]
             for c in cells}  # fmt: skip
    assert cloud[(0.04, 1.0, "clean")] < cloud[(50.0, 1.0, "clean")]  # the link matters to it
    slow = [c for c in cells if c["slowdown"] == 16.0 and c["rate_mbps"] == 50.0]
    fast = [c for c in cells if c["slowdown"] == 1.0 and c["rate_mbps"] == 50.0]
    assert all(s["utility"]["edge_only"] < f["utility"]["edge_only"]  # the drone's speed too
               for s, f in zip(slow, fast, strict=True))  # fmt: skip
    for c in cells:  # what each ran most: all of it on the drone, or all of it offloaded
        assert c["main_plan"]["edge_only"]["cut_point"] == world.costs.num_blocks
        assert c["main_plan"]["cloud_only"]["cut_point"] == 0
        assert all(plan["share"] == 1.0 for plan in c["main_plan"].values())
    plot_regime_map(cells, "cloud_only", tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 0
    # the page: each policy's cells within 2 % of the best and its lowest, then every cell
    out = {"command": "edgeml evaluate --regime-map", "profile": "p.json", "draws": 1,
           "regime_map": cells}  # fmt: skip
    page = markdown_regime_map(out, {"cloud_only": tmp_path / "map.png"}, tmp_path)
    for name in ("edge_only", "cloud_only"):
        ratios = [c["of_best_static"][name] for c in cells if c["of_best_static"][name]]
        met = sum(r >= 0.98 for r in ratios)
        assert f"| {name} | {met} of 8 | {min(ratios):.3f} |" in page
    assert 0 < sum(r >= 0.98 for c in cells for r in c["of_best_static"].values() if r) < 16
    first = cells[0]
    assert (f"| 1x | 0.04 | clean | {first['best_static']['cut_point']}, "
            f"{first['best_static']['threshold']:g}, {first['best_static']['utility']:.3f} |"
            in page)  # fmt: skip
    assert "**" in page and "![cloud_only](map.png)" in page
    # each cell over draws of its frames: a policy's utility is its mean over them
    (two,) = regime_map(world, ["edge_only"], POLICY_DIR, rates_mbps=(0.04,), slowdowns=(1.0,),
                        conditions=("degraded",), duration_s=3.0, draws=2)  # fmt: skip
    edge_only = FixedPolicy("edge_only", no_exits(world, world.costs.num_blocks))
    each = [summarize(run_policy(world.slowed(1.0), edge_only,
                                 cell_scenario(0.04, "degraded", 3.0, seed)))["utility"]
            for seed in (0, 1)]  # fmt: skip
    assert each[0] != each[1] and two["utility"]["edge_only"] == pytest.approx(np.mean(each))


@pytest.fixture(scope="module")
def tiny_world(bundle):
    """The tiny model's world, with the frame measured in every image encoding (clean frames
    stand for every condition)."""
    from edgeml_ros.core.energy import device_class
    from edgeml_ros.core.profiles import profile_model
    from edgeml_ros.core.train import split_frames

    frames, y = split_frames(bundle.meta, "validation")
    profile, tables = profile_model(bundle, {"clean": frames[:300]}, y[:300],
                                    device_class("jetson_nano"), runs=1)  # fmt: skip
    for part in (*profile.blocks, *profile.exits):  # one timed run on a busy machine: noise
        part.latency_ms_median = part.server_latency_ms_median = 0.1
    config = SimConfig()
    return World(profile, dict.fromkeys(CONDITIONS, tables["clean"]), config,
                 ModelCosts(profile, config))  # fmt: skip


def test_a_frame_shipped_as_jpeg_costs_its_own_bytes_and_answers_as_decoded(tiny_world):
    sim = tiny_world.simulation(steady(2.0, 20.0))
    plan = ExecutionPlan(0, (NO_EARLY_EXIT, NO_EARLY_EXIT, 0.0), encoding="jpeg50")
    records = sim.run(plan, 40)
    sample = sim.sample[:40]
    jpeg = tiny_world.tables["clean"].images["jpeg50"]
    assert np.all(records.where == WHERE_BASE) and np.all(records.exit_index == 2)
    expected = jpeg.payload_bytes[sample] * 8 / 2e6 + 0.020 + tiny_world.costs.server_tail_s[0]
    np.testing.assert_allclose(records.latency_s, expected)
    assert len(np.unique(records.latency_s)) > 10  # every frame its own size
    labels = tiny_world.tables["clean"].labels[sample]
    np.testing.assert_array_equal(records.correct, jpeg.predictions[sample] == labels)
    np.testing.assert_array_equal(records.confidence, jpeg.confidence["max_prob"][sample])
    # the input tensor costs its bytes, and the model's answers on it
    tensor = tiny_world.simulation(steady(2.0, 20.0)).run(replace(plan, encoding="fp32"), 40)
    np.testing.assert_allclose(tensor.latency_s - expected,
                               (784 * 4 - jpeg.payload_bytes[sample]) * 8 / 2e6)  # fmt: skip
    final = tiny_world.tables["clean"].predictions[-1, sample]
    np.testing.assert_array_equal(tensor.correct, final == labels)


def test_frames_shipped_as_images_need_their_profile_data(world, tiny_world):
    plan = ExecutionPlan(0, (NO_EARLY_EXIT,) * 3 + (0.0,), encoding="png")
    with pytest.raises(ValueError, match="no data for image encoding png"):
        world.simulation(steady(2.0, 20.0)).run(plan, 5)  # an older profile's
    for name in ("cloud_png", "cloud_jpeg"):
        if name not in policy_names(world=world):
            with pytest.raises(ValueError, match=f"policy {name} needs the frame's measured"):
                named_policies(world, [name])
    with pytest.raises(ValueError, match="sim config encoding must be a tensor encoding"):
        SimConfig(encoding="png")
    policies = named_policies(tiny_world, ["cloud_png", "cloud_jpeg"])
    table = tiny_world.tables["clean"]
    plans = {name: p.decide(None).plan for name, p in policies.items()}
    assert plans["cloud_png"].encoding == "png" and plans["cloud_png"].cut_point == 0
    jpeg = plans["cloud_jpeg"].encoding
    assert jpeg == pick_image_encoding(table, ("jpeg90", "jpeg75", "jpeg50"), 0.01)
    assert table.image_accuracy(jpeg) >= table.exit_accuracy()[-1] - 0.01 or jpeg == "jpeg90"
    results, _ = evaluate(tiny_world, policies, [steady(2.0, 20.0)])
    assert results["policies"]["cloud_png"]["accuracy"] > 0.8


def test_the_jpeg_quality_is_the_smallest_within_the_accuracy_it_may_lose():
    labels = np.array([0, 1, 0, 1])
    final = np.array([[0, 1, 0, 1]])  # one exit: right on all four

    def image(right: int, nbytes: int) -> ImageExit:
        preds = np.where(np.arange(4) < right, labels, 1 - labels)
        return ImageExit(preds, {"max_prob": np.ones(4)}, np.full(4, nbytes))

    images = {"jpeg90": image(4, 900), "jpeg75": image(3, 600), "jpeg50": image(2, 400)}
    table = ExitTable(final, {"max_prob": np.ones((1, 4))}, labels, np.ones(1), 1.0, images)
    assert pick_image_encoding(table, tuple(images), 0.25) == "jpeg75"
    assert pick_image_encoding(table, tuple(images), 0.5) == "jpeg50"
    images["jpeg90"] = image(1, 900)
    assert pick_image_encoding(table, tuple(images), 0.01) == "jpeg75"  # none: the most accurate


def test_audits_leave_the_policies_that_do_not_ask_for_them_as_they_were(calibrated):
    scenario = resolve_scenario(TEST_SCENARIOS[0], duration_s=30.0)
    assert calibrated.config.audit_share == 0.02  # the share asked for by those that audit
    config = replace(calibrated.config, audit_share=0.0)
    silent = World(calibrated.profile, calibrated.tables, config, calibrated.costs)
    for name in ("branchynet", "spinn", "rl"):
        records = run_policy(calibrated, make_policy(name, calibrated), scenario)
        unaudited = run_policy(silent, make_policy(name, silent), scenario)
        totals = (float(np.sum(records.utility)), float(np.sum(records.energy_j)))
        assert totals == (float(np.sum(unaudited.utility)), float(np.sum(unaudited.energy_j)))
        assert not records.audited.any()


def test_audits_sample_the_early_exits_by_seed_and_cost_their_uplink(calibrated):
    costs = calibrated.costs
    share = 0.02
    plain_plan = ExecutionPlan(costs.num_blocks, (0.85,) * (costs.num_exits - 1) + (0.0,))
    plan = replace(plain_plan, audit_share=share)
    scenario = replace(steady(10.0, 20.0, 600.0, "low_light"), seed=5)
    sim = calibrated.simulation(scenario)
    audited = sim.run(plan, sim.frames)
    plain = calibrated.simulation(scenario).run(plain_plan, sim.frames)
    early = (audited.where == WHERE_DRONE) & (audited.exit_index < costs.num_exits - 1)
    assert not (audited.audited & ~early).any()  # only early exits on the drone
    n = int(early.sum())
    assert 0 < audited.audited.sum() <= share * n + 3 * math.sqrt(share * n)
    assert audited.audited.sum() >= share * n - 3 * math.sqrt(share * n)
    # agreement: the early answer against the final exit's on the same frame
    table = calibrated.tables["low_light"]
    answer = table.predictions[audited.exit_index, sim.sample]
    expected = audited.audited & (answer == table.predictions[-1, sim.sample])
    np.testing.assert_array_equal(audited.agrees, expected)
    assert not expected[audited.audited].all()  # at 0.85 some disagree in low light
    # the same draws for the same seed, others for another
    again = calibrated.simulation(scenario).run(plan, sim.frames)
    np.testing.assert_array_equal(again.audited, audited.audited)
    other = calibrated.simulation(replace(scenario, seed=6)).run(plan, sim.frames)
    assert not np.array_equal(other.audited, audited.audited)
    # an audit changes nothing but the energy (and with it the utility) of its frame
    for name in ("correct", "latency_s", "where", "exit_index", "confidence"):
        np.testing.assert_array_equal(getattr(audited, name), getattr(plain, name))
    extra = audited.energy_j - plain.energy_j
    assert np.all(extra[~audited.audited] == 0) and np.all(extra[audited.audited] > 0)
    # this profile has no PNG sizes (format 3): an audit costs the raw 32x32 input frame
    assert "png" not in calibrated.tables["clean"].images and costs.frame_bytes == 1024
    np.testing.assert_allclose(extra[audited.audited], costs.device.radio_tx_w
                               * costs.wire_bits(1024) / 10e6)  # fmt: skip
    # the observation counts the last window's audits
    sim = calibrated.simulation(scenario)
    records = sim.run(plan, 2000)
    obs = observe(sim, plan)
    assert obs.recent_auditable_frames == 2000 and obs.recent_audits == records.audited.sum() > 0
    agreeing = records.agrees[records.audited.astype(bool)]
    assert obs.recent_audit_agreement == pytest.approx(np.mean(agreeing))
    assert len(obs.vector(costs.num_blocks)) == 12  # not a feature of the learned policies
    # a link too slow to carry an audit within a frame period (1 KB and headers in 0.1 s)
    slow = calibrated.simulation(replace(scenario, trace=steady(0.04, 20.0).trace))
    records = slow.run(plan, 2000)
    assert not records.auditable.any() and not records.audited.any()
    assert observe(slow, plan).recent_auditable_frames == 0
    with pytest.raises(ValueError, match="audit_share must be in"):
        SimConfig(audit_share=1.5)


def test_an_audit_costs_its_frame_in_png_where_the_profile_measured_it():
    drone = World.load(workload(DEFAULT_WORKLOAD).profile)
    costs = drone.costs
    plan = ExecutionPlan(costs.num_blocks, (0.0,) * costs.num_exits, audit_share=0.2)
    scenario = replace(steady(20.0, 20.0, 60.0), seed=3)
    sim = drone.simulation(scenario)
    audited = sim.run(plan, sim.frames)
    plain = drone.simulation(scenario).run(replace(plan, audit_share=0.0), sim.frames)
    assert 0.1 < audited.audited.mean() < 0.3  # every frame answers early here
    png = drone.tables["clean"].images["png"].payload_bytes[sim.sample[audited.audited]]
    assert len(set(png)) > 1 and png.max() < costs.frame_bytes  # each frame's own size
    bits = np.array([costs.wire_bits(int(b)) for b in png])
    extra = (audited.energy_j - plain.energy_j)[audited.audited]
    np.testing.assert_allclose(extra, costs.device.radio_tx_w * bits / 20e6)


def test_apparate_moves_its_threshold_on_the_audits_it_gets(world):
    loop = ThresholdLoop(0.515, audit_share=0.02, budget=0.99)
    policy = Apparate(world.costs, loop)
    assert loop.min_audits == apparate_min_audits(0.99) == 70
    assert loop.levels[0] == 0.3 and loop.levels[-1] == 0.99

    def window(audits, disagreeing, frames=500):
        obs = Observation(10.0, 20.0, 0.0, 0.9, 0.9, 0.9, 0.0, 0.05, 10.0, 100.0, 5, 3, frames,
                          audits, 1.0 - disagreeing / audits if audits else 1.0)  # fmt: skip
        return policy.decide(obs).plan.exit_thresholds[0]

    assert window(0, 0) == 0.515 and window(10, 0) == 0.515  # too few to lower
    assert policy.decide(observe_empty()).plan.audit_share == 0.02  # every plan audits
    # 1 of 20 audits disagrees in 1500 frames: 50 frames estimated, 96.7 % agreement, but 99.05 %
    # should the next 50 audits (3750 frames) agree: wait
    assert window(10, 1) == 0.515
    assert window(10, 1) == 0.55  # 2 of 30 in 2000 frames: 95 %, 97.9 % at 70: raise now
    assert window(69, 0, 4000) == 0.55 and window(1, 0, 10) == 0.515  # 70 agreeing: lower
    policy.reset()
    assert loop.threshold == 0.515
    np.testing.assert_allclose(loop.features(), [0.515, 1.0, 0.0])
    # 3 of 80 audits disagree in 6000 frames: 150 frames estimated, 97.5 % agreement
    assert window(80, 3, 6000) == 0.55
    window(35, 0)  # the move cleared them: 35 agreeing audits since
    np.testing.assert_allclose(loop.features(), [0.55, 1.0, 0.5])


def test_the_threshold_loop_keeps_the_drift_requirement(calibrated):
    budget = window_agreement_budget(10.0)
    # 100-frame windows disagreeing independently at 1 - budget: more than the one frame the
    # requirement allows in 5 % of them
    over = np.mean(np.random.default_rng(0).binomial(100, 1 - budget, 400_000) > 1)
    assert over == pytest.approx(0.05, abs=0.004)
    assert window_agreement_budget(5.0) == pytest.approx(1 + math.log(0.95) / 50)  # none allowed
    table = calibrated.tables["clean"]
    samples = np.arange(len(table.labels))

    def agreement(threshold):
        taken = table.exit_taken([threshold] * len(table.cost))
        return np.mean(table.predictions[taken, samples] == table.predictions[-1])

    start = pick_agreeing_threshold(table, budget)
    assert agreement(start) >= budget > agreement(start - 0.005)
    # on the drifting test scenarios, apparate keeps it with at most 2 % of frames audited;
    # BranchyNet's threshold (1 point on the validation frames, on average) does not
    policies = named_policies(calibrated, ["apparate", "branchynet"])
    scores = {name: [summarize(run_policy(calibrated, policy, resolve_scenario(scenario)))
                     for scenario in TEST_SCENARIOS[::3]]
              for name, policy in policies.items()}  # fmt: skip
    near = {name: np.mean([s["windows_near_full_model"] for s in runs])
            for name, runs in scores.items()}  # fmt: skip
    assert near["apparate"] >= 0.95 > 0.7 > near["branchynet"]
    assert 0 < max(s["audit_rate"] for s in scores["apparate"]) <= 0.02


def observe_empty():
    return Observation(10.0, 20.0, 0.0, 0.9, 1.0, 0.0, 0.0, 0.0, 10.0, 100.0, 5, 0)


def test_apparate_keeps_agreement_closer_to_its_budget_than_branchynet_when_light_fails(
    calibrated,
):

    trace = Trace(np.array([0.0]), np.array([10.0]), np.array([20.0]), "steady")
    scenario = Scenario("dusk", trace, 1200.0, ((0.0, "clean"), (600.0, "low_light")), 0.9)
    policies = named_policies(calibrated, ["branchynet", "apparate"])
    start = policies["branchynet"].decide(None).plan.exit_thresholds[0]
    sim = calibrated.simulation(scenario)
    final = np.array([calibrated.tables[CONDITIONS[c]].predictions[-1, s]
                      for c, s in zip(sim.condition, sim.sample, strict=True)])  # fmt: skip
    agreement, records = {}, {}
    for name, policy in policies.items():
        r = records[name] = run_policy(calibrated, policy, scenario)
        answer = np.array([calibrated.tables[CONDITIONS[c]].predictions[e, s]
                           for c, e, s in zip(sim.condition, r.exit_index, sim.sample,
                                              strict=True)])  # fmt: skip
        dark = r.t_s >= 600.0
        agreement[name] = float(np.mean(answer[dark] == final[dark]))
    dark = records["apparate"].t_s >= 600.0
    assert agreement["branchynet"] < 0.93  # its fixed threshold, tuned on clean images
    assert agreement["apparate"] > 0.97 and agreement["apparate"] > agreement["branchynet"] + 0.04
    assert records["apparate"].threshold[dark].min() > start  # raised, never back to the start
    accuracy = {name: np.mean(r.correct[dark]) for name, r in records.items()}
    assert accuracy["apparate"] > accuracy["branchynet"]
    assert records["apparate"].audited.sum() > 100 and not records["branchynet"].audited.any()


def synthetic_table(actions: int) -> UtilityTable:
    """Two drones (1x, 16x) told apart by latency, on one RTT (35 ms); action 13 best on the fast
    one, 17 on the slow one, 18 better still there but costly in energy (all at cut 1)."""
    shape = (2, 1, 2, len(CONDITIONS), actions)
    gain, energy = np.zeros(shape), np.zeros(shape)
    gain[..., 0, :, 13], gain[..., 1, :, 17] = 0.5, 0.5
    gain[..., 1, :, 18], energy[..., 1, :, 18] = 0.55, 0.1
    mean = np.zeros((*shape, 3))
    mean[:, :, 0, ..., 0], mean[:, :, 1, ..., 0] = 0.2, 2.0  # latency over the deadline
    mean[..., 1], mean[..., 2] = 0.8, 0.5  # confidence, early exits
    covariance = np.broadcast_to(0.05**2 * np.eye(3), (*shape, 3, 3)).copy()
    return UtilityTable(np.array([1.0, 10.0]), np.array([35.0]), np.array([1.0, 16.0]),
                        tuple(CONDITIONS), gain, energy, mean, covariance)  # fmt: skip


def test_the_planner_reads_its_table_at_the_links_rate_and_rtt(world):
    table = synthetic_table(num_actions(world.costs.num_blocks))
    far = replace(table, **{name: getattr(table, name).copy() for name in ("gain", "energy")})
    far.gain[..., 13] = 0.0  # on a long round trip, action 13 (an offload, say) earns nothing
    both = replace(table, rtts_ms=np.array([10.0, 60.0]), **{
        name: np.concatenate([getattr(table, name), getattr(far, name)], axis=1)
        for name in ("gain", "energy", "telemetry_mean", "telemetry_covariance")
    })  # fmt: skip
    for rtt_ms, expected in ((5.0, 0.5), (10.0, 0.5), (22.5, 0.375), (60.0, 0.0), (90.0, 0.0)):
        here = both.at_link(3.0, rtt_ms)  # between the rates too: they agree here
        assert here.gain.shape[:2] == (1, 1)
        assert here.gain[0, 0, 0, 0, 13] == pytest.approx(expected)
    planner = Planner(both, world)
    fast = replace(observe_empty(), recent_latency_ratio=0.2, recent_confidence=0.8,
                   recent_early_exit_rate=0.5, battery_soc=1.0)  # fmt: skip
    near = action_index(*plan_action(planner.decide(replace(fast, rtt_ms=10.0)).plan,
                                     world.costs.num_blocks))  # fmt: skip
    assert near == 13
    assert planner.expected_utility(replace(fast, rtt_ms=60.0))[13] == pytest.approx(0.0)


def test_the_planner_plans_for_the_drone_its_telemetry_shows_and_the_battery(world):
    planner = Planner(synthetic_table(num_actions(world.costs.num_blocks)), world)
    slow = replace(observe_empty(), recent_latency_ratio=2.0, recent_confidence=0.8,
                   recent_early_exit_rate=0.5, battery_soc=1.0)  # fmt: skip

    def settled(obs: Observation) -> int:
        planner.reset()
        for _ in range(5):
            plan = planner.decide(obs).plan
        return action_index(*plan_action(plan, world.costs.num_blocks))

    # the belief's slowdowns: the table's two, and three between them (log-spaced)
    assert planner.table.slowdowns == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0])
    latency = planner.table.telemetry_mean[0, 0, :, 0, 0, 0]  # interpolated in log slowdown
    assert latency == pytest.approx([0.2, 0.65, 1.1, 1.55, 2.0])
    assert settled(slow) == 18  # the slow drone's best, the battery full
    assert planner.belief[-1].sum() > 0.99
    assert settled(replace(slow, battery_soc=0.2)) == 17  # its energy now weighs more
    assert settled(replace(slow, recent_latency_ratio=0.2)) == 13  # a fast drone
    assert planner.belief[0].sum() > 0.99
    # a drone halfway (in log slowdown) is read as the 4x between the table's drones
    settled(replace(slow, recent_latency_ratio=1.1))
    assert planner.belief[2].sum() > 0.99
    # a window without frames says nothing: the belief stays near the prior
    planner.reset()
    planner.decide(replace(slow, recent_latency_ratio=0.0))
    assert planner.belief.sum(axis=1) == pytest.approx(np.full(5, 0.2))


def test_the_planner_counts_telemetry_that_moves_together_once(world):
    # two conditions of the fast drone told apart by one sd of latency and of early exits, which
    # move together (correlation -0.95: a window of more early exits is one of less latency)
    table = synthetic_table(num_actions(world.costs.num_blocks))
    clean, dark = CONDITIONS.index("clean"), CONDITIONS.index("low_light")
    table.telemetry_mean[:, :, :, dark, :, 0] += 0.05
    table.telemetry_mean[:, :, :, dark, :, 2] -= 0.05
    table.telemetry_covariance[..., 0, 2] = table.telemetry_covariance[..., 2, 0] = -0.95 * 0.05**2
    planner = Planner(table, world)
    prior = planner.belief.copy()
    dark_window = replace(observe_empty(), recent_latency_ratio=0.25, recent_confidence=0.8,
                          recent_early_exit_rate=0.45, battery_soc=1.0)  # fmt: skip
    planner.decide(dark_window)
    gained = planner.belief[0] / prior[0]
    odds = gained[dark] / gained[clean]
    shift = np.array([0.05, 0.0, -0.05])
    covariance = table.telemetry_covariance[0, 0, 0, 0, 0] + np.diag(TELEMETRY_SPREAD_FLOOR**2)
    assert np.log(odds) == pytest.approx(0.5 * shift @ np.linalg.solve(covariance, shift))
    # read as independent, the two features would have said the same thing twice
    independent = np.diag(np.diag(covariance))
    assert np.log(odds) < 0.7 * 0.5 * shift @ np.linalg.solve(independent, shift)


def test_the_planner_reads_the_drones_speed_and_spends_a_window_to_read_it_again(world):
    table = synthetic_table(num_actions(world.costs.num_blocks))
    table.gain[:, :, 0, :, 3] = 0.6  # the fast drone's best: cut 0 (action 3)
    planner = Planner(table, world)
    cut_point = world.costs.num_blocks  # (the observation's plan in force: it reads no telemetry)
    unread = replace(observe_empty(), recent_latency_ratio=0.0, battery_soc=1.0,
                     cut_point=cut_point)  # fmt: skip

    def cut(obs: Observation) -> int:
        return planner.decide(obs).plan.cut_point

    # the measured compute ratio alone places the drone: 4x, between the table's drones
    planner.decide(replace(unread, recent_compute_ratio=4.2))
    assert planner.belief[2].sum() > 0.95
    planner.decide(replace(unread, recent_compute_ratio=1.0))
    assert planner.belief[0].sum() > 0.95
    # the fast drone's best is cut 0, where the drone computes nothing; its speed unread from
    # the start, the planner first runs the best plan that computes on the drone
    planner.reset()
    assert cut(unread) > 0
    assert cut(replace(unread, recent_compute_ratio=1.0)) == 0
    cuts = [cut(unread) for _ in range(SPEED_PROBE_WINDOWS)]
    assert cuts[:-1] == [0] * (SPEED_PROBE_WINDOWS - 1) and cuts[-1] > 0


def test_the_simulator_shows_the_drones_compute_ratio(world):
    blocks, exits = world.costs.num_blocks, world.costs.num_exits
    local = ExecutionPlan(blocks, shared_thresholds(0.5, exits))
    for slowdown in (1.0, 6.0):
        sim = world.slowed(slowdown).simulation(steady(20.0, 5.0))
        sim.run(local, 10)
        ratio = observe(sim, local).recent_compute_ratio
        assert ratio == pytest.approx(slowdown, rel=0.1)
    offload = ExecutionPlan(0, shared_thresholds(2.0, exits))
    sim.run(offload, 10)  # every frame offloaded, every reply in time: nothing computed
    assert observe(sim, offload).recent_compute_ratio == 0.0


def test_the_planner_tabulates_steady_worlds_and_reads_a_slow_drone(world, tmp_path, monkeypatch):
    grid = partial(tabulate, rates_mbps=(0.5, 20.0), rtts_ms=(20.0, 50.0), slowdowns=(1.0, 16.0),
                   duration_s=3.0)  # fmt: skip
    monkeypatch.setattr("edgeml_ros.policy.agents.tabulate", grid)
    meta = train_agent(world, "planner", tmp_path, "plan", command="test")
    assert meta["rates_mbps"] == [0.5, 20.0] and meta["slowdowns"] == [1.0, 16.0]
    assert meta["rtts_ms"] == [20.0, 50.0]
    assert {p.name for p in tmp_path.iterdir()} == {"plan.npz", "plan.json"}
    policy = load_policy(tmp_path / "plan", world)
    assert isinstance(policy, Planner) and policy.name == "plan"
    for index, slowdown in ((0, 1.0), (-1, 16.0)):
        records = run_policy(world.slowed(slowdown), policy, steady(5.0, 20.0))
        assert summarize(records)["frames"] == 100
        assert policy.belief[index].sum() > 0.9, (slowdown, policy.belief)
    with pytest.raises(ValueError, match="no training steps"):
        train_agent(world, "planner", tmp_path, "plan", timesteps=10)
    np.savez(tmp_path / "plan.npz", rates_mbps=np.ones(2))
    with pytest.raises(PolicyFileError, match=r"planner table .*unreadable"):
        load_policy(tmp_path / "plan", world)
