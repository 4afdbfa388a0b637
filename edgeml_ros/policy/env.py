"""Gymnasium environments over the simulator: ours, and the EdgeML authors' formulation.

`EdgeMLEnv`: one step is one decision window (`SimConfig.window_s`) of frames. The observation
is `Observation.vector`, the action a discrete (cut point, threshold level) pair (see
`policy.observation` for why discrete), the reward the mean utility of the window's frames
(`UtilityWeights`). An episode is one scenario, drawn from the training split at reset.

`EdgeMLLoopEnv`: the same windows, but the action is a route only (a cut point with the tensor
encoding, or the camera frame itself at cut 0 in an image encoding the profile measured), and a
`ThresholdLoop` keeps the exit threshold from audits; the observation adds the loop's state
(`loop_vector`).

Both environments end an episode when its scenario ends: a time limit, so the last step is
truncated, never terminated (the simulated drone has no terminal state; a flat battery is
scored, not an end). Each step's info holds the facts of its frames (`step_info`).

`EdgeMLDDPGEnv` reproduces the formulation of the EdgeML authors' public code
(github.com/Kyrie-Zhao/EdgeML, RL_AGENT/ddpg.py and environment.py):
- state [bandwidth, accuracy, latency, power], averaged over the frames the last action was held
  (no normalization), then averaged with the two states before;
- action in [0, 1]^3 x [0, N] x [0, 5]: three entropy thresholds, the cut point (truncated to
  an integer) and the frames to hold the action (truncated, plus one: 1 to 6 frames);
- reward, also averaged over the last three: -2 when latency > 0.1 s and power > 1.5;
  -(2/pi) arctan(excess) when one of them is over (the absolute excess, s or W); otherwise
  ((mean exit index + 1) / 4)^2 over the frames that met both limits (0 if none did).
Their model had four exits and ten classes; for any other model there is one threshold per
early exit, and the exit index is scaled by the number of exits ((index + 1) / exits).
Their power was the Jetson GPU load from tegrastats (0-10); here it is the modelled power in W
of the frames held (energy model, not a measurement). Their entropy is the natural-log entropy
of the softmax, a frame exits when it is below the threshold; the simulator's entropy
confidence is 1 - H / ln(classes), so the threshold maps to 1 - t / ln(classes).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import ClassVar

import gymnasium as gym
import numpy as np

from edgeml_ros.core.codec import IMAGE_ENCODINGS
from edgeml_ros.core.plan import ExecutionPlan, shared_thresholds
from edgeml_ros.policy.baselines import ThresholdLoop, threshold_loop
from edgeml_ros.policy.observation import (
    OBSERVATION_BOUND,
    OBSERVATION_SIZE,
    Decision,
    Observation,
    action_plan,
    num_actions,
    observe,
)
from edgeml_ros.policy.scenarios import train_scenario
from edgeml_ros.policy.sim import WHERE_FALLBACK, FrameRecords, Scenario, Simulation
from edgeml_ros.policy.world import World

ScenarioSource = Callable[[np.random.Generator], Scenario]


class EdgeMLEnv(gym.Env):
    """Decision windows of a simulated drone; discrete (cut, threshold level) actions."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(
        self, world: World, scenarios: ScenarioSource = train_scenario, reward_draws: int = 0
    ) -> None:
        super().__init__()
        self.world, self.scenarios, self.reward_draws = world, scenarios, reward_draws
        costs = world.costs
        self.action_space = gym.spaces.Discrete(num_actions(costs.num_blocks))
        self.observation_space = gym.spaces.Box(
            -OBSERVATION_BOUND, OBSERVATION_BOUND, shape=(OBSERVATION_SIZE,), dtype=np.float32
        )
        self.sim: Simulation | None = None
        self.plan: ExecutionPlan | None = None

    def _obs(self) -> np.ndarray:
        return observe(self.sim, self.plan).vector(self.world.costs.num_blocks)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a scenario from the training split (or `options["scenario"]`)."""
        super().reset(seed=seed)
        scenario = (options or {}).get("scenario") or self.scenarios(self.np_random)
        self.sim = self.world.simulation(scenario)
        self.plan = None
        return self._obs(), {"scenario": scenario.name}

    def _plan(self, action: int) -> ExecutionPlan:
        costs = self.world.costs
        return action_plan(action, costs.num_blocks, costs.num_exits)

    def step(self, action):
        """Run one window under the action's plan (truncated once the scenario is over).

        The reward is the window's mean utility, averaged with that of `reward_draws` previews
        of the window on other draws of frames (the same state, times, conditions, link and
        drone): the same expectation, less of the noise of which frames came.
        """
        self.plan, frames = self._plan(int(action)), self.world.config.window_frames
        redrawn = [self._redrawn_utility(frames) for _ in range(self.reward_draws)]
        records = self.sim.run(self.plan, frames)
        reward = float(np.mean([np.mean(records.utility), *redrawn]))
        return self._obs(), reward, False, self.sim.done, step_info(records, self.plan)

    def _redrawn_utility(self, frames: int) -> float:
        with self.sim.frames_redrawn(self.np_random):
            return float(np.mean(self.sim.preview(self.plan, frames).utility))


Route = tuple[int, str]  # (cut point, encoding)


def loop_routes(world: World) -> list[Route]:
    """A loop policy's actions: routes of the frame's features to the final exit.

    Each cut point with the simulator's tensor encoding, then cut 0 with each image encoding
    the profile measured (the camera frame itself).
    """
    images = [e for e in IMAGE_ENCODINGS if e in world.tables["clean"].images]
    tensors = [(cut, world.config.encoding) for cut in range(world.costs.num_blocks + 1)]
    return tensors + [(0, encoding) for encoding in images]


def route_plan(world: World, route: Route, loop: ThresholdLoop) -> ExecutionPlan:
    """The plan of a route, at the loop's threshold, auditing at the loop's share."""
    cut, encoding = route
    thresholds = shared_thresholds(loop.threshold, world.costs.num_exits)
    return ExecutionPlan(cut, thresholds, encoding=encoding, audit_share=loop.audit_share)


def loop_vector(obs: Observation, loop: ThresholdLoop, num_blocks: int) -> np.ndarray:
    """A loop policy's features: the observation's, then the loop's state."""
    return np.concatenate([obs.vector(num_blocks), loop.features()])


