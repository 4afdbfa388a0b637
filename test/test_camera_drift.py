"""Input drift in the live camera source: condition schedules, degraded frames, class mix.

The parsers and frame functions are tested ROS-free; the camera source node runs as its own
process over real DDS, on the test's own ROS_DOMAIN_ID.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from edgeml_ros.msg import GroundTruth
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import DRONE_YAML, RELIABLE, NodeProcess, node_processes, param_setter
from sensor_msgs.msg import Image

from edgeml_ros.bringup.processes import share_file
from edgeml_ros.core.data import ImageDataset, class_ids, next_frame, open_dataset
from edgeml_ros.core.degrade import condition_at, degrade_frame, parse_condition_schedule

# `rl`'s run of the Fashion-MNIST profile's first calibration (kept in docs/calibration until
# 05bb4e3), recorded before GroundTruth named the condition, and its accuracy as that run's
# `edgeml bench system --json` scored it live
OLD_RECORDING = Path(__file__).parent / "recordings" / "demo_rl_before_conditions.mcap"
OLD_RECORDING_ACCURACY = 0.9466666666666667


def test_a_schedule_parses_into_segments():
    assert parse_condition_schedule("0:clean,20:blur,40:noise:2,60:low_light:1.5") == (
        (0.0, "clean", 1.0),
        (20.0, "blur", 1.0),
        (40.0, "noise", 2.0),
        (60.0, "low_light", 1.5),
    )
    assert parse_condition_schedule(" 0 : noise : 0.5 , 2.5:clean ") == (
        (0.0, "noise", 0.5),
        (2.5, "clean", 1.0),
    )
    assert parse_condition_schedule("") == parse_condition_schedule("  ") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0:fog", "entry '0:fog': condition 'fog' unknown; known: clean, blur, noise"),
        ("5:blur", "entry '5:blur': the first entry must start at 0 s"),
        ("0:clean,20:blur,10:noise", "entry '10:noise': starts at 10 s, not after the entry "
                                     "before it (20 s)"),
        ("0:clean,20:blur,20:noise", "entry '20:noise': starts at 20 s, not after"),
        ("0:clean,20", "entry '20' is not of the form START_S:CONDITION[:SEVERITY]"),
        ("0:clean:1:2", "entry '0:clean:1:2' is not of the form"),
        ("0:clean,,20:blur", "entry 2 (empty) is not of the form"),
        ("0:clean,", "entry 2 (empty) is not of the form"),
        ("x:blur", "entry 'x:blur': start 'x' is not a number"),
        ("-1:clean", "entry '-1:clean': start '-1' must be a finite number >= 0"),
        ("0:clean,inf:blur", "start 'inf' must be a finite number"),
        ("0:noise:abc", "entry '0:noise:abc': severity 'abc' is not a number"),
        ("0:noise:0", "entry '0:noise:0': severity must be in (0, 10], not 0.0"),
        ("0:noise:11", "severity must be in (0, 10], not 11.0"),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_refused_naming_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_condition_schedule(text)


def test_the_segment_in_force_holds_until_the_next_and_the_last_holds():
    schedule = parse_condition_schedule("0:clean,20:blur,40:noise:2")
    assert [condition_at(schedule, t)[1:] for t in (-1.0, 0.0, 19.99, 20.0, 39.9, 40.0, 1e6)] == [
        ("clean", 1.0),
        ("clean", 1.0),
        ("clean", 1.0),
        ("blur", 1.0),
        ("blur", 1.0),
        ("noise", 2.0),
        ("noise", 2.0),
    ]
    assert condition_at(schedule, 25.0)[0] == 20.0


@pytest.mark.parametrize("dataset", ["drone_scenes", "fashion_mnist"])
def test_a_degraded_frame_is_the_degraded_image_in_uint8(dataset):
    import torch

    from edgeml_ros.core.degrade import degrade

    pixels, _ = open_dataset(dataset).frames("test")[0]
    assert degrade_frame(pixels, "clean", 3.0, seed=1) is pixels
    for condition in ("blur", "noise", "low_light"):
        frame = degrade_frame(pixels, condition, 2.0, seed=7)
        assert frame.dtype == np.uint8 and frame.shape == pixels.shape
        assert np.array_equal(frame, degrade_frame(pixels, condition, 2.0, seed=7))
        hwc = pixels[..., None] if pixels.ndim == 2 else pixels
        x = torch.from_numpy(hwc.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        expected = degrade(x, condition, 7, 2.0)[0].permute(1, 2, 0).numpy().reshape(pixels.shape)
        assert np.abs(frame / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
    assert not np.array_equal(
        degrade_frame(pixels, "noise", 1.0, seed=1), degrade_frame(pixels, "noise", 1.0, seed=2)
    )
    assert degrade_frame(pixels, "low_light", 1.0).mean() < 0.4 * pixels.mean()
    with pytest.raises(ValueError, match="condition 'fog' unknown"):
        degrade_frame(pixels, "fog")


def test_class_ids_come_from_text_a_number_or_a_list():
    assert class_ids("0,3") == class_ids(" 3 , 0 ") == class_ids([0, 3]) == {0, 3}
    assert class_ids(3) == {3}
    assert class_ids("") == class_ids([]) == frozenset()
    assert class_ids("9", class_count=10) == {9}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a", "'a' is not a class id"),
        ("1,,2", "'' is not a class id"),
        ("-1", "'-1' is not a class id"),
        (2.5, "2.5 is not a class id"),
        (True, "True is not a class id"),
        ([1, "x"], "'x' is not a class id"),
    ],
)
def test_a_bad_class_id_is_refused_by_name(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        class_ids(value)


def test_a_class_id_beyond_the_data_set_is_refused():
    with pytest.raises(ValueError, match=re.escape("class 12 unknown: the classes are 0..9")):
        class_ids("3,12", class_count=10)


def test_next_frame_skips_other_classes_and_wraps_around():
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1)
    frames = ImageDataset("t", "test", images, np.array([0, 1, 2, 0, 1, 2]), ("a", "b", "c"))
    found = next_frame(frames, 4, {0})
    assert found is not None and found[0] == 0 and found[2] == 0 and found[1][0, 0] == 0
    assert next_frame(frames, 1, {2, 0})[0] == 2
    assert next_frame(frames, 5, ())[0] == 5
    assert next_frame(frames, 0, {7}) is None


def test_recordings_from_before_the_condition_still_load():
    """The committed live runs hold GroundTruth without the condition: they still score."""
    from edgeml_ros.bringup.run_record import load_run

    run = load_run(OLD_RECORDING)
    assert len(run.frames) == 600
    assert np.nanmean(run.frames.correct) == pytest.approx(OLD_RECORDING_ACCURACY)


class Camera:
    """A camera source process and what it publishes, matched by header stamp."""

    def __init__(self, ros_node, tmp_path: Path, **overrides) -> None:
        self.node = ros_node
        self.images: dict[tuple, Image] = {}
        self.truth: list[GroundTruth] = []
        ros_node.create_subscription(Image, "camera/image_raw", self._on_image,
                                     qos_profile_sensor_data)  # the camera's QoS  # fmt: skip
        ros_node.create_subscription(GroundTruth, "camera/ground_truth", self.truth.append,
                                     RELIABLE)  # fmt: skip
        self.log_path = tmp_path / "camera_source.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in `log`)
        self.proc = NodeProcess("camera_source", ros_node.domain_id,
                                share_file("config", DRONE_YAML), overrides,
                                log=self._log)  # fmt: skip
        self.clean = open_dataset("drone_scenes").frames("test")

    def _on_image(self, msg: Image) -> None:
        self.images[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    def frames(self) -> list[tuple[GroundTruth, np.ndarray]]:
        """Each ground truth with its image's pixels, in the order published."""
        pairs = []
        for truth in self.truth:
            image = self.images.get((truth.header.stamp.sec, truth.header.stamp.nanosec))
            if image is not None:
                shape = (image.height, image.width, 3)
                pairs.append((truth, np.frombuffer(image.data, np.uint8).reshape(shape)))
        return pairs

    def log(self) -> str:
        """What the node logged (after it has stopped)."""
        self._log.close()
        return self.log_path.read_text()


