"""System benchmark: the live ROS 2 deployment, once per policy, over the same shaped link.

Each run is a demo run (bringup.demo): every node a process, the same trace and the same camera
frames. On top of the demo's summary it reports the per-frame cost by part, the framework
overhead, the offload goodput against the shaped rate (per phase the offloads saturated), and
what the simulator predicted for the same trace and policy.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from edgeml_ros.bringup.collector import Collector
from edgeml_ros.bringup.demo import DemoConfig, DemoModel, demo_trace, run_session
from edgeml_ros.bringup.demo_run import frame_count
from edgeml_ros.bringup.plots import plot_runs
from edgeml_ros.bringup.processes import share_file
from edgeml_ros.bringup.report import lost_frames
from edgeml_ros.bringup.run_record import load_run
from edgeml_ros.core.calibration import drone_speed
from edgeml_ros.core.checkpoint import load_checkpoint
from edgeml_ros.core.data import ImageDataset
from edgeml_ros.core.degrade import CONDITIONS
from edgeml_ros.core.paths import shown_path
from edgeml_ros.core.plan import ExecutionPlan, check_plan, default_plan
from edgeml_ros.core.profiles import (
    ExitTable,
    Profile,
    collect_image_exits,
    exit_table_of,
    load_profile,
)
from edgeml_ros.core.train import reopen_dataset, to_frames
from edgeml_ros.policy.evaluate import run_policy, summarize
from edgeml_ros.policy.observation import Decision, Observation, Policy
from edgeml_ros.policy.registry import named_policies, unavailable
from edgeml_ros.policy.sim import FrameRecords, Scenario, SimConfig, Simulation
from edgeml_ros.policy.world import World

SETTLE_S = 3.0  # link estimates this soon after a rate change are not compared
SIM_SEEDS = 5  # simulator runs per policy
BATTERY_SOC, BATTERY_DRAIN = 0.9, 0.001  # battery_sim's defaults
# A policy whose mean utility in a phase is within this many standard errors of the best's, on
# the same frames, plus RUN_SPREAD, is not told apart from it by the run (phase_rows). The
# standard error is the frames'; RUN_SPREAD is the run's own: the hour's load moves every
# frame's latency alike, so two runs of the same plan on the same frames differ by that much
# (`edge_only` and `neurosurgeon`, and `rl_loop` and `apparate`, each pair the same plan on
# every frame, by up to 0.002 per phase in each of three runs: docs/system.md).
TIED_STANDARD_ERRORS, RUN_SPREAD = 2.0, 0.005
FALLBACKS_TITLE = ("Frames that fell back in each phase (offloaded, and answered on the drone "
                   "when the reply did not come in time)")  # fmt: skip


def goodput_phases(collector: Collector, summary: dict) -> list[dict]:
    """Offload goodput in each phase of the trace where the offloads saturated the link.

    Goodput is what the base station answered (its BaseStationLoad reports, one a second) times
    the mean offload size, summed over the settled seconds (SETTLE_S after the change) of a
    phase, over what the link could carry in those seconds. A phase counts where the frames the
    plan sent to the base station in those seconds (answered there or finished on the drone
    when the link could not take them) came to more than that: elsewhere the link was not the
    limit. Summed, not a median of seconds, because on a slow link answers come in bursts.
    Empty when no phase was saturated (a policy that keeps its frames on the drone there).
    """
    if not collector.shaped or not collector.base_load or not summary["offloaded"]:
        return []
    tensor_mbit = summary["offload_bytes_mean"] * 8 / 1e6
    times = np.array([t for t, _, _ in collector.shaped])
    rates = np.array([mbps for _, mbps, _ in collector.shaped])

    def settled_phase(t: float) -> int | None:
        i = int(np.searchsorted(times, t, side="right")) - 1
        return i if i >= 0 and t - times[i] >= SETTLE_S and rates[i] > 0 else None

    phases: dict[int, dict] = {}
    for t, answered_per_s in collector.base_load:
        if (i := settled_phase(t)) is None:
            continue
        phase = phases.setdefault(i, {"start_s": float(times[i] - times[0]),
                                      "mbps": float(rates[i]), "answered_mbit": 0.0,
                                      "capacity_mbit": 0.0, "wanted_mbit": 0.0})  # fmt: skip
        phase["answered_mbit"] += answered_per_s * tensor_mbit
        phase["capacity_mbit"] += rates[i]
    for t in collector.offload_wanted:
        if (i := settled_phase(t)) in phases:
            phases[i]["wanted_mbit"] += tensor_mbit
    saturated = [p for p in phases.values() if p["wanted_mbit"] > p["capacity_mbit"]]
    for phase in saturated:
        phase["goodput_ratio"] = phase["answered_mbit"] / phase["capacity_mbit"]
    return saturated


def goodput_ratio(phases: list[dict]) -> float | None:
    """Offload goodput over the shaped rate, over all the saturated phases (None: none)."""
    capacity = sum(p["capacity_mbit"] for p in phases)
    return sum(p["answered_mbit"] for p in phases) / capacity if capacity else None


@dataclass
class ControllerComesLater:
    """A policy whose first plan comes `after_frames` into the run, as the controller's does.

    Until then the perception node runs the plan of its parameters (`startup`): the controller
    is the slowest node of a launch to start (README).
    """

    policy: Policy
    startup: ExecutionPlan
    after_frames: int
    started: bool = False

    @property
    def name(self) -> str:
        """The policy's."""
        return self.policy.name

    def reset(self) -> None:
        """Back to the start-up plan."""
        self.policy.reset()
        self.started = False

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """The start-up plan for the first frames, then the policy's."""
        if self.started or not self.after_frames:
            return self.policy.decide(obs, sim)
        self.started = True
        return Decision(self.startup, self.after_frames)