LOOP_OBSERVATION_SIZE = OBSERVATION_SIZE + 3


class EdgeMLLoopEnv(EdgeMLEnv):
    """Decision windows where the agent picks the route and a ThresholdLoop the threshold."""

    def __init__(
        self, world: World, scenarios: ScenarioSource = train_scenario, reward_draws: int = 0
    ) -> None:
        super().__init__(world, scenarios, reward_draws)
        self.routes = loop_routes(world)
        self.loop = threshold_loop(world.tables, world.config.audit_share, world.config.fps)
        self.action_space = gym.spaces.Discrete(len(self.routes))
        self.observation_space = gym.spaces.Box(-OBSERVATION_BOUND, OBSERVATION_BOUND,
                                                shape=(LOOP_OBSERVATION_SIZE,),
                                                dtype=np.float32)  # fmt: skip
        self._seen: Observation | None = None

    def _obs(self) -> np.ndarray:
        self._seen = observe(self.sim, self.plan)
        return loop_vector(self._seen, self.loop, self.world.costs.num_blocks)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a scenario with the loop at its start threshold."""
        self.loop.reset()
        return super().reset(seed=seed, options=options)

    def _plan(self, action: int) -> ExecutionPlan:
        self.loop.update(self._seen)  # the last window's audits, as the agent saw them
        return route_plan(self.world, self.routes[action], self.loop)


def step_info(records: FrameRecords, plan: ExecutionPlan) -> dict:
    """What one step's frames did under `plan`, for monitoring (the agent does not see it)."""
    return {
        "frames": len(records.t_s),
        "accuracy": float(np.mean(records.correct)),
        "latency_ms_mean": 1000.0 * float(np.mean(records.latency_s)),
        "energy_j": float(np.sum(records.energy_j)),
        "deadline_misses": int(np.sum(records.missed)),
        "fallbacks": int(np.sum(records.where == WHERE_FALLBACK)),
        "plan": plan,
    }


# The authors' constants (environment.py): latency limit (s), power limit, held frames.
DDPG_LATENCY_LIMIT_S = 0.1
DDPG_POWER_LIMIT = 1.5
DDPG_MAX_HOLD = 5
DDPG_SMOOTHING = 3


