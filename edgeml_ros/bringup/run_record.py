"""A live run's recording as the calibration reads it: MCAP telemetry plus how the run was made.

The demo and `edgeml bench system` record each run's telemetry to an MCAP file
(bringup.recorder) and add one metadata record, `edgeml_run`, with what the messages do not
say: the command, the camera rate, the deadline, the drone's emulated compute slowdown, whether
the link was shaped (the nodes then use the radio-link DDS profile) and the rates and RTTs the
shaper applied, with their wall-clock times. `load_run` reads such a file back into a
`core.calibration.LiveRun`, checking everything it uses.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeml_ros.bringup.shaper import TBF_BURST_MS, TBF_MIN_BURST_BYTES
from edgeml_ros.core.calibration import LiveFrames, LiveRun, RunFileError

if TYPE_CHECKING:
    from edgeml_ros.bringup.collector import Collector
    from edgeml_ros.bringup.demo import DemoConfig
    from edgeml_ros.bringup.recorder import McapRecorder
    from edgeml_ros.core.profiles import Profile

RUN_RECORD = "edgeml_run"
RUN_RECORD_VERSION = "1"
RESULT_TOPIC, TRUTH_TOPIC, PLAN_TOPIC, LINK_TOPIC = (
    "perception/result",
    "camera/ground_truth",
    "execution_policy",
    "link_quality",
)
# Fields added to the recorded messages since older runs were recorded (test/recordings), at
# their ends: per topic and addition, oldest first, its last field's line in the message
# definition and what a recording without it lacks, as CDR (struct format and values, each
# aligned as CDR aligns it): for GroundTruth an empty condition and severity 0, for
# InferenceResult neither auditable nor audited, then no profiled time, for ExecutionPolicy no
# audits.
ADDED_FIELDS = {
    TRUTH_TOPIC: ((b"float32 severity", (("<I", 1), ("<B", 0), ("<f", 0.0))),),
    RESULT_TOPIC: (
        (b"bool audited", (("<?", False), ("<?", False))),
        (b"float32 profiled_ms", (("<f", 0.0),)),
    ),
    PLAN_TOPIC: ((b"float32 audit_share", (("<f", 0.0),)),),
}
CDR_HEADER_BYTES = 4  # the encapsulation header: alignment counts from after it


def run_record(
    command: str,
    policy: str,
    rate_hz: float,
    deadline_ms: float,
    compute_slowdown: float,
    link: list[list[float]],
) -> dict[str, str]:
    """The `edgeml_run` record of a run.

    `link` holds [wall-clock s, Mbit/s, RTT ms] as the shaper applied them (empty: loopback),
    whose token bucket holds TBF_BURST_MS of the rate, at least TBF_MIN_BURST_BYTES.
    """
    return {
        "link_burst_ms": repr(TBF_BURST_MS if link else 0.0),
        "link_burst_min_bytes": str(TBF_MIN_BURST_BYTES if link else 0),
        "version": RUN_RECORD_VERSION,
        "command": command,
        "policy": policy,
        "rate_hz": repr(float(rate_hz)),
        "deadline_ms": repr(float(deadline_ms)),
        "compute_slowdown": repr(float(compute_slowdown)),
        "link_shaped": "true" if link else "false",
        "link": json.dumps(link),
    }


def write_run_record(
    recorder: McapRecorder, cfg: DemoConfig, slowdown: float, policy: str, collector: Collector
) -> None:
    """Add the `edgeml_run` record of one run (drone emulated at `slowdown`) to its recording."""
    to_epoch = collector.started + time.time() - time.monotonic()
    link = [[to_epoch + t, mbps, rtt] for t, mbps, rtt in collector.shaped]
    recorder.metadata(RUN_RECORD, run_record(cfg.command, policy, cfg.rate_hz, cfg.deadline_ms,
                                             slowdown, link))  # fmt: skip


def _number(record: dict[str, str], key: str, path: Path) -> float:
    try:
        value = float(record[key])
    except KeyError:
        raise RunFileError(f"{path}: the {RUN_RECORD} record lacks {key!r}") from None
    except ValueError:
        raise RunFileError(f"{path}: {key} {record[key]!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise RunFileError(f"{path}: {key} must be a finite number > 0, got {value}")
    return value


def _link(record: dict[str, str], path: Path) -> np.ndarray:
    """The applied link changes as an (n, 3) array: wall-clock s, Mbit/s, RTT ms."""
    try:
        rows = np.array(json.loads(record.get("link", "[]")), dtype=np.float64).reshape(-1, 3)
    except (ValueError, TypeError):
        raise RunFileError(f"{path}: the link changes are not [[t, mbps, rtt_ms], ...]") from None
    if not np.all(np.isfinite(rows)) or np.any(rows[:, 1:] < 0) or np.any(np.diff(rows[:, 0]) < 0):
        raise RunFileError(f"{path}: the link changes must be finite, >= 0 and in time order")
    return rows


def load_run(path: Path | str) -> LiveRun:
    """A recorded live run (RunFileError naming the problem for a file that is not one)."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"run file {path} not found")
    try:
        with open(path, "rb") as f:
            reader = make_reader(f)
            records = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
            messages = [(channel.topic, schema, message)
                        for schema, channel, message in reader.iter_messages(
                            topics=[RESULT_TOPIC, TRUTH_TOPIC, PLAN_TOPIC,
                                    LINK_TOPIC])]  # fmt: skip
    except (McapError, OSError, ValueError, AssertionError, KeyError, EOFError) as exc:
        raise RunFileError(f"{path}: not a readable MCAP recording ({exc})") from None
    record = records.get(RUN_RECORD)
    if record is None:
        raise RunFileError(
            f"{path}: no {RUN_RECORD} record (recorded before calibration existed, or not by "
            "`edgeml demo` / `edgeml bench system`): record the run again"
        )
    if record.get("version") != RUN_RECORD_VERSION:
        raise RunFileError(f"{path}: {RUN_RECORD} version {record.get('version')!r}, expected "
                           f"{RUN_RECORD_VERSION}")  # fmt: skip
    link_messages = [m for m in messages if m[0] == LINK_TOPIC]
    frames, digest, frame_id, first_plan_s = _frames(
        [m for m in messages if m[0] != LINK_TOPIC], path
    )
    return LiveRun(
        source=str(path),
        policy=record.get("policy", "?"),
        command=record.get("command", ""),
        rate_hz=_number(record, "rate_hz", path),
        deadline_ms=_number(record, "deadline_ms", path),
        compute_slowdown=_number(record, "compute_slowdown", path),
        link_shaped=record.get("link_shaped") == "true",
        link=_link(record, path),
        weights_digest=digest,
        frame_id=frame_id,
        frames=frames,
        first_plan_s=first_plan_s,
        estimates=_estimates(link_messages, path),
        **_burst(record, path),
    )