def test_the_camera_follows_its_schedule_and_says_so(ros_node, tmp_path):
    camera = Camera(ros_node, tmp_path, rate_hz=20.0,
                    condition_schedule="0:clean,1.5:low_light")  # fmt: skip
    with node_processes([camera.proc]):
        assert ros_node.spin_until(
            lambda: sum(t.condition == "low_light" for t, _ in camera.frames()) >= 10, 60
        ), f"{len(camera.truth)} ground truths, {len(camera.images)} images"
    frames = camera.frames()
    conditions = [t.condition for t, _ in frames]
    assert conditions[0] == "clean", "no clean frame before the switch"
    switch = conditions.index("low_light")
    assert set(conditions[:switch]) == {"clean"} and set(conditions[switch:]) == {"low_light"}
    for truth, pixels in frames:
        clean, label = camera.clean[truth.dataset_index]
        assert truth.class_id == label and truth.severity == 1.0
        if truth.condition == "clean":
            assert np.array_equal(pixels, clean)
        else:  # darker, and exactly the degradation of its frame index
            assert pixels.mean() < 0.4 * clean.mean()
            assert np.array_equal(pixels, degrade_frame(clean, "low_light", 1.0,
                                                        truth.dataset_index))  # fmt: skip
    log = camera.log()
    assert re.search(r"input condition: clean \(severity 1\) from t=0\.\d s", log), log
    assert re.search(r"input condition: low_light \(severity 1\) from t=1\.\d s", log), log


