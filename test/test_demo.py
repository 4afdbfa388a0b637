import json
import subprocess
import sys


def test_demo_runs_nodes_as_processes_and_accounts_for_every_frame(tmp_path):
    out = tmp_path / "demo.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeml_ros.cli",
            "demo",
            "--duration",
            "4",
            "--rate",
            "10",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "frames without result 0" in proc.stdout
    summary = json.loads(out.read_text())
    # Every frame that reached perception has exactly one result. The demo's camera QoS is
    # best effort (as for a real camera), so a frame may be lost before it gets there.
    assert summary["frames_published"] == 40
    assert 36 <= summary["frames_in"] == summary["results_out"] <= 40
    assert summary["frames_without_result"] == 0 and summary["duplicate_results"] == 0
    assert summary["offloaded"] > 0 and summary["where"].get("drone", 0) > 0
    assert 0.6 < summary["accuracy"] <= 1.0
    assert 0 < summary["latency_ms_p50"] <= summary["latency_ms_p95"]
