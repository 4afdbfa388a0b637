"""`edgeml policy train`: train a controller policy in the simulator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeml_ros.cli.common import (
    command_line,
    fraction,
    non_negative_int,
    positive_int,
    sim_arguments,
    sim_world,
)


def _cmd_policy_train(args: argparse.Namespace) -> int:
    from edgeml_ros.policy.agents import SAVED_AS, policy_file, train_agent

    world = sim_world(args)
    path = policy_file(Path(args.out_dir), world, args.agent)
    meta = train_agent(world, args.agent, path.parent, path.name, args.timesteps, args.seed,
                       command_line(), args.steady_share, args.reward_draws)  # fmt: skip
    steps = f"{meta['timesteps']} steps, " if meta["timesteps"] else ""
    print(json.dumps(meta, indent=1) if args.json else
          f"saved {path}.{SAVED_AS.get(args.agent, 'zip')} ({meta['agent']}, {steps}"
          f"{meta['train_seconds']} s)")  # fmt: skip
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `policy` and its `train`."""
    from edgeml_ros.core.paths import POLICY_DIR
    from edgeml_ros.policy.agents import AGENTS, DEFAULT_TIMESTEPS

    p = sub.add_parser("policy", help="controller policies (trained in the simulator)")
    policy = p.add_subparsers(dest="action", required=True)
    p = policy.add_parser("train", help="train a controller policy with stable-baselines3")
    p.add_argument("--agent", required=True, choices=AGENTS,
                   help="ppo/dqn: our formulation; edgeml_ddpg: the EdgeML authors'; planner: "
                   "a table of utilities made in the simulator, no learning")  # fmt: skip
    p.add_argument("--timesteps", type=positive_int, default=None,
                   help=f"environment steps (default {DEFAULT_TIMESTEPS})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steady-share",
        type=fraction,
        default=0.0,
        help="share of the training episodes that are steady: one link rate, input condition "
        "and drone speed throughout (default 0; see docs/policy.md)",
    )
    p.add_argument(
        "--reward-draws",
        type=non_negative_int,
        default=0,
        help="ppo, dqn, ppo_loop: average each window's reward with this many previews of it "
        "on other draws of frames (default 0; see docs/policy.md)",
    )
    p.add_argument("--out-dir", default=str(POLICY_DIR), help="where to save the policy")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    sim_arguments(p, with_policies=False)
    p.set_defaults(func=_cmd_policy_train)
