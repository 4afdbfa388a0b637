"""Learned controller policies: training with stable-baselines3, saving, loading, deciding.

- `ppo` and `dqn`: `EdgeMLEnv` (discrete actions), observations normalized by `VecNormalize`,
  whose statistics are saved beside the policy and loaded frozen. Discount 0.5: an action
  mostly shapes its own window (queues and battery carry a little over). PPO: 4 environments,
  rollouts of 256 steps, 400,000 steps; DQN: 300,000 steps; both 64x64 MLPs.
- `ppo_loop`: PPO as above on `EdgeMLLoopEnv`: it picks the route (cut point and encoding), a
  threshold loop on audits keeps the exit threshold, and its state is in the observation.
- `edgeml_ddpg`: the EdgeML authors' formulation (`EdgeMLDDPGEnv`) with their hyperparameters
  (RL_AGENT/ddpg.py): one hidden layer of 300 units for actor and critic, RMSprop at 1e-4 for
  both, gamma 0.9, tau 0.01, a 10,000-transition buffer, batches of 64, Gaussian exploration
  noise of 0.1 x the action bound, 5,000 steps, no normalization.
- `planner`: no learning either: every action's utility tabulated in steady simulated worlds,
  read under a belief about the drone's speed and the inputs' condition that the telemetry
  updates (`policy.planner`); saved as `NAME.npz` with `NAME.json`.
- `static`: no learning, a tuned fixed choice: the one (cut point, threshold level) action of
  best mean utility, each held through the same training scenarios, as many as make up the
  learned policies' budget of simulated windows (`tune_static`). It is the strongest static
  baseline: BranchyNet's threshold is tuned for accuracy on validation frames, this one for the
  utility on the scenarios the learned policies train on.

A saved policy is `NAME.zip` (SB3), `NAME_vecnormalize.pkl` (PPO/DQN) and `NAME.json` (for
`static`, only that, with its action; for `planner`, with `NAME.npz`, its table): the command
that made it, the model it was trained for (model id and weights digest) and the simulator
settings. Loading refuses a policy trained for other weights.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import DDPG, DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from tqdm import tqdm

from edgeml_ros.core.plan import ExecutionPlan
from edgeml_ros.policy.baselines import FixedPolicy, threshold_loop
from edgeml_ros.policy.env import (
    EdgeMLDDPGEnv,
    EdgeMLDDPGPolicy,
    EdgeMLEnv,
    EdgeMLLoopEnv,
    ScenarioSource,
    loop_routes,
    loop_vector,
    route_plan,
)
from edgeml_ros.policy.evaluate import run_policy, summarize
from edgeml_ros.policy.observation import Decision, Observation, action_plan, num_actions
from edgeml_ros.policy.planner import Planner, UtilityTable, tabulate
from edgeml_ros.policy.scenarios import SCENARIO_DURATION_S, train_scenario
from edgeml_ros.policy.sim import Simulation
from edgeml_ros.policy.world import World

AGENTS = ("ppo", "dqn", "edgeml_ddpg", "ppo_loop", "static", "planner")
REDRAWN_REWARD_AGENTS = ("ppo", "dqn", "ppo_loop")  # those on EdgeMLEnv's windows
SAVED_AS = {"static": "json", "planner": "npz"}  # the file that holds each agent (others: zip)
# A feature whose variance in training stayed below this (VecNormalize's epsilon) never varied.
UNVARIED_VARIANCE = 1e-8
DEFAULT_TIMESTEPS = {"ppo": 400_000, "dqn": 300_000, "edgeml_ddpg": 5_000, "ppo_loop": 400_000,
                     "static": 400_000}  # fmt: skip


class PolicyFileError(ValueError):
    """A saved policy that is missing, broken, or made for another model."""


class _ProgressBar(BaseCallback):
    """tqdm progress over environment steps, with the recent mean episode reward."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.total, self.desc = total, desc

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, desc=self.desc, unit="step")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        episodes = self.model.ep_info_buffer
        if episodes and self.n_calls % 200 == 0:
            self.bar.set_postfix(episode_reward=f"{np.mean([e['r'] for e in episodes]):.2f}")
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def train_agent(
    world: World,
    agent: str,
    out_dir: Path,
    name: str,
    timesteps: int | None = None,
    seed: int = 0,
    command: str = "",
    steady_share: float = 0.0,
    reward_draws: int = 0,
) -> dict:
    """Train one agent in the simulator and save it as `out_dir/name.*`; returns its metadata.

    `steady_share` of the training episodes are steady (`scenarios.random_steady_scenario`);
    `reward_draws` other draws of frames join each window's reward (`EdgeMLEnv.step`; ppo, dqn
    and ppo_loop).
    """
    if agent not in AGENTS:
        raise ValueError(f"agent {agent!r} unknown; known: {', '.join(AGENTS)}")
    if reward_draws and agent not in REDRAWN_REWARD_AGENTS:
        raise ValueError(f"reward draws apply to {', '.join(REDRAWN_REWARD_AGENTS)}, "
                         f"not {agent}")  # fmt: skip
    if agent == "planner" and (timesteps or steady_share):
        raise ValueError("the planner takes no training steps or scenarios: it tabulates a grid "
                         "of steady worlds (policy.planner)")  # fmt: skip
    timesteps = timesteps or DEFAULT_TIMESTEPS.get(agent)
    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    scenarios = partial(train_scenario, steady_share=steady_share)
    tuned = tune_static(world, timesteps, seed, scenarios) if agent == "static" else {}
    if agent == "planner":
        table = tabulate(world, seed=seed)
        table.save(out_dir / f"{name}.npz")
        tuned = table.grid()
    elif agent != "static":
        _learn(world, agent, out_dir / name, timesteps, seed, scenarios, reward_draws)
    meta = {
        "agent": agent,
        "timesteps": timesteps,
        "seed": seed,
        "steady_share": steady_share,
        "reward_draws": reward_draws,
        "command": command,
        "train_seconds": round(time.time() - started, 1),
        "model_id": world.profile.model_id,
        "weights_digest": world.profile.weights_digest,
        "sim_config": asdict(world.config),
        **tuned,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def _learn(world: World, agent: str, path: Path, timesteps: int, seed: int,
           scenarios: ScenarioSource, reward_draws: int) -> None:  # fmt: skip
    """Train a stable-baselines3 agent; save it (and its normalization) as `path`.*."""
    vecnorm = None
    if agent == "edgeml_ddpg":
        env = Monitor(EdgeMLDDPGEnv(world, scenarios))
        bound = env.action_space.high - env.action_space.low
        # the authors' noise is 0.1 x the bound; SB3 adds noise to actions scaled to [-1, 1]
        noise = NormalActionNoise(np.zeros(len(bound)), np.full(len(bound), 0.2))
        model = DDPG(
            "MlpPolicy", env, learning_rate=1e-4, buffer_size=10_000, learning_starts=2,
            batch_size=64, tau=0.01, gamma=0.9, action_noise=noise, seed=seed, device="cpu",
            policy_kwargs={"net_arch": [300], "optimizer_class": torch.optim.RMSprop},
        )  # fmt: skip
    else:
        on_policy = agent in ("ppo", "ppo_loop")
        env_type = EdgeMLLoopEnv if agent == "ppo_loop" else EdgeMLEnv
        envs = 4 if on_policy else 1
        venv = DummyVecEnv(
            [lambda: Monitor(env_type(world, scenarios, reward_draws)) for _ in range(envs)]
        )
        venv.seed(seed)
        vecnorm = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=0.5)
        common = {"seed": seed, "device": "cpu", "gamma": 0.5,
                  "policy_kwargs": {"net_arch": [64, 64]}}  # fmt: skip
        if on_policy:
            model = PPO("MlpPolicy", vecnorm, n_steps=256, batch_size=256, learning_rate=3e-4,
                        ent_coef=0.01, **common)  # fmt: skip
        else:
            model = DQN("MlpPolicy", vecnorm, learning_rate=5e-4, buffer_size=100_000,
                        learning_starts=2_000, target_update_interval=1_000,
                        exploration_fraction=0.3, train_freq=4, **common)  # fmt: skip
    model.learn(timesteps, callback=_ProgressBar(timesteps, f"train {agent}"))
    model.save(f"{path}.zip")
    if vecnorm is not None:
        vecnorm.save(f"{path}_vecnormalize.pkl")