def startup_plan(world: World) -> ExecutionPlan:
    """The perception node's plan before the controller's first.

    config/drone.yaml's, where it sets one that fits the model; else the node's default
    (core.plan.default_plan).
    """
    default = default_plan(world.costs.num_blocks, world.costs.num_exits)
    params = yaml.safe_load(share_file("config", "drone.yaml").read_text())
    params = params["/**/perception"]["ros__parameters"]
    thresholds = params.get("exit_thresholds", default.exit_thresholds)
    plan = ExecutionPlan(params.get("cut_point", default.cut_point), tuple(thresholds))
    try:
        check_plan(plan, world.costs.num_blocks, world.costs.num_exits)
    except ValueError:  # set for another model
        return default
    return plan


def bench_world(cfg: DemoConfig) -> World:
    """The simulator's world for the runs: their profile, drone, rate and deadline."""
    model = DemoModel.of(cfg)
    config = SimConfig(
        fps=cfg.rate_hz,
        deadline_ms=cfg.deadline_ms,
        device_class=model.device.name,
        compute_slowdown=model.compute_slowdown,
    )
    return World.load(model.profile, config)


def phase_utility(collector: Collector, world: World) -> list[dict]:
    """Each phase of the shaped trace: its live frames, their mean utility, and its fallbacks.

    Fallbacks: frames offloaded whose reply did not come in time (answered on the drone).
    The simulator's per-frame utility (UtilityWeights.utility) of each live frame: its answer
    against the camera's label, its latency from the camera stamp to the collector, its
    modelled energy, the battery at BATTERY_SOC (battery_sim's start: a run drains it by less
    than a point). Phases as the shaper applied them.
    """
    shaped = collector.shaped  # the last entry: when the run ended
    frames = collector.frames()
    utility = world.config.weights.utility(
        frames["correct"], frames["latency_s"], world.config.deadline_ms / 1000.0,
        frames["energy_j"], world.costs.reference_energy_j, BATTERY_SOC)  # fmt: skip
    phases = []
    for (start, mbps, _), (end, _, _) in itertools.pairwise(shaped):
        inside = (frames["t_s"] >= start) & (frames["t_s"] < end)
        mean = float(np.mean(utility[inside])) if inside.any() else None
        per_frame = {"image": frames["image"][inside].tolist(),
                     "utility": utility[inside].round(6).tolist()}  # fmt: skip
        phases.append({"start_s": float(start - shaped[0][0]), "mbps": float(mbps),
                       "frames": int(inside.sum()), "utility": mean,
                       "fallbacks": int(frames["fallback"][inside].sum()),
                       "frame_utility": per_frame})  # fmt: skip
    return phases


