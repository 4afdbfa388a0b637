"""Start and stop edgeml_ros launch files as processes on private ROS domains.

`LaunchProcess` runs one of the package's launch files with the real `ros2 launch`, as a user
does. The demo, the benchmarks and the system tests start their nodes only this way, so what
they measure is what users launch: which nodes run, their niceness, discovery range,
environment and parameters are decided once, in launch/ and config/.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ament_index_python.packages import get_package_share_directory

PACKAGE = "edgeml_ros"
# Domain IDs handed out to tests and demos; Fast DDS accepts 0..232.
_DOMAIN_RANGE = range(30, 230)
# `ros2 launch` logs each node process's start and end under its label, `<executable>-<n>`.
_STARTED = re.compile(r"\[(\w+)-\d+\]: process started with pid \[(\d+)\]")
_ENDED = re.compile(r"\[(\w+)-\d+\]: process (?:has died|has finished cleanly)")
# `ros2 launch` keeps a SIGINT it was started with ignored (as a background job of a script
# starts it) and would not stop on `interrupt`: it starts through this, SIGINT back to default.
_WITH_DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execvp(sys.argv[1], sys.argv[1:])")  # fmt: skip


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


# What tools/run_in_env.sh and the radio link set, and a user's shell does not.
NON_DEFAULT_ENV = (
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_STATIC_PEERS",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
)


@functools.cache
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
    Its output (the launch's and every node's, as `output="screen"` gives them) goes to
    `log_path`. A context manager: leaving the block stops it.
    """

    def __init__(
        self,
        launch_file: str,
        domain_id: int,
        arguments: dict[str, Any] | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        ros2 = ros2_command()
        if ros2 is None:
            raise RuntimeError("`ros2 launch` is not installed: run `make setup` or source a "
                               "ROS 2 install")  # fmt: skip
        args = [f"{k}:={_launch_value(v)}" for k, v in (arguments or {}).items()]
        self.command = [ros2, "launch", PACKAGE, launch_file, *args]
        self.log_path = log_path
        with open(log_path or os.devnull, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WITH_DEFAULT_SIGINT, *self.command],
                env={**(env or os.environ), "ROS_DOMAIN_ID": str(domain_id)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def __enter__(self) -> LaunchProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def alive(self) -> bool:
        """Whether `ros2 launch` is still running."""
        return self.proc.poll() is None

    def node_pids(self) -> dict[str, int]:
        """Executable name -> pid of every node process the launch started so far."""
        return {name: int(pid) for name, pid in _STARTED.findall(self._log())}

    def ended_nodes(self) -> list[str]:
        """Executable names of the node processes that have ended (died or finished)."""
        return _ENDED.findall(self._log())

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def interrupt(self) -> None:
        """One SIGINT, as Ctrl-C gives `ros2 launch`: it stops every node."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL for the launch and every node: they vanish without a goodbye."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

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


@contextmanager
def ros_context(domain_id: int) -> Iterator[Any]:
    """A fresh rclpy context on `domain_id` (a new DDS participant) for one launch's run.

    Create it right before starting the launch: a participant announces itself quickly only in
    its first seconds (config/fastdds_link.xml), which is when the launched nodes start too, so
    they find each other at once; the participant of an earlier run might not see them for 30 s.
    """
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


@contextmanager
def spinning(node) -> Iterator[Callable[..., None]]:
    """One events executor for `node` while the block runs; yields `spin_for(seconds, status)`.

    `spin_for` spins for `seconds`, calling `status` (if any) once a second. The executor lives as
    long as the block: adding the node to a fresh one for every spin could miss a message that
    arrived in between.
    """
    from rclpy.experimental import EventsExecutor

    executor = EventsExecutor(context=node.context)
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
