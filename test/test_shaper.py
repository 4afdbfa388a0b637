import os
import subprocess
import sys
import time

import numpy as np
import pytest

from edgeml_ros.bringup.shaper import (
    BASE_IP,
    LinkShaper,
    ShaperError,
    TraceReplay,
    dds_env,
    tbf_args,
)
from edgeml_ros.core.traces import step_trace


def test_tbf_settings_follow_the_rate():
    assert tbf_args(0.0)[:2] == ["rate", "1kbit"]  # an outage: a bucket no packet fits in
    args = dict(zip(tbf_args(20.0)[::2], tbf_args(20.0)[1::2], strict=True))
    assert args["rate"] == "20000kbit" and int(args["limit"]) == 20_000_000 // 8


def test_fastdds_link_profile_loads_and_nodes_talk_with_it(ros_node):
    """Fast DDS parses the shipped profile without a complaint, and a node using it talks to
    this test's node (which uses the default configuration) over UDP."""
    env = {**os.environ, **dds_env(), "ROS_DOMAIN_ID": str(ros_node.domain_id)}
    code = (
        "import rclpy, time\n"
        "from std_msgs.msg import String\n"
        "rclpy.init(); node = rclpy.create_node('profile_check')\n"
        "pub = node.create_publisher(String, 'profile_check', 10)\n"
        "end = time.monotonic() + 30\n"
        "while time.monotonic() < end:\n"
        "    pub.publish(String(data='hello')); rclpy.spin_once(node, timeout_sec=0.1)\n"
    )
    from std_msgs.msg import String

    got = []
    ros_node.create_subscription(String, "profile_check", got.append, 10)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert ros_node.spin_until(lambda: bool(got), 30), "no message from the profiled node"
    finally:
        proc.kill()
        _, stderr = proc.communicate()
    assert "XMLPARSER" not in stderr and "Error" not in stderr, stderr


def test_trace_replay_applies_rows_on_time():
    rates, rtts = [], []
    replay = TraceReplay(step_trace((5.0, 0.04, 5.0), 0.2, rtt_ms=30.0), rates.append, rtts.append)
    replay.start()
    time.sleep(0.6)
    replay.stop()
    assert rates == [5.0, 0.04, 5.0] and rtts == [30.0] * 3
    assert np.allclose([t for t, _, _ in replay.changes], [0.0, 0.2, 0.4], atol=0.05)


RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 47001)); s.settimeout(2.0)
got, first, last = 0, None, None
try:
    while True:
        n = len(s.recv(65536)); now = time.monotonic()
        first = first or now; last = now; got += n
except socket.timeout:
    pass
print(got, (last or 0) - (first or 0))
"""


def sender(count: int, size: int, gap_s: float) -> str:
    """A script sending `count` datagrams of `size` bytes to the base station, `gap_s` apart."""
    return f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({count}):
    s.sendto(bytes({size}), ("{BASE_IP}", 47001)); time.sleep({gap_s})
"""


def send_across(shaper: LinkShaper, script: str) -> tuple[int, float]:
    """Bytes the base station received of what `script` sent from the drone, and over how long."""
    receiver = subprocess.Popen([*shaper.prefix("base"), sys.executable, "-c", RECEIVER],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(0.5)
    subprocess.run([*shaper.prefix("drone"), sys.executable, "-c", script], check=True)
    received, seconds = receiver.communicate(timeout=30)[0].split()
    return int(received), float(seconds)


@pytest.mark.skipif(LinkShaper.available() is not None, reason="shaping needs root and iproute2")
def test_the_shaped_link_really_limits_the_rate():
    shaper = LinkShaper()
    try:
        shaper.setup()
        shaper.set_rate(1.0)  # 1 Mbit/s: 400 kB offered in about 0.5 s
        before = shaper.stats()
        received, seconds = send_across(shaper, sender(400, 1000, 0.001))
        after = shaper.stats()
        # an outage passes nothing, not even a small datagram now and then (a 1 kbit/s bucket
        # of 1600 B passed a 210-B link probe every 1.7 s: the link monitor read a link)
        shaper.set_rate(0.0)
        in_outage, _ = send_across(shaper, sender(5, 100, 0.4))
    finally:
        shaper.teardown()
    rate_mbps = received * 8 / seconds / 1e6
    assert 0.7 < rate_mbps < 1.3, rate_mbps  # the tbf rate, not the loopback's gigabits
    # tc's counters saw what went through the drone's queue: the payload plus its headers
    assert received <= after["bytes"] - before["bytes"] < 1.2 * received + 10_000
    assert in_outage == 0
    assert not os.path.exists("/var/run/netns/edgeml_drone")


@pytest.mark.skipif(LinkShaper.available() is not None, reason="shaping needs root and iproute2")
def test_one_shaped_link_at_a_time():
    first, second = LinkShaper(), LinkShaper()
    try:
        first.setup()
        with pytest.raises(ShaperError, match="another demo or benchmark"):
            second.setup()
        second.teardown()  # a no-op: it never held the link
        assert os.path.exists("/var/run/netns/edgeml_drone")
    finally:
        first.teardown()
    second.setup()  # free again
    second.teardown()
    assert not os.path.exists("/var/run/netns/edgeml_drone")
