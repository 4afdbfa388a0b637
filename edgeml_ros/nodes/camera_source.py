"""Camera source: publishes a data set's images as sensor_msgs/Image (rgb8 or mono8).

A stand-in for a drone camera in demos and tests, with ground-truth labels on
`camera/ground_truth` so accuracy can be scored live. By default it publishes the drone
workload's frames (core.scenes: a synthetic composition of real Fashion-MNIST images, 96x96
RGB); it also publishes Fashion-MNIST or any image folder, each image at its own resolution. A
managed node: configure opens the data set, activate starts the frames.

Its inputs can drift as the simulator's scenarios do: an input condition of core.degrade
(blur, noise, low light) on every frame, fixed or following a schedule, and a class mix
narrowed to some classes. Each ground truth names the condition its frame was published under.
"""

from __future__ import annotations

import time

from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image

from edgeml_ros.core.data import class_ids, next_frame, open_dataset
from edgeml_ros.core.degrade import (
    CONDITIONS,
    SCHEDULE_FORMAT,
    check_severity,
    condition_at,
    degrade_frame,
    parse_condition_schedule,
    preload,
)
from edgeml_ros.core.scenes import NAME as DRONE_SCENES
from edgeml_ros.msg import GroundTruth
from edgeml_ros.nodes.common import RELIABLE, ManagedNode, Param, one_of, run_node

SETTLE_S = 0.5