def gap_to_best(best: dict, other: dict) -> tuple[float, float] | None:
    """By how much the best policy's phase beat another's, and the standard error of that.

    Frame by frame on the frames both answered, paired by camera image (collector.image_key).
    None where the phases carry no per-frame utilities (a `--json` file from before they did)
    or share fewer than two frames.
    """
    if "frame_utility" not in best or "frame_utility" not in other:
        return None
    ours = dict(zip(*best["frame_utility"].values(), strict=True))
    theirs = dict(zip(*other["frame_utility"].values(), strict=True))
    shared = [k for k in ours.keys() & theirs.keys() if k >= 0]
    if len(shared) < 2:
        return None
    gaps = np.array([ours[k] - theirs[k] for k in shared])
    return float(gaps.mean()), float(gaps.std(ddof=1) / np.sqrt(len(gaps)))


def simulated(cfg: DemoConfig, results: dict[str, dict]) -> dict[str, dict]:
    """The simulator's prediction for the demo's trace, per policy, for the same drone.

    The frames replay the images the camera showed, in order (`camera_tables`), so that the
    accuracy compares the simulator's decisions, not two samples of images; each policy plans
    from when the live run's controller did (`first_plan_s`). Pooled over SIM_SEEDS runs,
    which differ in the link estimate's noise and the jitter.
    """
    model = DemoModel.of(cfg)
    world = bench_world(cfg)
    config = world.config
    # as the controller builds them, from the profile (not those it lacks the data for)
    chosen = named_policies(world, [p for p in results if unavailable(p, world) is None])
    startup = startup_plan(world)
    camera = camera_tables(model, world.profile, frame_count(cfg))
    world = World(world.profile, camera, config, world.costs)
    out = {}
    for name in tqdm(chosen, desc="simulate", unit="policy"):
        later = round((results[name].get("first_plan_s") or 0.0) * cfg.rate_hz)
        policy = ControllerComesLater(chosen[name], startup, later)
        runs = [run_policy(world, policy, Scenario(
            "system", demo_trace(cfg), cfg.duration_s, ((0.0, "clean"),), BATTERY_SOC,
            BATTERY_DRAIN, seed, in_order=True)) for seed in range(SIM_SEEDS)]  # fmt: skip
        out[name] = summarize(FrameRecords.concat(runs))
    return out


def camera_tables(model: DemoModel, profile: Profile, frames: int) -> dict[str, ExitTable]:
    """Exit tables of the frames the camera source shows in a run, for every condition.

    Its first `frames` test images (config/drone.yaml: the test split from index 0), as the
    perception node sees them (core.train.to_frames), with the final exit's answers on them
    shipped in each image encoding the profile measured.
    """
    bundle = load_checkpoint(model.checkpoint)
    meta = bundle.meta
    shown = reopen_dataset(meta).frames("test")
    images, labels = zip(*(shown[i % len(shown)] for i in range(frames)), strict=True)
    data = ImageDataset(meta.dataset, "test", np.stack(images), np.array(labels),
                        tuple(meta.class_names))  # fmt: skip
    x, y = to_frames(data, tuple(meta.input_size), meta.channels)
    y = y.numpy()
    answers = collect_image_exits(bundle, x, y, list(profile.image_bytes), "camera frames")
    table = exit_table_of(bundle, profile, x, y, answers, "camera frames")
    return dict.fromkeys(CONDITIONS, table)  # the run's inputs are clean throughout


