"""`edgeml evaluate`: score policies on scenarios in the simulator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeml_ros.cli.common import (
    command_line,
    positive_float,
    positive_int,
    sim_arguments,
    sim_policies,
    sim_profile,
    sim_world,
)


def _write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {path}")


def _cmd_regime_map(args: argparse.Namespace) -> int:
    from edgeml_ros.core.paths import shown_path
    from edgeml_ros.policy.regime import (
        TARGET,
        markdown_regime_map,
        plot_regime_map,
        policy_summary,
        regime_map,
    )

    world = sim_world(args)
    # the static configurations stand for the oracle
    names = [n for n in sim_policies(args, world) if n != "oracle"]
    cells = regime_map(world, names, Path(args.policy_dir), args.regime_rates,
                       args.regime_slowdowns, duration_s=args.duration or 30.0,
                       draws=args.regime_draws)  # fmt: skip
    print(f"{'slowdown':>9}{'Mbit/s':>8}{'inputs':>10}{'best static':>13}  "
          + "".join(f"{n:>14}" for n in names))  # fmt: skip
    for c in cells:
        ratios = "".join(
            f"{'n/a' if r is None else f'{r:.3f}':>14}" for r in c["of_best_static"].values()
        )
        print(f"{c['slowdown']:>8g}x{c['rate_mbps']:>8g}{c['condition']:>10}"
              f"{c['best_static']['utility']:>13.3f}  {ratios}")  # fmt: skip
    for name in names:
        s = policy_summary(cells, name)
        lowest = "" if s["lowest"] is None else f", lowest {s['lowest']:.3f} ({s['at']})"
        print(f"{name}: {s['met']} of {s['cells']} cells at {TARGET:g} or more{lowest}")
    plots = {}
    if args.plots:
        for name in names:
            plots[name] = Path(args.plots) / f"regime_map_{name}.png"
            plot_regime_map(cells, name, plots[name])
            print(f"wrote {plots[name]}")
    out = {"command": command_line(), "profile": shown_path(sim_profile(args)),
           "draws": args.regime_draws, "regime_map": cells}  # fmt: skip
    _write_json(args.json, out)
    if args.markdown:
        page = Path(args.markdown)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(markdown_regime_map(out, plots, page.parent))
        print(f"wrote {page}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.regime_map:
        return _cmd_regime_map(args)
    from edgeml_ros.core.paths import shown_path
    from edgeml_ros.policy.evaluate import (
        evaluate,
        format_table,
        kind_table,
        markdown_results,
        plot_results,
        speedups,
    )
    from edgeml_ros.policy.registry import named_policies
    from edgeml_ros.policy.scenarios import TEST_SCENARIOS, resolve_scenario

    names = args.scenario or ["test"]
    names = [n for name in names for n in (TEST_SCENARIOS if name == "test" else [name])]
    scenarios = [
        resolve_scenario(n, args.duration, args.condition, args.initial_soc) for n in names
    ]
    world = sim_world(args)
    policies = named_policies(world, sim_policies(args, world), Path(args.policy_dir))
    results, records = evaluate(world, policies, scenarios)
    results["scenarios"] = names
    results["sim_config"] = {
        "fps": args.fps,
        "deadline_ms": args.deadline_ms,
        "device_class": world.costs.device.name,
        "profile": shown_path(sim_profile(args)),
    }
    results["command"] = command_line()
    if "rl" in policies:
        results["rl_vs_baselines"] = speedups(results["per_scenario"], "rl")
    print(format_table(results))
    for line in kind_table(results["per_kind"]):
        print(line)
    if results.get("rl_vs_baselines"):  # none when rl runs alone
        print("\nrl against each policy, per scenario (utility ratio where the other's is > 0):")
        width = max(14, *(len(base) + 2 for base in results["rl_vs_baselines"]))
        for base, s in results["rl_vs_baselines"].items():
            up_to = f"up to {s['up_to']:.2f}x" if s["up_to"] is not None else "no positive runs"
            nonpositive = s["scenarios_with_baseline_utility_le_0"]
            print(f"  {base:<{width}}{up_to:<18} won {s['scenarios_won']}/{s['scenarios']} "
                  f"(other's utility <= 0 in {nonpositive})")  # fmt: skip
    plots = plot_results(results, records, Path(args.plots)) if args.plots else []
    for path in plots:
        print(f"wrote {path}")
    if args.markdown:
        page = Path(args.markdown)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(markdown_results(results, plots, page.parent))
        print(f"wrote {page}")
    _write_json(args.json, results)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `evaluate`."""
    from edgeml_ros.policy.regime import RATES_MBPS, SLOWDOWNS
    from edgeml_ros.policy.scenarios import REGIME_DRAWS, TEST_SCENARIOS

    p = sub.add_parser("evaluate", help="score policies on scenarios in the simulator")
    p.add_argument("--scenario", action="append", default=None, metavar="FILE_OR_NAME",
                   help="a trace file (CSV t_s,mbps[,rtt_ms]) or a built-in KIND-SEED; 'test' "
                   f"(the default) is the test split: {' '.join(TEST_SCENARIOS)}")  # fmt: skip
    p.add_argument("--duration", type=positive_float, default=None,
                   help="seconds to simulate (default: 120 built-in, trace + 10 s)")  # fmt: skip
    p.add_argument("--condition", default="clean", help="input condition for trace files")
    p.add_argument("--initial-soc", type=positive_float, default=0.9,
                   help="starting battery for trace files (0-1]")  # fmt: skip
    p.add_argument("--regime-map", action="store_true",
                   help="instead of scenarios: steady cells of link rate x drone slowdown x "
                   "inputs, each policy against the best static configuration in hindsight "
                   "(a heatmap per policy in --plots, the cells in --json, a page of them "
                   "in --markdown)")  # fmt: skip
    p.add_argument("--regime-draws", type=positive_int, default=REGIME_DRAWS,
                   help="draws of each regime cell's frames, every policy on the same ones "
                   f"(default {REGIME_DRAWS}; 1: the best static configuration is also "
                   "chosen in hindsight of the very frames)")  # fmt: skip
    p.add_argument("--regime-rates", type=positive_float, nargs="+", default=RATES_MBPS,
                   metavar="MBPS", help="the regime map's link rates (default: "
                   f"{' '.join(f'{r:g}' for r in RATES_MBPS)})")  # fmt: skip
    p.add_argument("--regime-slowdowns", type=positive_float, nargs="+", default=SLOWDOWNS,
                   metavar="X", help="the regime map's drone compute slowdowns over the "
                   f"profile's (default: {' '.join(f'{s:g}' for s in SLOWDOWNS)})")  # fmt: skip
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--plots", default="out/evaluate", metavar="DIR",
                   help="where to write the PNG plots ('' for none)")  # fmt: skip
    p.add_argument("--markdown", default=None, metavar="PATH",
                   help="also write a results page (docs/policy_results.md; with "
                   "--regime-map, docs/regime_map.md)")  # fmt: skip
    sim_arguments(p, with_policies=True)
    p.set_defaults(func=_cmd_evaluate)