class CameraSourceNode(ManagedNode):
    """Publishes dataset frames at `rate_hz`."""

    diagnostic_name = "camera"

    def __init__(self) -> None:
        self.class_count: int | None = None  # of the data set, once configured
        super().__init__(
            "camera_source",
            [
                Param("rate_hz", 10.0, "Frames per second.", float_range=(0.1, 1000.0)),
                Param("dataset", DRONE_SCENES, f"What to publish: {DRONE_SCENES} (the drone "
                      "workload's frames), fashion_mnist, cifar10 or imagefolder:/path.",
                      at_configure=True),
                Param("split", "test", "Dataset split: test, validation or train.",
                      check=one_of("test", "validation", "train"), at_configure=True),
                Param("start_index", 0, "First index to publish (wraps around the split).",
                      int_range=(0, 1 << 31), at_configure=True),
                Param("max_frames", 0, "Stop after this many frames (0 = never stop).",
                      int_range=(0, 1 << 31)),
                Param("frame_id", "camera_optical_frame", "header.frame_id of the images."),
                Param("publish_ground_truth", True,
                      "Publish each frame's label on camera/ground_truth."),
                Param("publishing", True, "Publish frames (false: hold them; set true to start, "
                      "e.g. once the DDS discovery across a slow link has finished)."),
                Param("wait_for_subscribers", True, "Hold frames until the image topic has had "
                      f"a subscriber for {SETTLE_S} s (until that subscriber has matched this "
                      "publisher in turn)."),
                Param("condition", "clean", "Input condition applied to every frame: "
                      f"{', '.join(CONDITIONS)} (core.degrade).", check=one_of(*CONDITIONS)),
                Param("severity", 1.0, "Severity of `condition`, in (0, 10] (1: the strength "
                      "the profiles measure).", check=check_severity),
                Param("condition_schedule", "", "Input conditions over time, in place of "
                      f"condition and severity unless empty: {SCHEDULE_FORMAT}, in seconds "
                      "from the first frame or from when the schedule is set; the last one "
                      "holds.",
                      check=parse_condition_schedule),
                Param("classes", "", "Publish only frames of these class ids ('0,3', 3 or "
                      "[0, 3]; empty: every class); the frames of other classes are skipped.",
                      check=self._check_classes, dynamic_typing=True),
            ],
        )  # fmt: skip
        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.truth_pub = self.create_publisher(GroundTruth, "camera/ground_truth", RELIABLE)
        self.add_post_set_parameters_callback(self._on_params_set)
        self.dataset = None
        self.timer = None
        self.published = 0
        self.in_force: tuple[str, float] | None = None  # the input condition and severity
        self._schedule_since: Time | None = None

    def configure(self) -> None:
        """Open the data set's split; check the classes; import what the conditions need."""
        name = self.get_parameter("dataset").value
        source = open_dataset(name)
        try:
            class_ids(self.get_parameter("classes").value, len(source.class_names))
        except ValueError as exc:
            raise ValueError(f"classes: {exc}") from None
        self.dataset = source.frames(self.get_parameter("split").value)
        self.class_count = len(source.class_names)
        self.index = self.get_parameter("start_index").value % len(self.dataset)
        self.published = 0
        self._matched_since: float | None = None
        self._read_drift()
        preload([self.get_parameter("condition").value, *(c for _, c, _ in self._schedule)])

    def activate(self) -> None:
        """Publish at `rate_hz`; the condition schedule starts with the first frame."""
        self.timer = self.every(1.0 / self.get_parameter("rate_hz").value, self._tick)
        self._schedule_since, self.in_force = None, None

    def cleanup(self) -> None:
        """Release the dataset."""
        self.dataset, self.timer, self.class_count = None, None, None

    def diagnostic_values(self) -> dict:
        """Frames published so far, and the input condition in force."""
        condition = "" if self.in_force is None else "{} (severity {:g})".format(*self.in_force)
        return {"published": self.published, "next_index": self.index, "condition": condition}

    def _check_classes(self, value) -> None:
        class_ids(value, self.class_count)

    def _on_params_set(self, params) -> None:
        names = {p.name for p in params}
        if self.timer is not None and "rate_hz" in names:
            self.timer.timer_period_ns = int(1e9 / self.get_parameter("rate_hz").value)
        if names & {"condition_schedule", "classes"}:
            self._read_drift()
        if self._schedule_since is not None and "condition_schedule" in names:
            self._schedule_since = self.get_clock().now()

    def _read_drift(self) -> None:
        """Parse the schedule and the classes once, when set (checked by then), not per frame."""
        self._schedule = parse_condition_schedule(self.get_parameter("condition_schedule").value)
        self._classes = class_ids(self.get_parameter("classes").value)

    def _condition(self) -> tuple[str, float]:
        """The input condition and severity in force now (logged when they change)."""
        now = self.get_clock().now()
        if self._schedule_since is None:  # the first frame published
            self._schedule_since = now
        t_s = (now - self._schedule_since).nanoseconds / 1e9
        if self._schedule:
            _, condition, severity = condition_at(self._schedule, t_s)
        else:
            condition = self.get_parameter("condition").value
            severity = self.get_parameter("severity").value
        if (condition, severity) != self.in_force:
            self.in_force = (condition, severity)
            self.get_logger().info(
                f"input condition: {condition} (severity {severity:g}) from t={t_s:.1f} s"
            )
        return condition, severity

    def _subscribers_settled(self) -> bool:
        """True once the image topic has had a subscriber for SETTLE_S.

        A publisher sees a subscriber before that subscriber has matched the publisher in
        turn; best-effort frames sent in between are lost. Ground truth does not wait: whoever
        scores the frames subscribes before they start.
        """
        if self.image_pub.get_subscription_count() == 0:
            self._matched_since = None
            return False
        now = time.monotonic()
        if self._matched_since is None:
            self._matched_since = now
        return now - self._matched_since >= SETTLE_S

    def _tick(self) -> None:
        max_frames = self.get_parameter("max_frames").value
        if not self.get_parameter("publishing").value or (
            max_frames and self.published >= max_frames
        ):
            return
        if self.get_parameter("wait_for_subscribers").value and not self._subscribers_settled():
            return
        found = next_frame(self.dataset, self.index, self._classes)
        if found is None:
            self.get_logger().warning(
                f"no frame of classes {sorted(self._classes)} in the split: none published",
                throttle_duration_sec=10.0,
            )
            return
        self.index, pixels, label = found
        condition, severity = self._condition()
        pixels = degrade_frame(pixels, condition, severity, seed=self.index)
        msg = Image(
            height=pixels.shape[0],
            width=pixels.shape[1],
            encoding="mono8" if pixels.ndim == 2 else "rgb8",
            is_bigendian=0,
            step=pixels.shape[1] * (1 if pixels.ndim == 2 else 3),
        )
        msg.data = pixels.tobytes()
        msg.header.frame_id = self.get_parameter("frame_id").value
        msg.header.stamp = self.get_clock().now().to_msg()  # the capture: nothing left but sending
        self.image_pub.publish(msg)
        if self.get_parameter("publish_ground_truth").value:
            self.truth_pub.publish(
                GroundTruth(header=msg.header, class_id=label, dataset_index=self.index,
                            condition=condition, severity=severity)
            )  # fmt: skip
        self.published += 1
        self.index = (self.index + 1) % len(self.dataset)
        if max_frames and self.published == max_frames:
            self.get_logger().info(f"published {max_frames} frames; done")


def main(args: list[str] | None = None) -> int:
    """Run the camera source node."""
    return run_node(CameraSourceNode, args)