def test_live_drift_and_bad_values_refused_by_name_while_frames_go_on(ros_node, tmp_path):
    camera = Camera(ros_node, tmp_path, rate_hz=20.0)
    truth = camera.truth
    with node_processes([camera.proc]):
        assert ros_node.spin_until(lambda: len(truth) >= 3, 60)
        set_param = param_setter(ros_node, "/camera_source")
        refused = {
            ("condition_schedule", "0:clean,5:fog"): "condition_schedule: entry '5:fog': "
            "condition 'fog' unknown",
            ("condition", "dark"): "condition: 'dark' is not one of clean, blur, noise",
            ("severity", 0.0): "severity must be in (0, 10], not 0.0",
            ("classes", "3,x"): "classes: 'x' is not a class id",
            ("classes", 10): "classes: class 10 unknown: the classes are 0..9",
        }
        for (name, value), reason in refused.items():
            result = set_param(name, value)
            assert not result.successful and reason in result.reason, (name, result.reason)
            assert not result.reason.startswith(f"{name}: {name}"), result.reason  # named once
        before = len(truth)
        assert ros_node.spin_until(lambda: len(truth) >= before + 5, 30), "frames stopped"
        assert {(t.condition, t.severity) for t in truth} == {("clean", 1.0)}
        # the class mix and the condition drift live
        assert set_param("classes", [3, 5]).successful
        assert set_param("severity", 2.0).successful
        assert set_param("condition", "noise").successful
        drifting = len(truth)
        assert ros_node.spin_until(
            lambda: sum(t.condition == "noise" for t in truth[drifting:]) >= 5, 30
        )
        assert set_param("classes", "").successful
        every_class = len(truth)
        assert ros_node.spin_until(lambda: len(truth) >= every_class + 10, 30)
    noisy = [t for t in truth[drifting:] if t.condition == "noise"]
    assert all(t.severity == 2.0 for t in noisy)
    assert {t.class_id for t in truth[drifting:every_class]} <= {3, 5}
    assert {t.class_id for t in truth[every_class:]} - {3, 5}, "every class again"
    checked = 0
    for frame_truth, pixels in camera.frames():
        if frame_truth.condition == "noise":
            clean = camera.clean[frame_truth.dataset_index][0]
            index = frame_truth.dataset_index
            assert np.array_equal(pixels, degrade_frame(clean, "noise", 2.0, index))
            checked += 1
    assert checked >= 5
    assert "input condition: noise (severity 2) from t=" in camera.log()