def sim_vs_real(summary: dict, sim: dict) -> dict:
    """The simulator's p50, p95 and accuracy beside the live run's: ratios and the difference."""

    def ratio(key: str) -> float | None:
        return sim[key] / summary[key] if summary.get(key) else None

    return {
        "sim_latency_ms_p50": sim["latency_ms_p50"],
        "sim_latency_ms_p95": sim["latency_ms_p95"],
        "sim_accuracy": sim["accuracy"],
        "sim_vs_real_latency_ratio": ratio("latency_ms_p50"),
        "sim_vs_real_p95_ratio": ratio("latency_ms_p95"),
        "sim_accuracy_diff_pts": None
        if summary.get("accuracy") is None
        else 100.0 * (sim["accuracy"] - summary["accuracy"]),
    }


def add_drone_speeds(cfg: DemoConfig, results: dict[str, dict]) -> None:
    """Each recorded run's drone compute over the calibrated simulator's (core.calibration).

    Left out where the profile has no calibration or the run no recording.
    """
    profile = load_profile(DemoModel.of(cfg).profile)[0]
    calibration = profile.calibrated
    if calibration is None:
        return
    for summary in results.values():
        if summary.get("mcap") and Path(summary["mcap"]).exists():
            run = load_run(summary["mcap"])
            summary["drone_compute_vs_calibration"] = drone_speed(profile, run, calibration)


def run_system_bench(cfg: DemoConfig, markdown: str | None, resimulate: str | None = None) -> int:
    """Run every policy live, compare with the simulator, print and write the results.

    With `resimulate` (a `--json` file of an earlier run) no policy runs live: the simulator is
    compared with that file's runs.
    """
    if resimulate:
        cfg, recorded = recorded_runs(resimulate, cfg)
        runs, results = [], recorded["policies"]
    else:
        runs, results, world = run_session(cfg), {}, bench_world(cfg)
        for summary, collector in runs:
            summary["goodput_phases"] = goodput_phases(collector, summary)
            summary["goodput_ratio"] = goodput_ratio(summary["goodput_phases"])
            summary["phase_utility"] = phase_utility(collector, world)
            results[summary["policy"]] = summary
    sims = simulated(cfg, results)
    for name, summary in results.items():
        if name in sims:  # else the profile lacks what the simulator needs for it
            summary.update(sim_vs_real(summary, sims[name]))
    add_drone_speeds(cfg, results)
    print(format_system(results))
    if cfg.plot_path and runs:
        plot_runs(
            runs,
            Path(cfg.plot_path),
            "make bench-system: the link, each policy's plan, accuracy and audits",
        )
        print(f"[bench] wrote {cfg.plot_path}")
    model = DemoModel.of(cfg)
    out = {"command": cfg.command, "policies": results, "trace": demo_trace(cfg).name,
           "trace_arg": cfg.trace, "duration_s": cfg.duration_s, "rate_hz": cfg.rate_hz,
           "deadline_ms": cfg.deadline_ms, "compute_slowdown": model.compute_slowdown,
           "device_class": model.device.name, "device_reference_ms": model.device.reference_ms,
           "profiled_reference_ms": model.profile_reference_ms,
           "sim_profile": shown_path(model.profile)}  # fmt: skip
    if resimulate:
        out["live_command"] = recorded["command"]
    names, rows = phase_rows(results)
    out["phases"] = [{"phase": row.label, "best": row.best, "tied": row.tied,
                      "utility": dict(zip(names, row.values, strict=True))}
                     for row in rows]  # fmt: skip
    if cfg.json_path:
        Path(cfg.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json_path).write_text(json.dumps(out, indent=1) + "\n")
        print(f"[bench] wrote {cfg.json_path}")
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(markdown_system(out))
        print(f"[bench] wrote {markdown}")
    return 1 if lost_frames(list(results.values())) else 0


