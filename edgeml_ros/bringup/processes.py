"""Start and stop edgeml_ros launch files and nodes as separate processes on private domains.

`LaunchProcess` runs one of the package's launch files with the real `ros2 launch`, as a user
does. `NodeProcess` starts one node executable (what `ros2 run edgeml_ros <node>` starts), with
`--ros-args` for the params file, overrides and namespace.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ament_index_python.packages import get_package_prefix, get_package_share_directory

PACKAGE = "edgeml_ros"
# Domain IDs handed out to tests and demos; Fast DDS accepts 0..232.
_DOMAIN_RANGE = range(30, 230)
# Nodes that talk only to nodes on the drone. As drone.launch.py starts them (launch argument
# local_discovery_range), their DDS participants discover on their own host only: their
# announcements and discovery traffic stay off the radio link.
DRONE_LOCAL_NODES = ("controller", "battery_sim", "camera_source")
DRONE_LOCAL_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


@contextmanager
def private_domain_id() -> Iterator[int]:
    """Reserve a ROS_DOMAIN_ID no other test or demo on this host holds (file lock)."""
    lock_dir = Path(tempfile.gettempdir()) / "edgeml_ros_domains"
    lock_dir.mkdir(exist_ok=True)
    start = os.getpid() % len(_DOMAIN_RANGE)
    for i in range(len(_DOMAIN_RANGE)):
        domain = _DOMAIN_RANGE[(start + i) % len(_DOMAIN_RANGE)]
        handle = open(lock_dir / f"{domain}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield domain
        finally:
            handle.close()
        return
    raise RuntimeError("no free ROS domain id")


def share_file(*parts: str) -> Path:
    """A file installed under share/edgeml_ros (config, launch)."""
    return Path(get_package_share_directory(PACKAGE), *parts)


def _ros_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_ros_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


# What tools/run_in_env.sh and the radio link set, and a user's shell does not.
NON_DEFAULT_ENV = (
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_STATIC_PEERS",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
)


def ros2_command() -> str | None:
    """The `ros2` command line with its `launch` verb, or None where neither is installed."""
    ros2 = shutil.which("ros2")
    if ros2 is None:
        return None
    probe = subprocess.run([ros2, "launch", "--help"], capture_output=True)
    return ros2 if probe.returncode == 0 else None


def default_ros_env(domain_id: int) -> dict[str, str]:
    """The environment of this process as a plain ROS 2 shell has it, on `domain_id`."""
    env = {k: v for k, v in os.environ.items() if k not in NON_DEFAULT_ENV}
    env["ROS_DOMAIN_ID"] = str(domain_id)
    return env


class LaunchProcess:
    """`ros2 launch edgeml_ros <launch_file> name:=value ...` as a child process.

    Its own session, so that stopping it can reach every node even if the launch itself hangs.
    """

    def __init__(
        self,
        launch_file: str,
        domain_id: int,
        arguments: dict[str, Any] | None = None,
        log: IO | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        ros2 = ros2_command()
        if ros2 is None:
            raise RuntimeError("`ros2 launch` is not installed: run `make setup` or source a "
                               "ROS 2 install")  # fmt: skip
        args = [f"{k}:={_launch_value(v)}" for k, v in (arguments or {}).items()]
        self.command = [*(prefix or []), ros2, "launch", PACKAGE, launch_file, *args]
        self.proc = subprocess.Popen(
            self.command,
            env={**(env or os.environ), "ROS_DOMAIN_ID": str(domain_id)},
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether `ros2 launch` is still running."""
        return self.proc.poll() is None

    def interrupt(self) -> None:
        """One SIGINT, as Ctrl-C gives `ros2 launch`: it stops every node."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGINT, then SIGKILL for the whole session if it has not ended within `timeout_s`."""
        self.interrupt()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode


def _launch_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class NodeProcess:
    """One node executable running as a child process (`env`: added to this one's environment).

    The node brings itself to active (its `autostart` parameter) unless `overrides` say not.
    """

    def __init__(
        self,
        executable: str,
        domain_id: int,
        params_file: Path | None = None,
        overrides: dict[str, Any] | None = None,
        namespace: str = "",
        log: IO | None = None,
        prefix: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        exe = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / executable
        cmd = [*(prefix or []), str(exe), "--ros-args"]
        if params_file is not None:
            cmd += ["--params-file", str(params_file)]
        for name, value in {"autostart": True, **(overrides or {})}.items():
            cmd += ["-p", f"{name}:={_ros_value(value)}"]
        if namespace:
            cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
        env = dict(os.environ, **(env or {}), ROS_DOMAIN_ID=str(domain_id))
        self.name = f"{namespace}/{executable}" if namespace else executable
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT (the node finishes in-flight work), then SIGKILL if it does not exit."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def node_processes(procs: list[NodeProcess]) -> Iterator[list[NodeProcess]]:
    """Stop every process on exit, newest first."""
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


@contextmanager
def spinning(node) -> Iterator[Callable[..., None]]:
    """One events executor for `node` while the block runs; yields `spin_for(seconds, status)`.

    `spin_for` spins for `seconds`, calling `status` (if any) once a second. The executor lives as
    long as the block: adding the node to a fresh one for every spin could miss a message that
    arrived in between.
    """
    from rclpy.experimental import EventsExecutor

    executor = EventsExecutor()
    executor.add_node(node)

    def spin_for(seconds: float, status: Callable[[], None] | None = None) -> None:
        end = time.monotonic() + seconds
        next_status = time.monotonic() + 1.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
            if status is not None and time.monotonic() >= next_status:
                status()
                next_status += 1.0

    try:
        yield spin_for
    finally:
        executor.remove_node(node)
        executor.shutdown()
