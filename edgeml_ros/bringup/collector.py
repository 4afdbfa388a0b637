"""The demo's collector node: receives every result, ground truth and report, and scores them.

Frame accounting (every frame in has exactly one result), exits, accuracy against the camera's
ground truth, latency from the camera stamp, modelled energy, cost by part, and the link and
plan over time for the plot. Energy is the energy model's, not a measurement.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.node import Node
from sensor_msgs.msg import BatteryState

from edgeml_ros.bringup.recorder import McapRecorder
from edgeml_ros.core.battery import result_energy_j
from edgeml_ros.core.energy import DeviceEnergy
from edgeml_ros.core.link import PhaseScore, score_estimate
from edgeml_ros.core.outcome import Where, drone_compute_ms
from edgeml_ros.msg import (
    BaseStationLoad,
    ExecutionPolicy,
    GroundTruth,
    InferenceResult,
    LinkQuality,
    ResultBatch,
)
from edgeml_ros.nodes.common import LATCHED, MONITOR, RELIABLE


def frame_key(header) -> tuple[int, int, str]:
    """What ties a frame's ground truth to its result: its camera stamp and frame id."""
    return header.stamp.sec, header.stamp.nanosec, header.frame_id


def image_key(dataset_index: int, shown_before: int) -> int:
    """What ties a frame to the same frame of another run of the camera.

    Its dataset image, and how many times the camera showed that image before (the dataset
    index in the low 32 bits).
    """
    return (shown_before << 32) | dataset_index


def stamp_s(header) -> float:
    """A header's stamp in seconds."""
    return header.stamp.sec + header.stamp.nanosec / 1e9


