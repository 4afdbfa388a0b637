"""Telemetry to MCAP: ROS 2 messages as CDR with their ros2msg schemas.

The files open in Foxglove Studio and with `ros2 bag info` / `ros2 bag play` (MCAP storage).
Schemas are the .msg definitions from the packages' share directories, with their
dependencies appended the way rosbag2 writes them.
"""

from __future__ import annotations

import re
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from mcap.writer import Writer
from rclpy.serialization import serialize_message

PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string", "wstring",
}  # fmt: skip
SEPARATOR = "=" * 80


def _msg_text(type_name: str) -> str:
    package, _, name = type_name.split("/")
    return (Path(get_package_share_directory(package)) / "msg" / f"{name}.msg").read_text()


def _dependencies(type_name: str, text: str) -> list[str]:
    """Message types the fields of `text` use, as pkg/msg/Type."""
    package = type_name.split("/")[0]
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line.split()[-1] or len(line.split()) < 2:
            continue
        field_type = re.sub(r"\[.*\]$", "", line.split()[0])
        field_type = re.sub(r"<=\d+$", "", field_type)  # bounded strings
        if field_type in PRIMITIVES:
            continue
        pkg, _, name = field_type.rpartition("/")
        found.append(f"{pkg or package}/msg/{name}")
    return found


def message_definition(type_name: str) -> str:
    """The full ros2msg definition of `type_name` (pkg/msg/Type), dependencies appended."""
    text = _msg_text(type_name)
    parts, seen, todo = [text], {type_name}, _dependencies(type_name, text)
    while todo:
        dep = todo.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        dep_text = _msg_text(dep)
        package, _, name = dep.split("/")
        parts.append(f"{SEPARATOR}\nMSG: {package}/{name}\n{dep_text}")
        todo += _dependencies(dep, dep_text)
    return "\n".join(parts)


def type_name_of(msg) -> str:
    """pkg/msg/Type of a ROS 2 message instance."""
    package = type(msg).__module__.split(".")[0]
    return f"{package}/msg/{type(msg).__name__}"


class McapRecorder:
    """Writes messages to an MCAP file, registering each topic on first use."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._file)
        self._writer.start(profile="ros2", library="edgeml_ros")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self.messages = 0

    def write(self, topic: str, msg, log_time_ns: int) -> None:
        """Record one message received at `log_time_ns`."""
        type_name = type_name_of(msg)
        if type_name not in self._schemas:
            self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding="ros2msg",
                data=message_definition(type_name).encode(),
            )  # fmt: skip
        if topic not in self._channels:
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=self._schemas[type_name]
            )
        self._writer.add_message(
            channel_id=self._channels[topic],
            log_time=log_time_ns,
            publish_time=log_time_ns,
            data=serialize_message(msg),
        )
        self.messages += 1

    def metadata(self, name: str, values: dict[str, str]) -> None:
        """Record a named metadata record (string keys and values), e.g. how a run was made."""
        self._writer.add_metadata(name=name, data=values)

    def close(self) -> None:
        """Finish the file (summary and index)."""
        self._writer.finish()
        self._file.close()
