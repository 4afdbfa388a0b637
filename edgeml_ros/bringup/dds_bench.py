"""One DDS hop, as the nodes make it: what publication mode and executor cost per message.

A camera-sized `sensor_msgs/Image` (28x28 mono8, sensor-data QoS) goes from a publisher process
to a subscriber process on this host, once per configuration: Fast DDS's synchronous or
asynchronous publication, and rclpy's events, single- or multi-threaded executor on the
subscriber (which also runs a 100 Hz timer, as the perception node's fallback checks did).
The latency is receive time minus the stamp set just before publishing; medians and p90 are
reported side by side from one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgeml_ros.bringup.processes import private_domain_id

CONFIGS = (  # (name, publication mode, subscriber executor)
    ("sync + events", "SYNCHRONOUS", "events"),
    ("sync + single-threaded", "SYNCHRONOUS", "single"),
    ("async + single-threaded", "ASYNCHRONOUS", "single"),
    ("sync + multi-threaded", "SYNCHRONOUS", "multi"),
    ("async + multi-threaded", "ASYNCHRONOUS", "multi"),
)
WARM_UP = 5  # first messages (discovery, caches) left out


def _subscriber(executor_kind: str, seconds: float) -> None:
    """Child process: collect hop latencies for `seconds`, print them as JSON."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.experimental import EventsExecutor

    executors = {"events": EventsExecutor, "single": SingleThreadedExecutor,
                 "multi": lambda: MultiThreadedExecutor(2)}  # fmt: skip
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.time import Time
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("dds_bench_subscriber")
    latencies: list[float] = []

    def on_image(msg: Image) -> None:
        age = node.get_clock().now() - Time.from_msg(msg.header.stamp)
        latencies.append(age.nanoseconds / 1e6)

    node.create_subscription(Image, "dds_bench/image", on_image, qos_profile_sensor_data)
    node.create_timer(0.01, lambda: None)
    executor = executors[executor_kind]()
    executor.add_node(node)
    end, last_count, quiet_since = time.monotonic() + seconds, 0, time.monotonic()
    while time.monotonic() < end:  # until the publisher has been quiet for 2 s
        executor.spin_once(timeout_sec=0.1)
        if len(latencies) != last_count:
            last_count, quiet_since = len(latencies), time.monotonic()
        elif latencies and time.monotonic() - quiet_since > 2.0:
            break
    print(json.dumps(latencies[WARM_UP:]), flush=True)
    rclpy.try_shutdown()


def _publisher(rate_hz: float, count: int) -> None:
    """Child process: publish `count` stamped images at `rate_hz` once a subscriber matched."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("dds_bench_publisher")
    pub = node.create_publisher(Image, "dds_bench/image", qos_profile_sensor_data)
    while pub.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(1.0)  # the subscriber matched us too
    msg = Image(height=28, width=28, encoding="mono8", step=28, data=bytes(784))
    for _ in range(count):
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        time.sleep(1.0 / rate_hz)
    rclpy.shutdown()


def _hop(domain_id: int, mode: str, executor_kind: str, rate_hz: float, count: int) -> list:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), RMW_FASTRTPS_PUBLICATION_MODE=mode)
    # Fast DDS's default transports (no link profile): the publication mode comes from `mode`
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env.pop("RMW_FASTRTPS_USE_QOS_FROM_XML", None)
    module = [sys.executable, "-m", "edgeml_ros.bringup.dds_bench"]
    seconds = count / rate_hz + 15.0
    sub = subprocess.Popen([*module, "--subscriber", executor_kind, str(seconds)], env=env,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    subprocess.run([*module, "--publisher", str(rate_hz), str(count)], env=env, check=True,
                   timeout=seconds)  # fmt: skip
    out, _ = sub.communicate(timeout=seconds + 30)
    return json.loads(out.strip().splitlines()[-1])


def run_dds_bench(rate_hz: float, count: int, json_path: str | None) -> int:
    """Measure every configuration; print medians side by side; write JSON."""
    from tqdm import tqdm

    rows = {}
    with private_domain_id() as domain_id:
        for name, mode, executor_kind in tqdm(CONFIGS, desc="dds hop", unit="config"):
            ms = np.array(_hop(domain_id, mode, executor_kind, rate_hz, count))
            rows[name] = {"messages": int(ms.size), "hop_ms_p50": float(np.median(ms)),
                          "hop_ms_p90": float(np.percentile(ms, 90))}  # fmt: skip
    print(f"{'publication + subscriber executor':<28}{'messages':>10}{'p50 ms':>9}{'p90 ms':>9}")
    for name, r in rows.items():
        print(f"{name:<28}{r['messages']:>10}{r['hop_ms_p50']:>9.2f}{r['hop_ms_p90']:>9.2f}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        out = {"rate_hz": rate_hz, "messages_sent": count, "configs": rows}
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if all(r["messages"] for r in rows.values()) else 1


if __name__ == "__main__":
    if sys.argv[1] == "--subscriber":
        _subscriber(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "--publisher":
        _publisher(float(sys.argv[2]), int(sys.argv[3]))