class Collector(Node):
    """Receives results, ground truth and diagnostics, and scores them."""

    def __init__(
        self,
        deadline_ms: float,
        device: DeviceEnergy,
        recorder: McapRecorder | None = None,
        context: Context | None = None,
    ) -> None:
        super().__init__("demo_collector", context=context)
        self.deadline_ms, self.device, self.recorder = deadline_ms, device, recorder
        self.results: dict[int, tuple[InferenceResult, float]] = {}
        self.duplicates = 0
        self.truth: dict[tuple[int, int, str], int] = {}
        self.conditions: dict[tuple[int, int, str], str] = {}  # each frame's input condition
        self.images: dict[tuple[int, int, str], int] = {}  # each frame's image_key
        self.image_shown: Counter[int] = Counter()  # times each dataset image was published
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.started = time.monotonic()
        self.started_epoch = time.time()  # the same instant on the wall clock
        self.first_frame_stamp: float | None = None  # the first ground truth's, epoch seconds
        self.plans: list[tuple[float, int, float, str]] = []  # (t, cut, threshold, reason)
        self.link: list[tuple[float, float]] = []  # (t, Mbit/s)
        self.shaped: list[tuple[float, float, float]] = []  # (t, Mbit/s, RTT ms) applied
        self.base_load: list[tuple[float, float]] = []  # (t, requests answered per second)
        # arrival times of results the plan sent to the base station (answered there or not)
        self.offload_wanted: list[float] = []
        # audits per result batch: (t, sent, answered, agreeing with the final exit)
        self.audits: list[tuple[float, int, int, int]] = []
        for msg_type, topic, callback, qos in (
            (InferenceResult, "perception/result", self._on_result, RELIABLE),
            (GroundTruth, "camera/ground_truth", self._on_truth, RELIABLE),
            (DiagnosticArray, "/diagnostics", self._on_diag, MONITOR),
            (ExecutionPolicy, "execution_policy", self._on_plan, LATCHED),
            (LinkQuality, "link_quality", self._on_link, 10),
            (BatteryState, "battery_state", None, 10),
            (BaseStationLoad, "offload/load", self._on_load, MONITOR),
        ):
            self.create_subscription(msg_type, topic, self._recording(topic, callback), qos)
        # the batches only for their audit counts: their results are recorded one by one above
        self.create_subscription(ResultBatch, "perception/result_batch", self._on_batch, RELIABLE)

    def publishers_discovered(self) -> bool:
        """Whether every topic this node reads has a publisher it has discovered.

        Discovery then reached both ways: a publisher's endpoint arrives only from a participant
        that knows this one, so its messages will reach this node.
        """
        return all(self.count_publishers(sub.topic_name) > 0 for sub in self.subscriptions)

    def _recording(self, topic: str, callback):
        """`callback`, then the message into the MCAP recording (if any) with its receive time.

        The callback comes first: a result's latency ends when it arrives, not after the
        recording's serialization.
        """

        def handle(msg) -> None:
            received = self.get_clock().now().nanoseconds
            if callback is not None:
                callback(msg)
            if self.recorder is not None:
                self.recorder.write(topic, msg, received)

        return handle

    def _on_plan(self, msg: ExecutionPolicy) -> None:
        early = list(msg.exit_thresholds[:-1]) or [0.0]
        self.plans.append((time.monotonic() - self.started, msg.cut_point, min(early),
                           msg.reason))  # fmt: skip

    def _on_batch(self, msg: ResultBatch) -> None:
        if msg.audits_sent or msg.audits_answered:
            self.audits.append((time.monotonic() - self.started, msg.audits_sent,
                                msg.audits_answered, msg.audits_agreeing))  # fmt: skip

    def _on_load(self, msg: BaseStationLoad) -> None:
        self.base_load.append((time.monotonic() - self.started, msg.requests_per_s))

    def _on_link(self, msg: LinkQuality) -> None:
        self.link.append((time.monotonic() - self.started, msg.bandwidth_mbps))

    def link_scores(self) -> list[PhaseScore]:
        """The link estimate against the shaped rate, phase by phase (error, settling time)."""
        shaped = [(t, mbps) for t, mbps, _ in self.shaped]  # the last: when the run ended
        return score_estimate(shaped[:-1], self.link, shaped[-1][0]) if len(shaped) > 1 else []

    def policy_changes(self) -> int:
        """Plan changes published by the controller (repeats of the same plan not counted)."""
        plans = [(cut, thr) for _, cut, thr, _ in self.plans]
        return sum(1 for a, b in itertools.pairwise(plans) if a != b)

    def _on_result(self, msg: InferenceResult) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if msg.frame_seq in self.results:
            self.duplicates += 1
        self.results[msg.frame_seq] = (msg, (now - stamp) / 1e6)
        if msg.where in (InferenceResult.WHERE_BASE, InferenceResult.WHERE_FALLBACK):
            self.offload_wanted.append(time.monotonic() - self.started)

    def _scored(self) -> list[tuple[InferenceResult, int]]:
        """Answered results whose ground truth came, with the true class."""
        ok = InferenceResult.STATUS_OK
        return [(r, self.truth[k]) for r, _ in self.results.values()
                if r.status == ok and (k := frame_key(r.header)) in self.truth]  # fmt: skip

    def energy_j(self, r: InferenceResult) -> float:
        """A result's modelled energy on the drone: its compute, and its radio's time."""
        return result_energy_j(
            self.device,
            drone_compute_ms(r.where, r.head_ms, r.tail_ms),
            r.transfer_ms + (r.tail_ms if r.where == Where.BASE else 0.0),
        )

    def frames(self) -> dict[str, np.ndarray]:
        """Every result as parallel arrays, in capture order.

        `t_s` (since this collector started, by camera stamp), `correct` (against the camera's
        label; a frame without an answer or a label is wrong), `latency_s` (camera stamp to this
        collector), `energy_j` (modelled; 0 for a frame without an answer), `fallback` (1: an
        offload whose reply did not come in time, answered on the drone) and `image` (its
        image_key; -1 for a frame whose label did not come).
        """
        ok = InferenceResult.STATUS_OK
        rows = sorted(
            (stamp_s(r.header) - self.started_epoch,
             r.status == ok and self.truth.get(frame_key(r.header)) == r.class_id,
             latency_ms / 1000.0, self.energy_j(r) if r.status == ok else 0.0,
             r.where == Where.FALLBACK, self.images.get(frame_key(r.header), -1))
            for r, latency_ms in self.results.values()
        )  # fmt: skip
        *timed, images = list(zip(*rows, strict=True)) if rows else [[]] * 6
        names = ("t_s", "correct", "latency_s", "energy_j", "fallback")
        frames = {name: np.array(c, dtype=float) for name, c in zip(names, timed, strict=True)}
        frames["image"] = np.array(images, dtype=np.int64)
        return frames

    def accuracy_by_condition(self, scored: list[tuple[InferenceResult, int]]) -> dict:
        """Accuracy and frames per input condition the camera published under."""
        by: dict[str, list[bool]] = {}
        for r, truth in scored:
            condition = self.conditions[frame_key(r.header)] or "clean"
            by.setdefault(condition, []).append(r.class_id == truth)
        return {
            c: {"accuracy": float(np.mean(v)), "frames": len(v)} for c, v in sorted(by.items())
        }

    def accuracy_over_time(self, window_s: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy of the answered frames captured in the last `window_s`, at each capture.

        Times are seconds since this collector started, by the frames' camera stamps.
        """
        scored = sorted((stamp_s(r.header) - self.started_epoch, r.class_id == truth)
                        for r, truth in self._scored())  # fmt: skip
        if not scored:
            return np.zeros(0), np.zeros(0)
        t, correct = (np.array(v, dtype=float) for v in zip(*scored, strict=True))
        sums = np.concatenate([[0.0], np.cumsum(correct)])
        first = np.searchsorted(t, t - window_s, side="right")
        return t, (sums[1:] - sums[first]) / (np.arange(1, len(t) + 1) - first)

    def _on_truth(self, msg: GroundTruth) -> None:
        key = frame_key(msg.header)
        if self.first_frame_stamp is None:
            self.first_frame_stamp = stamp_s(msg.header)
        self.truth[key] = msg.class_id
        self.conditions[key] = msg.condition
        self.images[key] = image_key(msg.dataset_index, self.image_shown[msg.dataset_index])
        self.image_shown[msg.dataset_index] += 1

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.hardware_id] = {kv.key: kv.value for kv in status.values}

    def perception_counter(self, key: str) -> int:
        """A counter from the perception node's latest diagnostics (-1 before any)."""
        values = self.diagnostics.get("/perception", {})
        return int(values.get(key, -1))

    def breakdown(self) -> dict:
        """Median per-frame cost by part, over answered frames (ms).

        conversion = image decoding; model = head plus tail (drone or base station); serialization
        = feature encoding; link = offload send to reply, less the base station's tail; dds_in =
        camera to perception (the frame's age on arrival); dds_out = result to this collector;
        queueing = the rest of the node's time. Framework overhead is everything but model and
        link.
        """
        rows = [(r, lat) for r, lat in self.results.values()
                if r.status == InferenceResult.STATUS_OK]  # fmt: skip
        if not rows:
            return {}
        parts = {
            "conversion": [r.decode_ms for r, _ in rows],
            "model": [r.head_ms + r.tail_ms for r, _ in rows],
            "serialization": [r.encode_ms for r, _ in rows],
            "link": [r.transfer_ms for r, _ in rows],
            "dds_in": [r.input_age_ms for r, _ in rows],
            "dds_out": [max(0.0, lat - r.input_age_ms - r.total_ms) for r, lat in rows],
            "queueing": [max(0.0, r.total_ms - r.decode_ms - r.head_ms - r.encode_ms
                             - r.transfer_ms - r.tail_ms) for r, _ in rows],
        }  # fmt: skip
        overhead = [lat - r.head_ms - r.tail_ms - r.transfer_ms for r, lat in rows]
        out = {f"{k}_ms_p50": float(np.median(v)) for k, v in parts.items()}
        out["framework_overhead_ms_p50"] = float(np.median(overhead))
        return out

    def summary(self) -> dict:
        """Frame accounting, exits, accuracy and latency over everything received."""
        results = [r for r, _ in self.results.values()]
        latencies = np.array([lat for _, lat in self.results.values()])
        ok = [r for r in results if r.status == InferenceResult.STATUS_OK]
        scored = self._scored()
        sent, answered, agreeing = (sum(a[i] for a in self.audits) for i in (1, 2, 3))
        where = Counter(Where(r.where).name.lower() for r in results)
        frames_in = self.perception_counter("frames_in")
        energy = [self.energy_j(r) for r in ok]
        return {
            "frames_in": frames_in,
            "results_out": len(results),
            "frames_without_result": max(frames_in - len(results), 0),
            "duplicate_results": self.duplicates,
            "exits": {str(k): v for k, v in sorted(Counter(r.exit_index for r in ok).items())},
            "where": dict(sorted(where.items())),
            "offloaded": sum(1 for r in results if r.offload_bytes > 0),
            "fallbacks": where.get("fallback", 0),
            "errors": sum(
                1
                for r in results
                if r.status not in (InferenceResult.STATUS_OK, InferenceResult.STATUS_STALE)
            ),
            "accuracy": float(np.mean([r.class_id == t for r, t in scored])) if scored else None,
            "accuracy_by_condition": self.accuracy_by_condition(scored),
            "scored_frames": len(scored),
            "latency_ms_p50": float(np.percentile(latencies, 50)) if len(results) else None,
            "latency_ms_p95": float(np.percentile(latencies, 95)) if len(results) else None,
            "deadline_miss_rate": float(np.mean(latencies > self.deadline_ms))
            if len(results)
            else None,
            "latency_ms_p99": float(np.percentile(latencies, 99)) if len(results) else None,
            "energy_j_per_frame": float(np.mean(energy)) if energy else None,
            **self.breakdown(),
            "stale_drops": sum(1 for r in results if r.status == InferenceResult.STATUS_STALE),
            "policy_changes": self.policy_changes(),
            "offload_bytes_mean": float(
                np.mean([r.offload_bytes for r in results if r.offload_bytes] or [0])
            ),
            "offload_window_full": self.perception_counter("window_full"),
            "longest_offload_gap_s": self.longest_offload_gap_s(results),
            "first_plan_s": self.first_plan_s(),
            "audits_sent": sent,
            "audits_answered": answered,
            "audit_agreement": agreeing / answered if answered else None,
        }

    def first_plan_s(self) -> float | None:
        """Seconds from the first camera frame to the controller's first plan (0: before it).

        Until then the perception node runs the plan of its parameters (config/drone.yaml).
        """
        if not self.plans or self.first_frame_stamp is None:
            return None
        return max(0.0, self.started_epoch + self.plans[0][0] - self.first_frame_stamp)

    @staticmethod
    def longest_offload_gap_s(results: list[InferenceResult]) -> float | None:
        """Longest time, by camera stamp, between two frames the base station answered.

        With the link cut for T seconds, this minus T is how long offloading took to recover.
        """
        ok = InferenceResult.STATUS_OK
        answered = [r for r in results if r.where == Where.BASE and r.status == ok]
        stamps = sorted(stamp_s(r.header) for r in answered)
        return float(np.max(np.diff(stamps))) if len(stamps) > 1 else None
