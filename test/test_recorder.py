import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from calibration_helpers import TRUE, synthetic_run
from edgeml_ros.msg import ExecutionPolicy, GroundTruth, InferenceResult, LinkQuality
from mcap.reader import make_reader
from std_msgs.msg import Header

from edgeml_ros.bringup.recorder import McapRecorder, message_definition
from edgeml_ros.bringup.run_record import RUN_RECORD, load_run, run_files, run_record
from edgeml_ros.cli import main
from edgeml_ros.core.calibration import RunFileError
from edgeml_ros.core.profiles import PROFILE_DIR, load_profile

B_VGG = PROFILE_DIR / "fashion_mnist_b_vgg.json"  # the profile the synthetic runs are of


def test_definitions_carry_their_dependencies_once():
    text = message_definition("edgeml_ros/msg/InferenceResult")
    assert text.startswith("# ") or "frame_seq" in text.split("=" * 80)[0]
    assert (
        text.count("MSG: std_msgs/Header") == 1 and text.count("MSG: builtin_interfaces/Time") == 1
    )


def test_recorded_messages_read_back(tmp_path):
    recorder = McapRecorder(tmp_path / "t.mcap")
    for seq in range(3):
        recorder.write("perception/result", InferenceResult(frame_seq=seq), 1_000 + seq)
    recorder.close()
    with open(tmp_path / "t.mcap", "rb") as f:
        messages = list(make_reader(f).iter_messages())
    assert [m.log_time for _, _, m in messages] == [1000, 1001, 1002]
    assert messages[0][0].name == "edgeml_ros/msg/InferenceResult"
    assert messages[0][0].encoding == "ros2msg" and messages[0][1].message_encoding == "cdr"


def record_run(path, run, plan_digest: str) -> None:
    """Write a synthetic live run as `edgeml bench system` records one."""
    recorder = McapRecorder(path)
    f = run.frames
    start = int(f.stamp_s[0] * 1e9) - 10**9
    recorder.write("execution_policy", ExecutionPolicy(cut_point=0, weights_digest=plan_digest),
                   start)  # fmt: skip
    for k in range(len(f)):
        stamp_ns = round(f.stamp_s[k] * 1e9)
        header = Header(frame_id=run.frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)
        recorder.write("camera/ground_truth", GroundTruth(header=header, class_id=k % 10),
                       stamp_ns)  # fmt: skip
        result = InferenceResult(header=header, frame_seq=k, class_id=k % 10)
        for name in ("where", "status", "cut_point", "exit_index", "offload_bytes"):
            setattr(result, name, int(getattr(f, name)[k]))
        for name in ("decode_ms", "head_ms", "encode_ms", "transfer_ms", "tail_ms", "total_ms",
                     "input_age_ms"):  # fmt: skip
            setattr(result, name, float(getattr(f, name)[k]))
        recorder.write("perception/result", result, stamp_ns + int(f.latency_ms[k] * 1e6))
    for t_s, mbps, rtt_ms in run.estimates:
        recorder.write("link_quality", LinkQuality(bandwidth_mbps=mbps, rtt_ms=rtt_ms),
                       round(t_s * 1e9))  # fmt: skip
    recorder.metadata(RUN_RECORD, run_record(run.command, run.policy, run.rate_hz,
                                             run.deadline_ms, run.compute_slowdown,
                                             run.link.tolist()))  # fmt: skip
    recorder.close()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    profile = load_profile(B_VGG)[0]
    run = synthetic_run(profile, TRUE)
    stamp = run.frames.stamp_s[0]
    run = replace(run, estimates=np.array([[stamp + 0.5, 5.0, 23.0], [stamp + 1.0, 4.5, 22.5]]))
    path = tmp_path_factory.mktemp("runs") / "demo_mixed.mcap"
    record_run(path, run, profile.weights_digest)
    return path, run


def test_a_recorded_run_reads_back_as_it_was_made(recorded):
    path, made = recorded
    run = load_run(path)
    assert (run.policy, run.command, run.rate_hz, run.compute_slowdown, run.link_shaped) == (
        made.policy, made.command, made.rate_hz, made.compute_slowdown, True)  # fmt: skip
    np.testing.assert_array_equal(run.link, made.link)
    np.testing.assert_allclose(run.estimates, made.estimates, rtol=1e-6)  # the link monitor's
    for name in ("where", "status", "cut_point", "exit_index", "offload_bytes"):
        np.testing.assert_array_equal(getattr(run.frames, name), getattr(made.frames, name))
    for name in ("head_ms", "tail_ms", "transfer_ms", "input_age_ms"):
        np.testing.assert_allclose(
            getattr(run.frames, name), getattr(made.frames, name), rtol=1e-6
        )  # fmt: skip (float32 fields)
    np.testing.assert_allclose(run.frames.latency_ms, made.frames.latency_ms, atol=1e-5)
    assert np.all(run.frames.correct == 1.0) and run.frame_id == "camera"


def test_calibrate_writes_the_fitted_terms_and_their_runs_into_the_profile(recorded, tmp_path):
    path, _ = recorded
    profile = tmp_path / "p.json"
    shutil.copy(B_VGG, profile)
    shutil.copy(B_VGG.with_suffix(".npz"), profile.with_suffix(".npz"))
    before = profile.read_text()
    assert main(["calibrate", str(path), "--profile", str(profile), "--dry-run"]) == 0
    assert profile.read_text() == before
    bench = tmp_path / "bench_system.json"  # a benchmark's JSON naming its recording
    bench.write_text(json.dumps({"policies": {"mixed": {"mcap": str(path)}}}))
    kept = tmp_path / "kept"  # the runs copied where they stay, named in the record
    assert main(["calibrate", str(bench), "--profile", str(profile), "--keep", str(kept)]) == 0
    cal = load_profile(profile)[0].calibrated
    assert cal.drone_scale == pytest.approx(TRUE.drone_scale, rel=0.05)
    assert cal.offload_hop_ms == pytest.approx(TRUE.offload_hop_ms, rel=0.05)
    assert cal.runs[0]["file"] == str(kept / path.name) and cal.command.startswith("edgeml ")
    assert (kept / path.name).read_bytes() == path.read_bytes()
    assert json.loads((kept / bench.name).read_text())["policies"]["mixed"]["mcap"] == str(
        kept / path.name
    )
    # the request's fields and the reply, as serialized for this model
    assert 150 < cal.request_fields_bytes < 250 and 80 < cal.reply_bytes < 200


def test_files_that_are_not_recorded_runs_are_refused_by_name(recorded, tmp_path, capsys):
    text = tmp_path / "notes.mcap"
    text.write_text("not a recording")
    bare = tmp_path / "bare.mcap"
    McapRecorder(bare).close()
    no_mcaps = tmp_path / "old.json"
    no_mcaps.write_text(json.dumps({"policies": {"rl": {"latency_ms_p50": 1.0}}}))
    for path, problem in ((text, "not a readable MCAP"), (bare, "no edgeml_run record"),
                          (tmp_path / "gone.mcap", "not found"),
                          (no_mcaps, "--mcap-dir")):  # fmt: skip
        with pytest.raises(RunFileError, match=problem):
            [load_run(f) for f in run_files([str(path)])]
    assert main(["calibrate", str(bare), "--profile", str(B_VGG)]) == 2
    assert "no edgeml_run record" in capsys.readouterr().err
