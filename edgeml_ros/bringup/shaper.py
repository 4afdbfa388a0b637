"""Link shaper for demos and benchmarks: a real, rate-limited link between drone and base station.

The drone side and the base-station side run in two network namespaces joined by a veth pair;
`tc tbf` on both ends of the veth limits the rate, replayed over time from a trace (the CSV
format of core.traces). DDS runs over UDP on that link only (shared-memory transport off).
Needs root, `ip` and `tc`; without them `LinkShaper.available()` says why, and the demo falls back
to loopback. The launches run on the drone's side (this process moves there, `open_link`); the
base station's node gets `LinkShaper.prefix("base")` as its command prefix.

RTT: this kernel has no netem, so delay cannot be added in the kernel. The base station emulates
it instead: the offload node holds every reply and probe echo for `emulated_rtt_ms` (set from
the trace's RTT), so round trips measured on the drone include it. An outage (0 Mbit/s) is a
tbf whose bucket and queue no packet fits in: everything is dropped.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

from edgeml_ros.bringup.processes import share_file
from edgeml_ros.core.traces import Trace

DRONE_NS, BASE_NS = "edgeml_drone", "edgeml_base"
DRONE_IF, BASE_IF = "edgeml_d", "edgeml_b"
DRONE_IP, BASE_IP = "10.77.0.1", "10.77.0.2"
OUTAGE_KBIT = 1
# The nodes start and discover each other on a fast link, the same for every run; a run's trace
# applies from its camera's first frame. (Started on a 40 kbit/s link, DDS discovery, XTypes
# type lookups included, had not finished after a whole run. Left unshaped, the link monitor
# read the bare veth, about 286 Mbit/s, and the controller planned its first frames for that.)
DISCOVERY_MBPS = 20.0
LOCK_FILE = "/run/edgeml_ros_shaper.lock"
# Discovery has settled when the base station sends the drone less than this for QUIET_HOLD_S
# (the link monitor's probe echoes, 7 KB/s, and the participant announcements stay; discovery
# bursts are 35-140 KB/s both ways, 60-67 KB/s of it from the base station in a per-direction
# count at start-up (temporary instrumentation), with pauses of up to a heartbeat period, 3 s,
# in between). The drone's side would never look quiet on a fast link: its probe trains take
# up to 5 % of it, 125 KB/s at 20 Mbit/s.
QUIET_BYTES_PER_S, QUIET_HOLD_S, QUIET_POLL_S = 15000, 5.0, 0.5


def dds_env() -> dict[str, str]:
    """DDS settings of a demo's or benchmark's own participant on the drone's side of the link.

    What the launch files give the nodes that talk across the link with radio_link:=true: the
    package's Fast DDS link profile (config/fastdds_link.xml: UDP only, so that traffic between
    the namespaces really crosses the shaped veth; non-blocking sends) and SUBNET discovery,
    which reaches the other namespace.
    """
    return {
        "FASTDDS_DEFAULT_PROFILES_FILE": str(share_file("config", "fastdds_link.xml")),
        "RMW_FASTRTPS_USE_QOS_FROM_XML": "1",
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
    }


class ShaperError(RuntimeError):
    """The shaper could not set up or change the link."""


def _run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ShaperError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.returncode}")


# The token bucket tbf_args gives a rate: this many ms of it, at least this many bytes.
TBF_BURST_MS, TBF_MIN_BURST_BYTES = 10.0, 1600


def tbf_args(mbps: float) -> list[str]:
    """Tc tbf settings for a rate: a burst of a few packets, a queue of about one second."""
    if mbps <= 0:  # tbf drops a packet larger than its bucket (a 1 kbit/s bucket of 1600 B
        # passed a 210-B link probe every 1.7 s, which the link monitor rightly read as a link)
        return ["rate", f"{OUTAGE_KBIT}kbit", "burst", "1", "limit", "1"]
    kbit = max(OUTAGE_KBIT, round(mbps * 1000))
    # 10 ms of traffic, at least one packet
    burst = max(TBF_MIN_BURST_BYTES, round(kbit * 1000 / 8 * TBF_BURST_MS / 1000))
    limit = max(3200, kbit * 1000 // 8)  # one second of traffic
    return ["rate", f"{kbit}kbit", "burst", str(burst), "limit", str(limit)]


class LinkShaper:
    """Two network namespaces, a veth between them, and its rate over time."""

    def __init__(self) -> None:
        self.ready = False
        self.mbps: float | None = None
        self._lock: int | None = None

    @staticmethod
    def available() -> str | None:
        """None when shaping can work here, else the reason it cannot."""
        if os.geteuid() != 0:
            return "not root (network namespaces and tc need root)"
        missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
        if missing:
            return f"{' and '.join(missing)} not found (apt-get install iproute2)"
        return None

    def setup(self) -> None:
        """Create the namespaces and the veth, addressed and up, with multicast routed.

        One shaped link per host: a second demo or benchmark gets a ShaperError instead of
        tearing down the link under the first.
        """
        self._lock = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise ShaperError("another demo or benchmark is using the shaped link") from None
        self._remove_namespaces()
        _run("ip", "netns", "add", DRONE_NS)
        _run("ip", "netns", "add", BASE_NS)
        _run("ip", "link", "add", DRONE_IF, "type", "veth", "peer", "name", BASE_IF)
        for ns, dev, ip in ((DRONE_NS, DRONE_IF, DRONE_IP), (BASE_NS, BASE_IF, BASE_IP)):
            _run("ip", "link", "set", dev, "netns", ns)
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up", "multicast", "on")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        self.ready = True

    def set_rate(self, mbps: float) -> None:
        """Limit both directions of the veth to `mbps` (0: outage)."""
        for ns, dev in ((DRONE_NS, DRONE_IF), (BASE_NS, BASE_IF)):
            _run("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                 *tbf_args(mbps))  # fmt: skip
        self.mbps = mbps

    @staticmethod
    def stats(side: str = "drone") -> dict[str, int]:
        """Tc's counters of one side's outgoing queue: bytes and packets sent, drops."""
        ns, dev = (DRONE_NS, DRONE_IF) if side == "drone" else (BASE_NS, BASE_IF)
        proc = subprocess.run(["ip", "netns", "exec", ns, "tc", "-s", "-j", "qdisc", "show",
                               "dev", dev], capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            raise ShaperError(f"tc -s qdisc show dev {dev}: {proc.stderr.strip()}")
        [qdisc] = [q for q in json.loads(proc.stdout) if q.get("root")]
        return {k: int(qdisc[k]) for k in ("bytes", "packets", "drops")}

    @staticmethod
    def sent_bytes(sides: tuple[str, ...] = ("drone", "base")) -> int:
        """Bytes these ends of the veth have sent so far (whatever the qdisc)."""
        total = 0
        ends = {"drone": (DRONE_NS, DRONE_IF), "base": (BASE_NS, BASE_IF)}
        for ns, dev in (ends[side] for side in sides):
            proc = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev],
                                  capture_output=True, text=True)  # fmt: skip
            if proc.returncode != 0:
                raise ShaperError(f"ip -s link show dev {dev}: {proc.stderr.strip()}")
            total += int(json.loads(proc.stdout)[0]["stats64"]["tx"]["bytes"])
        return total

    def wait_quiet(self, wait: Callable[[float], None], max_s: float = 60.0) -> float | None:
        """Wait (with `wait(seconds)`) until DDS discovery across the link is over.

        Done once the base station has sent less than QUIET_BYTES_PER_S for QUIET_HOLD_S: only
        the link monitor's probe echoes and the periodic participant announcements are left.
        Returns the seconds it took, or None when the link was still busy after `max_s`.
        """
        started = time.monotonic()
        quiet_since, last = None, self.sent_bytes(("base",))
        while time.monotonic() - started < max_s:
            wait(QUIET_POLL_S)
            now = self.sent_bytes(("base",))
            if now - last > QUIET_BYTES_PER_S * QUIET_POLL_S:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_HOLD_S:
                return time.monotonic() - started
            last = now
        return None

    def teardown(self) -> None:
        """Remove the namespaces (and the veth with them) this shaper set up."""
        if self._lock is None:
            return
        self._remove_namespaces()
        self.ready = False
        os.close(self._lock)  # releases the lock
        self._lock = None

    @staticmethod
    def _remove_namespaces() -> None:
        for ns in (DRONE_NS, BASE_NS):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    @staticmethod
    def prefix(side: str) -> list[str]:
        """Command prefix that runs a process on one side of the link ("drone" or "base")."""
        return ["ip", "netns", "exec", DRONE_NS if side == "drone" else BASE_NS]


class TraceReplay:
    """Applies a trace's rate (and reports its RTT) over time, in a background thread."""

    def __init__(
        self,
        trace: Trace,
        set_rate: Callable[[float], None],
        set_rtt: Callable[[float], None],
    ) -> None:
        self.trace, self.set_rate, self.set_rtt = trace, set_rate, set_rtt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.changes: list[tuple[float, float, float]] = []  # (t, mbps, rtt_ms) applied
        self.error: Exception | None = None

    def start(self) -> None:
        """Apply the first row now and the rest at their times."""
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop replaying (the last rate stays)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            for t, mbps, rtt in zip(self.trace.t_s, self.trace.mbps, self.trace.rtt_ms,
                                    strict=True):  # fmt: skip
                if self._stop.wait(max(0.0, self.started + t - time.monotonic())):
                    return
                self.set_rate(float(mbps))
                self.set_rtt(float(rtt))
                self.changes.append((time.monotonic() - self.started, float(mbps), float(rtt)))
        except Exception as exc:  # reported by the demo, which owns the thread
            self.error = exc


def open_link(shape: bool = True) -> tuple[LinkShaper | None, str | None]:
    """The shaped link, set up, with this process moved to the drone's side; or None and why not.

    Processes this one starts from then on (the launches) run on the drone's side too.
    """
    reason = LinkShaper.available() if shape else "shaping off (--no-shaping)"
    if reason is not None:
        return None, reason
    shaper = LinkShaper()
    try:
        shaper.setup()
        enter_netns(DRONE_NS)
    except (ShaperError, OSError) as exc:
        shaper.teardown()
        return None, str(exc)
    return shaper, None


def enter_netns(name: str) -> None:
    """Move this process's network (its threads to come included) into namespace `name`.

    Call it before any network use (rclpy.init): threads started earlier stay where they were.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet = 0x40000000
    with open(f"/var/run/netns/{name}") as ns:
        if libc.setns(ns.fileno(), clone_newnet) != 0:
            raise ShaperError(f"setns({name}): {os.strerror(ctypes.get_errno())}")