def tune_static(
    world: World, timesteps: int, seed: int, draw: ScenarioSource = train_scenario
) -> dict:
    """The (cut point, threshold level) action of best mean utility on training scenarios.

    Every action is held through the same scenarios, drawn as training draws them (`draw`), as
    many as make up `timesteps` decision windows over all actions.
    """
    costs, rng = world.costs, np.random.default_rng(seed)
    actions = num_actions(costs.num_blocks)
    windows = round(SCENARIO_DURATION_S / world.config.window_s)
    scenarios = [draw(rng) for _ in range(max(1, timesteps // (actions * windows)))]
    utility = np.zeros(actions)
    with tqdm(total=actions * len(scenarios), desc="train static", unit="run") as bar:
        for action in range(actions):
            policy = FixedPolicy("static", action_plan(action, costs.num_blocks, costs.num_exits))
            for scenario in scenarios:
                utility[action] += summarize(run_policy(world, policy, scenario))["utility"]
                bar.update()
    best = int(np.argmax(utility))
    plan = action_plan(best, costs.num_blocks, costs.num_exits)
    return {"action": best, "cut_point": plan.cut_point, "threshold": plan.exit_thresholds[0],
            "scenarios": len(scenarios),
            "mean_utility": [round(u / len(scenarios), 4) for u in utility]}  # fmt: skip


class LearnedPolicy:
    """A trained PPO or DQN policy with its frozen observation normalization.

    Features that never varied in training (the camera rate and the deadline, the same in every
    training scenario) taught the policy nothing, and the normalization would turn the slightest
    live difference from their training value into its clip bound, where the policy's choice is
    arbitrary: a live window that counted 9 answered frames, not 10, made `dqn` offload every
    frame at cut 1 with its exits off. The policy sees them at their training value.
    """

    def __init__(self, name: str, model, vecnorm: VecNormalize, world: World,
                 trained_fps: float | None = None):  # fmt: skip
        self.name, self.model, self.vecnorm, self.world = name, model, vecnorm, world
        self.trained_fps = trained_fps  # the camera rate of its training scenarios
        self.vecnorm.training = False
        self.num_blocks, self.num_exits = world.costs.num_blocks, world.costs.num_exits
        stats = vecnorm.obs_rms
        self._unvaried = stats.var < UNVARIED_VARIANCE
        self._trained_value = stats.mean.astype(np.float32)

    def reset(self) -> None:
        """Nothing to forget: the policy is a function of the observation."""

    def features(self, obs: Observation) -> np.ndarray:
        """What the policy was trained to see."""
        return obs.vector(self.num_blocks)

    def action(self, obs: Observation) -> int:
        """The discrete action for an observation."""
        features = np.where(self._unvaried, self._trained_value, self.features(obs))
        x = self.vecnorm.normalize_obs(features[None])
        action, _ = self.model.predict(x, deterministic=True)
        return int(action[0])

    def plan(self, action: int, obs: Observation) -> ExecutionPlan:
        """The plan of an action."""
        return action_plan(action, self.num_blocks, self.num_exits)

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """The plan of the policy's action."""
        return Decision(self.plan(self.action(obs), obs))


class LoopPolicy(LearnedPolicy):
    """A trained `ppo_loop`: it picks the route, its threshold loop the exit threshold."""

    def __init__(self, name: str, model, vecnorm: VecNormalize, world: World,
                 trained_fps: float | None = None):  # fmt: skip
        super().__init__(name, model, vecnorm, world, trained_fps)
        self.routes = loop_routes(world)
        self.loop = threshold_loop(world.tables, world.config.audit_share, world.config.fps)

    def reset(self) -> None:
        """The loop back to its start threshold, no audits."""
        self.loop.reset()

    def features(self, obs: Observation) -> np.ndarray:
        """The observation and the loop's state, before the loop takes the window in."""
        return loop_vector(obs, self.loop, self.num_blocks)

    def plan(self, action: int, obs: Observation) -> ExecutionPlan:
        """The route's plan, at the threshold the loop moves to on the last window's audits."""
        self.loop.update(obs)
        return route_plan(self.world, self.routes[action], self.loop)


def _metadata(path: Path) -> dict:
    """A saved policy's metadata (its .json), with its agent; PolicyFileError if unreadable."""
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise PolicyFileError(f"policy {path}: {meta_path.name} not found")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise PolicyFileError(f"policy {meta_path}: unreadable metadata ({exc})") from None
    if not isinstance(meta, dict) or "agent" not in meta:
        raise PolicyFileError(f"policy {meta_path}: unreadable metadata (no 'agent')")
    return meta


def scoring_differences(path: Path | str, world: World) -> str | None:
    """How the world scores frames otherwise than the saved policy was trained to (None: alike).

    Its deadline and utility weights: a policy chooses for those of its training, whatever the
    world's; another deadline or other weights need a policy trained for them.
    """
    path = Path(path)
    meta = _metadata(path)
    trained, now = meta.get("sim_config", {}), asdict(world.config)
    differ = [f"{key} {trained[key]}, not {now[key]}" for key in ("deadline_ms", "weights")
              if key in trained and trained[key] != now[key]]  # fmt: skip
    if not differ:
        return None
    return (
        f"policy {path.name} was trained for {'; '.join(differ)}: it chooses for those "
        f"(a policy for these: edgeml policy train --agent {meta['agent']} --deadline-ms "
        "... --utility-weights ...)"
    )


def load_policy(path: Path | str, world: World, name: str | None = None):
    """Load a saved policy (path without extension) for the world's model."""
    path = Path(path)
    meta = _metadata(path)
    agent, meta_path = meta["agent"], path.with_suffix(".json")
    if meta.get("weights_digest") != world.profile.weights_digest:
        raise PolicyFileError(
            f"policy {path.name} was trained for {meta.get('model_id')} with weights "
            f"{str(meta.get('weights_digest'))[:19]}..., not {world.profile.model_id} with "
            f"{world.profile.weights_digest[:19]}...: retrain it (see its command: "
            f"{meta.get('command')})"
        )
    costs, name = world.costs, name or path.name
    if agent == "planner":
        try:
            table = UtilityTable.load(path.with_suffix(".npz"), num_actions(costs.num_blocks))
        except ValueError as exc:
            raise PolicyFileError(str(exc)) from None
        return Planner(table, world, name)
    if agent == "static":
        action = meta.get("action")
        if not (isinstance(action, int) and 0 <= action < num_actions(costs.num_blocks)):
            raise PolicyFileError(f"policy {meta_path}: action {action!r} is not one of "
                                  f"0..{num_actions(costs.num_blocks) - 1}")  # fmt: skip
        return FixedPolicy(name, action_plan(action, costs.num_blocks, costs.num_exits))
    if agent == "edgeml_ddpg":
        model = DDPG.load(path.with_suffix(".zip"), device="cpu")
        policy = EdgeMLDDPGPolicy(model, costs.num_blocks, costs.num_exits,
                                  world.profile.num_classes, world.config.fps)  # fmt: skip
        policy.name = name
        return policy
    model = (DQN if agent == "dqn" else PPO).load(path.with_suffix(".zip"), device="cpu")
    with open(f"{path}_vecnormalize.pkl", "rb") as f:
        vecnorm = pickle.load(f)
    trained_fps = meta.get("sim_config", {}).get("fps")
    return (LoopPolicy if agent == "ppo_loop" else LearnedPolicy)(name, model, vecnorm, world,
                                                                  trained_fps)  # fmt: skip


def policy_file(policy_dir: Path, world: World, agent: str) -> Path:
    """Where the committed policy of `agent` for the world's model lives (no extension)."""
    return Path(policy_dir) / f"{world.profile.model_id.replace('/', '_')}_{agent}"
