import subprocess
import sys

CORE_MODULES = [
    "edgeml_ros.core.checkpoint",
    "edgeml_ros.core.codec",
    "edgeml_ros.core.data",
    "edgeml_ros.core.images",
    "edgeml_ros.core.link",
    "edgeml_ros.core.models",
    "edgeml_ros.core.pipeline",
    "edgeml_ros.core.runtime",
    "edgeml_ros.core.train",
    "edgeml_ros.core.traces",
    "edgeml_ros.core.profiles",
    "edgeml_ros.core.energy",
    "edgeml_ros.core.bench",
    "edgeml_ros.policy.rule",
]


def test_core_never_imports_rclpy():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py')]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