def recorded_runs(path: str, cfg: DemoConfig) -> tuple[DemoConfig, dict]:
    """The live runs of an `edgeml bench system --json` file and the settings they ran with.

    Its duration, rate, trace, deadline and emulated drone slowdown; the model stays `cfg`'s.
    """
    try:
        recorded = json.loads(Path(path).read_text())
        first = next(iter(recorded["policies"].values()))
        slowdown = recorded.get("compute_slowdown") or first["compute_slowdown_emulated"]
        settings = {"duration_s": float(recorded["duration_s"]),
                    "rate_hz": float(recorded["rate_hz"]),
                    "trace": recorded.get("trace_arg", recorded["trace"]),
                    "deadline_ms": float(recorded.get("deadline_ms", cfg.deadline_ms)),
                    "compute_slowdown": float(slowdown)}  # fmt: skip
        if not all("latency_ms_p50" in s for s in recorded["policies"].values()):
            raise ValueError("a policy without its summary")
        for summary in recorded["policies"].values():  # from before the summary had it
            if "first_plan_s" not in summary and summary.get("mcap"):
                summary["first_plan_s"] = load_run(summary["mcap"]).first_plan_s
    except FileNotFoundError:
        raise ValueError(f"{path} not found") from None
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as exc:
        raise ValueError(f"{path}: not an `edgeml bench system --json` file ({exc})") from None
    return replace(cfg, **settings), recorded


COLUMNS = (
    ("accuracy", "accuracy", 100, "{:.2f}%"),
    ("latency_ms_p50", "p50 ms", 1, "{:.1f}"),
    ("latency_ms_p95", "p95 ms", 1, "{:.1f}"),
    ("latency_ms_p99", "p99 ms", 1, "{:.1f}"),
    ("deadline_miss_rate", "miss", 100, "{:.1f}%"),
    ("energy_j_per_frame", "mJ/frame", 1000, "{:.1f}"),
    ("frames_without_result", "no result", 1, "{:.0f}"),
    ("framework_overhead_ms_p50", "overhead ms", 1, "{:.2f}"),
    ("goodput_ratio", "goodput", 1, "{:.2f}"),
)
# the simulator beside the live run (target: p50 and p95 within 15 %, accuracy within 1 point)
SIM_COLUMNS = (
    ("latency_ms_p50", "p50 ms", 1, "{:.1f}"),
    ("sim_latency_ms_p50", "sim p50", 1, "{:.1f}"),
    ("sim_vs_real_latency_ratio", "sim/real p50", 1, "{:.2f}"),
    ("latency_ms_p95", "p95 ms", 1, "{:.1f}"),
    ("sim_latency_ms_p95", "sim p95", 1, "{:.1f}"),
    ("sim_vs_real_p95_ratio", "sim/real p95", 1, "{:.2f}"),
    ("accuracy", "accuracy", 100, "{:.2f}%"),
    ("sim_accuracy", "sim acc.", 100, "{:.2f}%"),
    ("sim_accuracy_diff_pts", "sim-real pts", 1, "{:+.2f}"),
    ("drone_compute_vs_calibration", "drone compute / calibrated", 1, "{:.2f}"),
)
PARTS = ("conversion", "model", "serialization", "link", "dds_in", "dds_out", "queueing")


def _cell(value, scale: float, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value * scale)


def _text_table(results: dict[str, dict], columns: tuple) -> list[str]:
    head = f"{'policy':<14}" + "".join(f"{label:>13}" for _, label, _, _ in columns)
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(f"{name:<14}" + "".join(f"{_cell(r.get(k), s, f):>13}"
                                             for k, _, s, f in columns))  # fmt: skip
    return lines


def _markdown_table(results: dict[str, dict], columns: tuple) -> list[str]:
    rows = ["| policy | " + " | ".join(label for _, label, _, _ in columns) + " |",
            "| --- |" + " ---: |" * len(columns)]  # fmt: skip
    for name, r in results.items():
        rows.append(f"| {name} | " + " | ".join(_cell(r.get(k), s, f) for k, _, s, f in columns)
                    + " |")  # fmt: skip
    return rows


@dataclass(frozen=True)
class PhaseRow:
    """One phase of the per-phase utility table.

    Its label, each policy's mean utility (None: no frame in it), the best policy, the others
    within TIED_STANDARD_ERRORS standard errors plus RUN_SPREAD of it (gap_to_best; None: no
    per-frame utilities), and each policy's frames that fell back in it (None: not recorded).
    """

    label: str
    values: list[float | None]
    best: str
    tied: list[str] | None
    fallbacks: list[int | None]


