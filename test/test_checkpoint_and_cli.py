import subprocess
import sys

import pytest
import torch

from edgeml_ros.cli import build_parser
from edgeml_ros.core.checkpoint import TINY_CHECKPOINT, load_checkpoint, weights_digest


def test_committed_checkpoint_is_verified_and_documented(bundle):
    meta = bundle.meta
    assert meta.weights_digest == weights_digest(bundle.model)
    assert meta.command.startswith("edgeml train")
    assert meta.dataset == "fashion_mnist" and len(meta.exit_accuracy) == bundle.model.num_exits
    assert meta.exit_accuracy[-1] > 0.85


def test_tampered_checkpoint_is_refused(tmp_path):
    blob = torch.load(TINY_CHECKPOINT, weights_only=True)
    first = next(iter(blob["state_dict"]))
    blob["state_dict"][first] = blob["state_dict"][first] + 1
    path = tmp_path / "tampered.pt"
    torch.save(blob, path)
    with pytest.raises(ValueError, match="digest"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


@pytest.mark.parametrize(
    "argv,match",
    [
        (["demo", "--duration", "-3"], "must be > 0"),
        (["demo", "--rate", "fast"], "expected a number, got 'fast'"),
        (["train", "--epochs", "0"], "must be > 0"),
        (["fly"], "invalid choice"),
        (["bench", "goodput", "--points", "0.13"], "'0.13' is not RATE:CUT"),
        (["bench", "goodput", "--points", "fast:1"], "'fast:1' is not RATE:CUT"),
        (["bench", "goodput", "--points", "0:1"], "Mbit/s in (0, 1000)"),
    ],
)
def test_cli_rejects_bad_arguments(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def test_cli_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "edgeml_ros.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "demo" in out.stdout


def test_goodput_points_parse_by_default_and_from_the_command_line():
    from edgeml_ros.bringup.goodput_bench import DEFAULT_POINTS, GoodputPoint

    assert build_parser().parse_args(["bench", "goodput"]).points is None  # DEFAULT_POINTS
    assert [GoodputPoint.parse(p).cut_point for p in DEFAULT_POINTS] == [0, 0, 2, 1]
    args = build_parser().parse_args(["bench", "goodput", "--points", "0.13:0", "2:1"])
    assert args.points == [GoodputPoint(0.13, 0), GoodputPoint(2.0, 1)]
