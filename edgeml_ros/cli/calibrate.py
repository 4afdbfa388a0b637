"""`edgeml calibrate`: fit the simulator's terms to recorded live runs, into the profile."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeml_ros.cli.common import command_line, sim_profile, workload_arguments

TERMS = (
    ("drone_scale", "drone compute: x profiled time", "drone_compute"),
    ("drone_call_ms", "drone compute: ms per call (at slowdown 1)", "drone_compute"),
    ("server_scale", "base station compute: x profiled time", "server_compute"),
    ("server_call_ms", "base station compute: ms per request", "server_compute"),
    ("input_hop_ms", "camera -> perception hop, ms", "input_hop_ms"),
    ("conversion_ms", "image decoding on the drone, ms", "conversion_ms"),
    ("output_hop_ms", "result -> reader hop, ms", "output_hop_ms"),
    ("encode_ms", "feature serialization per offload, ms", "encode_ms"),
    ("offload_hop_ms", "per offload beyond airtime, RTT and tail, ms", "offload_hop_ms"),
    ("drone_plan_scale", "the drone's own compute times (start-up) / fitted", "drone_plan_scale"),
    ("link_estimate_lag_s", "link estimate: settled after a change, s, plus", "link_estimate_lag"),
    (
        "link_estimate_lag_kbit",
        "... this many kbit over the slower rate (frames: changes)",
        "link_estimate_lag",
    ),
    (
        "link_estimate_noise",
        "link estimate: relative spread once settled (frames: readings)",
        "link_estimate_noise",
    ),
    (
        "link_estimate_rtt_ms",
        "link estimate: RTT read over the shaped one, ms (frames: readings)",
        "link_estimate_rtt",
    ),
)


def format_calibration(cal) -> str:
    """The fitted terms, each with its residuals over the frames it was fitted on."""
    lines = [f"{'term':<20}{'value':>10}  {'frames':>7}{'|res| p50':>11}{'p95':>8}  what"]
    for name, what, residual in TERMS:
        r = cal.residuals.get(residual, {})
        res = (f"{r['residual_p50']:>11.3f}{r['residual_p95']:>8.3f}"
               if r.get("frames") else f"{'-':>11}{'-':>8}")  # fmt: skip
        value = getattr(cal, name)
        shown = f"{'-':>10}" if value is None else f"{value:>10.4g}"
        lines.append(f"{name:<20}{shown}  {r.get('frames', 0):>7}{res}  {what}")
    lines.append(
        f"messages: {cal.request_fields_bytes} B of request fields around the tensor, "
        f"{cal.reply_bytes} B per reply (serialized); a {4096}-B tensor takes "
        f"{cal.request_wire_bytes(4096)} B on the wire (core.wire)"
    )
    lines.append(f"drone emulated at compute_slowdown {cal.compute_slowdown:g} in the runs; link "
                 f"token bucket {cal.link_burst_ms:g} ms of the rate, at least "
                 f"{cal.link_burst_min_bytes} B")  # fmt: skip
    return "\n".join(lines)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edgeml_ros.bringup.run_record import keep_runs, load_run, message_sizes, run_files
    from edgeml_ros.core.calibration import fit_calibration
    from edgeml_ros.core.profiles import load_profile

    path = Path(sim_profile(args))
    profile, _ = load_profile(path)
    names = args.runs
    if args.keep and not args.dry_run:
        names = keep_runs(names, Path(args.keep))
        print(f"kept the runs in {args.keep}")
    runs = [load_run(f) for f in tqdm(run_files(names), desc="reading runs", unit="run")]
    fields, reply = message_sizes(profile, runs[0].frame_id)
    cal = fit_calibration(runs, profile, fields, reply, command_line(), profile.calibrated)
    kept = cal.residuals["server_compute"].get("kept_from")
    if kept is not None:
        print(f"no offload was answered in these runs: the base station's terms and "
              f"offload_hop_ms are kept from the previous calibration ({kept})")  # fmt: skip
    for run in runs:
        print(f"{run.source}: {run.policy}, {len(run.frames)} results, link "
              f"{'shaped' if run.link_shaped else 'not shaped (loopback)'}")  # fmt: skip
    print(format_calibration(cal))
    if args.json:
        print(json.dumps(cal.as_dict(), indent=1))
    if args.dry_run:
        return 0
    profile.calibration = cal.as_dict()
    profile.save_json(path)
    print(f"wrote the calibration into {path} (retrain the policies on it: make policies)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `calibrate`."""
    p = sub.add_parser(
        "calibrate", help="fit the simulator to recorded live runs and write it into the profile"
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="recordings of live runs (.mcap, from `edgeml demo` or `edgeml bench system`), or "
        "`edgeml bench system --json` files naming theirs",
    )
    workload_arguments(p)
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="copy the runs into DIR first (a bench JSON with its recordings), "
                   "so that the record names files that stay")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="fit and print, write nothing")
    p.add_argument("--json", action="store_true", help="also print the record as JSON")
    p.set_defaults(func=_cmd_calibrate)