def phase_rows(results: dict[str, dict]) -> tuple[list[str], list[PhaseRow]]:
    """The per-phase utility table: its policies, and its rows.

    Per phase of the trace, in order (each run's n-th phase; their start times differ by the
    shaper's milliseconds).
    """
    names = [n for n, r in results.items() if r.get("phase_utility")]
    if not names:
        return [], []
    first = results[names[0]]["phase_utility"]  # every run replays the same trace's phases
    rows = []
    for i, phase in enumerate(first):
        phases = {n: results[n]["phase_utility"][i] for n in names}
        values = [phases[n]["utility"] for n in names]
        scored = {n: v for n, v in zip(names, values, strict=True) if v is not None}
        best = max(scored, key=scored.__getitem__)  # the first of equals
        gaps = {n: gap_to_best(phases[best], phases[n]) for n in scored if n != best}
        tied = None
        if all(g is not None for g in gaps.values()):
            tied = [n for n, (gap, se) in gaps.items()
                    if gap <= TIED_STANDARD_ERRORS * se + RUN_SPREAD]  # fmt: skip
        label = f"{phase['mbps']:g} Mbit/s from {phase['start_s']:.0f} s"
        fallbacks = [phases[n].get("fallbacks") for n in names]
        rows.append(PhaseRow(label, values, best, tied, fallbacks))
    return names, rows


def format_system(results: dict[str, dict]) -> str:
    """The tables printed by `edgeml bench system`."""
    lines = _text_table(results, COLUMNS)
    lines.append("\nthe simulator against the live runs")
    lines += _text_table(results, SIM_COLUMNS)
    lines.append("\nmedian ms per frame by part: " + ", ".join(PARTS))
    for name, r in results.items():
        parts = "  ".join(f"{p} {r.get(f'{p}_ms_p50', float('nan')):.2f}" for p in PARTS)
        lines.append(f"{name:<14}{parts}")
    lines += [f"goodput by phase, {name}: {_phases(r)}" for name, r in results.items()
              if r.get("goodput_phases")]  # fmt: skip
    names, rows = phase_rows(results)
    if rows:
        lines.append(
            "\nmean utility per phase of the trace (live frames, the simulator's utility)"
        )
        lines.append(f"{'phase':<26}" + "".join(f"{n:>13}" for n in names) + f"{'best':>14}")
        for row in rows:
            cells = "".join(_cell(v, 1, "{:.3f}").rjust(13) for v in row.values)
            lines.append(f"{row.label:<26}{cells}{row.best:>14}")
        lines.append(f"tied with the best (within {TIED_STANDARD_ERRORS:g} standard errors, "
                     f"paired on the same camera frames, plus {RUN_SPREAD:g}):")  # fmt: skip
        lines += [f"  {row.label}: {_tied(row)}" for row in rows]
        lines.append(f"\n{FALLBACKS_TITLE}")
        lines.append(f"{'phase':<26}" + "".join(f"{n:>13}" for n in names))
        for row in rows:
            cells = "".join(_cell(v, 1, "{:d}").rjust(13) for v in row.fallbacks)
            lines.append(f"{row.label:<26}{cells}")
    return "\n".join(lines)


def _tied(row: PhaseRow) -> str:
    if row.tied is None:
        return "n/a (no per-frame utilities)"
    return ", ".join(row.tied) or "none"


def _phases(summary: dict) -> str:
    return ", ".join(f"{1000 * p['mbps']:g} kbit/s from {p['start_s']:.0f} s: "
                     f"{p['goodput_ratio']:.3f}" for p in summary["goodput_phases"])  # fmt: skip


