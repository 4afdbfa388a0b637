import json
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
        (["bench", "link", "--phases", "2", "-1"], "'-1' is not a rate in Mbit/s"),
        (["bench", "link", "--phases", "fast"], "'fast' is not a rate in Mbit/s"),
        (["evaluate", "--regime-slowdowns", "3", "0"], "must be > 0"),
        (["evaluate", "--regime-rates", "fast"], "expected a number, got 'fast'"),
    ],
)
def test_cli_rejects_bad_arguments(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def test_bench_reference_times_this_machine_against_the_profile(tmp_path):
    out = tmp_path / "reference.json"
    argv = ["bench", "reference", "--runs", "2", "--repeats", "2", "--json", str(out)]
    subprocess.run([sys.executable, "-m", "edgeml_ros.cli", *argv], check=True)
    result = json.loads(out.read_text())
    assert result["model_id"] == "drone_scenes/resnet18" and len(result["here_ms"]) == 2
    assert result["here_over_profiled"] == pytest.approx(
        [t / result["profiled_ms"] for t in result["here_ms"]]
    )
    assert all(t > 0 for t in result["here_ms"]) and result["emulated_slowdown"] >= 1


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


def test_link_phases_by_default_and_from_the_command_line():
    assert build_parser().parse_args(["bench", "link"]).phases == [
        0.04,
        0.13,
        2.0,
        20.0,
        0.0,
        20.0,
    ]
    assert build_parser().parse_args(["bench", "link", "--phases", "0.5", "0"]).phases == [0.5, 0]


def test_link_results_page_names_its_command_and_each_phase(tmp_path):
    from edgeml_ros.bringup.link_bench import format_scores, markdown_link, plot_link
    from edgeml_ros.core.link import score_estimate

    shaped, estimates = [(0.0, 0.04), (10.0, 0.0)], [(1.0, 0.06), (3.0, 0.0392), (12.0, 0.0)]
    scores = score_estimate(shaped, estimates, end_s=20.0)
    out = {"command": "edgeml bench link --phases 0.04 0", "cut_point": 0, "rate_hz": 10.0,
           "phase_s": 10.0, "estimates": estimates}  # fmt: skip
    page = markdown_link(out, scores, "docs/bench_link.png")
    assert "`edgeml bench link --phases 0.04 0`" in page and "![" in page
    assert "| 0.04 Mbit/s | 0.0392 Mbit/s | -2 % | 3.0 s | yes |" in page
    assert "| outage | 0 Mbit/s | n/a | 2.0 s | yes |" in page
    assert format_scores(scores).count("yes") == 2
    plot_link(out, scores, tmp_path / "link.png")
    assert (tmp_path / "link.png").stat().st_size > 0
