"""`edgeml profile`: measure a model on this machine and save its profile."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeml_ros.cli.common import command_line, positive_int


def _cmd_profile(args: argparse.Namespace) -> int:
    from edgeml_ros.core.checkpoint import load_checkpoint
    from edgeml_ros.core.degrade import CONDITIONS
    from edgeml_ros.core.energy import device_class
    from edgeml_ros.core.profiles import load_profile_conditions, profile_model, retime_profile
    from edgeml_ros.core.train import split_frames

    bundle = load_checkpoint(args.checkpoint)
    if args.retime:
        profile, tables = load_profile_conditions(args.retime)
        profile = retime_profile(profile, bundle, args.runs, args.threads, args.server_threads,
                                 command_line())  # fmt: skip
        device = device_class(profile.device_class["name"])
    else:
        frames = {}
        for condition in CONDITIONS:
            frames[condition], y = split_frames(bundle.meta, "validation", condition)
        device = device_class(args.device_class)
        profile, tables = profile_model(
            bundle, frames, y, device, args.runs, args.threads, args.server_threads,
            command_line(), args.image_encodings,
        )  # fmt: skip
    out = Path(args.out)
    profile.save(out, tables)
    print(f"saved {out} and {out.with_suffix('.npz').name}: {profile.model_id}")
    for label, threads, key in (("drone", args.threads, "latency_ms_median"),
                                ("base station", args.server_threads,
                                 "server_latency_ms_median")):  # fmt: skip
        blocks = ", ".join(f"{getattr(b, key):.2f}" for b in profile.blocks)
        print(f"  block latency medians (ms, {threads} threads, {label}): {blocks}")
    print(
        f"  {device.name} emulated at compute_slowdown {profile.compute_slowdown(device):.2f}: "
        f"reference model {device.reference_ms} ms there, {profile.reference_ms:.1f} ms here"
    )
    for condition, table in tables.items():
        print(f"  exit accuracy on {profile.samples} validation samples ({condition}): "
              + ", ".join(f"{a:.2%}" for a in table.exit_accuracy()))  # fmt: skip
    clean = tables["clean"]
    for encoding, mean_bytes in profile.image_bytes.items():
        print(f"  the frame as {encoding}: {mean_bytes:.0f} B mean, final exit "
              f"{clean.image_accuracy(encoding):.2%} (clean)")  # fmt: skip
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `profile`."""
    from edgeml_ros.core.checkpoint import DEFAULT_CHECKPOINT
    from edgeml_ros.core.codec import IMAGE_ENCODINGS
    from edgeml_ros.core.energy import DEVICE_CLASSES

    p = sub.add_parser("profile", help="measure a model on this machine and save its profile")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model checkpoint")
    p.add_argument("--device-class", default="jetson_nano", choices=sorted(DEVICE_CLASSES),
                   help="the drone computer (energy model and compute speed) recorded with "
                   "the profile")  # fmt: skip
    p.add_argument("--runs", type=positive_int, default=50, help="timed runs per block")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads of the drone's compute (the perception node's)",
    )
    p.add_argument(
        "--server-threads",
        type=positive_int,
        default=2,
        help="torch CPU threads of the base station's (the offload node's)",
    )
    p.add_argument("--image-encodings", nargs="*", default=list(IMAGE_ENCODINGS),
                   choices=IMAGE_ENCODINGS, metavar="ENCODING",
                   help="the image encodings to measure the camera frame in, its bytes and the "
                   "final exit's accuracy on it (cloud_png needs png, cloud_jpeg every jpeg; "
                   f"default: all of {', '.join(IMAGE_ENCODINGS)})")  # fmt: skip
    p.add_argument("--retime", metavar="PROFILE", default=None,
                   help="measure only the times again (blocks, exits, the reference model) "
                   "and keep the rest of this profile of the same checkpoint: for a quiet "
                   "machine, or the drone's own computer")  # fmt: skip
    p.add_argument("--out", required=True, help="profile JSON path (.npz written beside it)")
    p.set_defaults(func=_cmd_profile)