def _machine_speed(out: dict) -> list[str]:
    """How fast this machine was before each live run, against when the model was profiled."""
    here = [s["host_reference_ms"] for s in out["policies"].values()
            if s.get("host_reference_ms")]  # fmt: skip
    if not here or "profiled_reference_ms" not in out:
        return []
    profiled = out["profiled_reference_ms"]
    return [
        "",
        f"Before each live run the reference model (`edgeml bench reference`) was timed on this "
        f"machine: {_span(here, '.1f')} ms, against {profiled:.1f} ms when the model was "
        f"profiled ({_span([t / profiled for t in here], '.2f')}x). The drone padded each "
        f"compute call to {out['compute_slowdown']:g}x the profile's time for it (calibrated: "
        f"scaled, plus a fixed time per call, as the simulator's drone; the device's "
        f"{out['device_reference_ms']:g} ms over the profiling machine's), so it computed at "
        "the device's speed whatever this machine's speed or load, where this machine was "
        "faster.",
    ]


def _span(values: list[float], spec: str) -> str:
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low}-{high}"


def markdown_system(out: dict) -> str:
    """The results page (docs/system_results.md)."""
    made = f"Produced by `{out['command']}`"
    if "live_command" in out:
        made = (f"Live runs by `{out['live_command']}`, the simulator's columns by "
                f"`{out['command']}`")  # fmt: skip
    rows = [
        "# System benchmark: the live deployment over a shaped link",
        "",
        f"{made}: every node a process over real DDS, the drone and the base station in two "
        f"network namespaces joined by a veth shaped with `tc tbf` to the trace "
        f"`{out['trace']}` ({out['duration_s']:g} s at {out['rate_hz']:g} Hz), the drone's "
        f"compute emulated at {out['compute_slowdown']:g}x the profiled times, energy from the "
        "energy model (not measured).",
        *_machine_speed(out),
        "",
        *_markdown_table(out["policies"], COLUMNS),
        "",
        f"The simulator (`{out['sim_profile']}`, the same trace and drone, "
        f"{SIM_SEEDS} runs per policy pooled) against the live runs "
        "(target: p50 and p95 within ±15 %, accuracy within 1 point; drone compute / "
        "calibrated: the run's drone compute over the calibrated simulator's for the same "
        "calls, median, above 1 slower than simulated):",
        "",
        *_markdown_table(out["policies"], SIM_COLUMNS),
    ]
    rows += ["", "Median ms per frame by part:", ""]
    rows += ["| policy | " + " | ".join(PARTS) + " |", "| --- |" + " ---: |" * len(PARTS)]
    for name, r in out["policies"].items():
        rows.append(f"| {name} | " + " | ".join(f"{r.get(f'{p}_ms_p50', float('nan')):.2f}"
                                                 for p in PARTS) + " |")  # fmt: skip
    rows += [f"\nGoodput by saturated phase (settled seconds), {name}: {_phases(r)}."
             for name, r in out["policies"].items() if r.get("goodput_phases")]  # fmt: skip
    names, phases = phase_rows(out["policies"])
    if phases:
        rows += ["", "Mean utility of the live frames in each phase of the trace (the "
                 "simulator's utility of each frame: its answer against the camera's label, "
                 "its latency, its modelled energy; the best in bold; tied: the policies "
                 f"within {TIED_STANDARD_ERRORS:g} standard errors of the best, the gap "
                 "measured frame by frame on the same camera frames, plus the "
                 f"{RUN_SPREAD:g} by which two runs of one plan differ, which this run does "
                 "not tell apart from it):", "",
                 "| phase | " + " | ".join(names) + " | best | tied |",
                 "| --- |" + " ---: |" * len(names) + " --- | --- |"]  # fmt: skip
        for row in phases:
            cells = [("**{}**" if n == row.best else "{}").format(_cell(v, 1, "{:.3f}"))
                     for v, n in zip(row.values, names, strict=True)]  # fmt: skip
            rows.append(f"| {row.label} | " + " | ".join(cells)
                        + f" | {row.best} | {_tied(row)} |")  # fmt: skip
        rows += ["", f"{FALLBACKS_TITLE}:", "", "| phase | " + " | ".join(names) + " |",
                 "| --- |" + " ---: |" * len(names)]  # fmt: skip
        rows += [f"| {row.label} | " + " | ".join(_cell(v, 1, "{:d}") for v in row.fallbacks)
                 + " |" for row in phases]  # fmt: skip
    return "\n".join(rows) + "\n"