def _estimates(messages: list, path: Path) -> np.ndarray:
    """The link monitor's estimates as an (n, 3) array: wall-clock s received, Mbit/s, RTT ms."""
    from rclpy.serialization import deserialize_message

    from edgeml_ros.msg import LinkQuality

    rows = []
    for _, schema, message in messages:
        if (schema.name if schema else "") != "edgeml_ros/msg/LinkQuality":
            raise RunFileError(f"{path}: {LINK_TOPIC} holds {schema and schema.name!r}, not "
                               "LinkQuality")  # fmt: skip
        try:
            msg = deserialize_message(message.data, LinkQuality)
        except Exception as exc:  # a corrupt message: the file is not what it claims
            raise RunFileError(f"{path}: a {LINK_TOPIC} message does not decode ({exc})") from None
        rows.append((message.log_time * 1e-9, msg.bandwidth_mbps, msg.rtt_ms))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _burst(record: dict[str, str], path: Path) -> dict:
    """The token bucket of the run's link (records from before it was kept: the shaper's)."""
    if record.get("link_shaped") != "true":
        return {"link_burst_ms": 0.0, "link_burst_min_bytes": 0}
    if "link_burst_ms" not in record:
        return {"link_burst_ms": TBF_BURST_MS, "link_burst_min_bytes": TBF_MIN_BURST_BYTES}
    least = int(_number(record, "link_burst_min_bytes", path))
    return {"link_burst_ms": _number(record, "link_burst_ms", path), "link_burst_min_bytes": least}


def _with_added_fields(topic: str, definition: bytes, data: bytes) -> bytes:
    """A recorded message's CDR, with the fields added since it was recorded at their defaults.

    `definition`: the message definition the recording stored with it.
    """
    for last, fields in ADDED_FIELDS[topic]:  # each addition, oldest first, by its last field
        if re.search(rb"^" + re.escape(last) + rb"$", definition, re.M):
            continue
        for fmt, value in fields:
            size = struct.calcsize(fmt)
            data += bytes(-(len(data) - CDR_HEADER_BYTES) % size) + struct.pack(fmt, value)
    return data