class EdgeMLDDPGState:
    """The authors' state and reward bookkeeping, shared by the env and the live policy."""

    def __init__(self, num_exits: int, num_classes: int, fps: float) -> None:
        self.num_exits, self.num_classes, self.fps = num_exits, num_classes, fps
        self.states: deque[np.ndarray] = deque(maxlen=DDPG_SMOOTHING)
        self.rewards: deque[float] = deque(maxlen=DDPG_SMOOTHING)

    def reset(self) -> np.ndarray:
        """Forget the history; the first state is all zeros."""
        self.states.clear()
        self.rewards.clear()
        return np.zeros(4, dtype=np.float32)

    def update(self, records: FrameRecords, bandwidth_mbps: float) -> tuple[np.ndarray, float]:
        """Smoothed state and reward after the frames of one held action."""
        power = records.energy_j * self.fps  # W over each frame period
        latency = records.latency_s
        state = np.array(
            [bandwidth_mbps, np.mean(records.correct), np.mean(latency), np.mean(power)],
            dtype=np.float32,
        )
        met = (latency <= DDPG_LATENCY_LIMIT_S) & (power <= DDPG_POWER_LIMIT)
        out_point = float(np.mean(records.exit_index[met])) if met.any() else 0.0
        self.states.append(state)
        self.rewards.append(
            ddpg_reward(float(state[2]), float(state[3]), out_point, self.num_exits)
        )
        return np.mean(self.states, axis=0).astype(np.float32), float(np.mean(self.rewards))

    def plan(self, action: np.ndarray, num_blocks: int) -> tuple[ExecutionPlan, int]:
        """The plan and held frames of a raw action."""
        ln_classes = math.log(self.num_classes)
        thresholds = tuple(1.0 - float(t) / ln_classes for t in action[: self.num_exits - 1])
        cut = min(int(action[self.num_exits - 1]), num_blocks)
        hold = int(action[self.num_exits]) + 1
        return ExecutionPlan(cut, (*thresholds, 0.0), "entropy"), hold


def ddpg_reward(latency_s: float, power: float, mean_exit_index: float, num_exits: int) -> float:
    """The authors' piecewise reward (environment.py, calculate_p), for `num_exits` exits."""
    late, hot = latency_s > DDPG_LATENCY_LIMIT_S, power > DDPG_POWER_LIMIT
    if late and hot:
        return -2.0
    if late:
        return -(2 / math.pi) * math.atan(latency_s - DDPG_LATENCY_LIMIT_S)
    if hot:
        return -(2 / math.pi) * math.atan(power - DDPG_POWER_LIMIT)
    return ((mean_exit_index + 1) / num_exits) ** 2


class EdgeMLDDPGEnv(gym.Env):
    """The EdgeML authors' DDPG formulation over the same simulator (see the module doc)."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, world: World, scenarios: ScenarioSource = train_scenario) -> None:
        super().__init__()
        self.world, self.scenarios = world, scenarios
        costs = world.costs
        early = costs.num_exits - 1  # one threshold per early exit
        high = np.array([1.0] * early + [costs.num_blocks, DDPG_MAX_HOLD], dtype=np.float32)
        self.action_space = gym.spaces.Box(np.zeros(early + 2, np.float32), high, dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.tracker = EdgeMLDDPGState(costs.num_exits, world.profile.num_classes,
                                       world.config.fps)  # fmt: skip
        self.sim: Simulation | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a scenario from the training split."""
        super().reset(seed=seed)
        scenario = (options or {}).get("scenario") or self.scenarios(self.np_random)
        self.sim = self.world.simulation(scenario)
        return self.tracker.reset(), {"scenario": scenario.name}

    def step(self, action):
        """Hold the action's plan for its frames (truncated once the scenario is over)."""
        plan, hold = self.tracker.plan(np.asarray(action), self.world.costs.num_blocks)
        bandwidth = self.sim.link_estimate()[0]
        records = self.sim.run(plan, hold)
        state, reward = self.tracker.update(records, bandwidth)
        return state, reward, False, self.sim.done, step_info(records, plan)


class EdgeMLDDPGPolicy:
    """A trained EdgeML-DDPG actor driving the simulator (or the drone) as the authors' did."""

    name = "edgeml_ddpg"

    def __init__(self, model, num_blocks: int, num_exits: int, num_classes: int, fps: float):
        self.model, self.num_blocks = model, num_blocks
        self.tracker = EdgeMLDDPGState(num_exits, num_classes, fps)
        self.state = self.tracker.reset()
        self._seen = 0

    def reset(self) -> None:
        """Start from the zero state."""
        self.state = self.tracker.reset()
        self._seen = 0

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """Update the state from the frames since the last decision, then act."""
        if sim is not None and len(sim.history) > self._seen:
            self._seen = len(sim.history)
            self.state, _ = self.tracker.update(sim.history[-1], obs.bandwidth_mbps)
        action, _ = self.model.predict(self.state, deterministic=True)
        plan, hold = self.tracker.plan(action, self.num_blocks)
        return Decision(plan, hold)