def _frames(messages: list, path: Path) -> tuple[LiveFrames, str, str, float | None]:
    """The results as LiveFrames (scored against the ground truth), and the run's facts.

    Those are the plans' weights digest, the camera's frame id, and when the first plan came
    after the first frame (None: no plan).
    """
    from rclpy.serialization import deserialize_message

    from edgeml_ros.msg import ExecutionPolicy, GroundTruth, InferenceResult

    types = {RESULT_TOPIC: InferenceResult, TRUTH_TOPIC: GroundTruth,
             PLAN_TOPIC: ExecutionPolicy}  # fmt: skip
    results, truth, plans = [], {}, []
    for topic, schema, message in messages:
        expected = types[topic]
        name = schema.name if schema else ""
        if name != f"edgeml_ros/msg/{expected.__name__}":
            raise RunFileError(f"{path}: {topic} holds {name!r}, not {expected.__name__}")
        data = _with_added_fields(topic, schema.data, message.data)
        try:
            msg = deserialize_message(data, expected)
        except Exception as exc:  # a corrupt message: the file is not what it claims
            raise RunFileError(f"{path}: a {topic} message does not decode ({exc})") from None
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if topic == RESULT_TOPIC:
            results.append((msg, stamp, message.log_time * 1e-9))
        elif topic == TRUTH_TOPIC:
            truth[(msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)] = (
                msg.class_id
            )
        else:
            plans.append((message.log_time * 1e-9, msg))
    if not results:
        raise RunFileError(f"{path}: no {RESULT_TOPIC} messages")
    digests = {msg.weights_digest for _, msg in plans}
    if len(digests) > 1:
        raise RunFileError(f"{path}: plans for several models ({', '.join(sorted(digests))})")
    plan_times = np.array([t for t, _ in plans])
    columns: dict[str, list] = {name: [] for name in LiveFrames.__dataclass_fields__}
    for msg, stamp, received in results:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
        label = truth.get(key)
        correct = math.nan if label is None or msg.status != 0 else float(msg.class_id == label)
        # the plan in force: the last one received before the frame was taken
        i = int(np.searchsorted(plan_times, stamp, side="right")) - 1
        plan = plans[i][1] if i >= 0 and plans[i][1].cut_point == msg.cut_point else None
        row = {
            "stamp_s": stamp,
            "latency_ms": (received - stamp) * 1000.0,
            "where": msg.where,
            "status": msg.status,
            "cut_point": msg.cut_point,
            "exit_index": msg.exit_index,
            "decode_ms": msg.decode_ms,
            "head_ms": msg.head_ms,
            "encode_ms": msg.encode_ms,
            "transfer_ms": msg.transfer_ms,
            "tail_ms": msg.tail_ms,
            "total_ms": msg.total_ms,
            "input_age_ms": msg.input_age_ms,
            "offload_bytes": msg.offload_bytes,
            "correct": correct,
            "thresholds": None if plan is None else tuple(plan.exit_thresholds),
        }
        for name, value in row.items():
            columns[name].append(value)
    frame_id = results[0][0].header.frame_id
    return (
        LiveFrames.from_columns(columns),
        (digests.pop() if digests else ""),
        frame_id,
        (max(0.0, plan_times[0] - min(c for c in columns["stamp_s"])) if plans else None),
    )


def keep_runs(paths: list[str], dest: Path) -> list[str]:
    """Copy the recordings named (as `run_files` finds them) into `dest`; the copies' names.

    A benchmark's JSON file is copied with its recordings, naming the copies, so that a
    calibration's record names files that stay.
    """
    dest.mkdir(parents=True, exist_ok=True)
    kept = []
    for name in paths:
        path = Path(name)
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            for summary, mcap in zip(data["policies"].values(), run_files([name]), strict=True):
                summary["mcap"] = str(dest / mcap.name)
                shutil.copyfile(mcap, dest / mcap.name)
            (dest / path.name).write_text(json.dumps(data, indent=1) + "\n")
        else:
            run_files([name])  # checks it exists
            shutil.copyfile(path, dest / path.name)
        kept.append(str(dest / path.name))
    return kept


def run_files(paths: list[str]) -> list[Path]:
    """The recordings named: MCAP files, or `edgeml bench system` JSON files naming theirs.

    A JSON file's recordings are its policies' `mcap` paths, relative to the directory the
    benchmark ran in (tried first: this one) or to the JSON file's.
    """
    files = []
    for name in paths:
        path = Path(name)
        if path.suffix != ".json":
            files.append(path)
            continue
        try:
            policies = json.loads(path.read_text())["policies"]
            named = [Path(summary["mcap"]) for summary in policies.values()]
        except FileNotFoundError:
            raise RunFileError(f"run file {path} not found") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RunFileError(
                f"{path}: not an `edgeml bench system --json` file whose policies name their "
                "recordings (mcap): run the benchmark again with --mcap-dir"
            ) from None
        files += [m if m.is_absolute() or m.exists() else path.parent / m for m in named]
    return files


def message_sizes(profile: Profile, frame_id: str) -> tuple[int, int]:
    """Serialized bytes of an offload request's fields (all but its tensor) and of a reply.

    Measured by serializing the messages the perception and offload nodes send for the
    profile's model (CDR, with its encapsulation header) under a camera `frame_id`.
    """
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from edgeml_ros.core.checkpoint import OFFLOAD_DIGEST_CHARS
    from edgeml_ros.core.codec import EncodedTensor
    from edgeml_ros.core.outcome import Status
    from edgeml_ros.core.pipeline import OffloadReply, OffloadRequest
    from edgeml_ros.nodes.conversions import reply_to_msg, request_to_msg

    header = Header(frame_id=frame_id)
    tensor = EncodedTensor(tuple(profile.input_shape), "float32", "fp32", "none",
                           np.zeros(0, np.uint8))  # fmt: skip
    request = OffloadRequest(0, header, profile.model_id,
                             profile.weights_digest[:OFFLOAD_DIGEST_CHARS], 0, tensor)  # fmt: skip
    reply = OffloadReply(0, Status.OK, "", 0, 1.0, len(profile.exits) - 1, 1.0, header)
    return (len(serialize_message(request_to_msg(request))),
            len(serialize_message(reply_to_msg(reply, request))))  # fmt: skip
