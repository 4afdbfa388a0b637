import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "edgeml_ros"
# every module of the ROS-free core and policy packages, found on disk so none is forgotten
CORE_MODULES = sorted(
    f"edgeml_ros.{pkg}.{path.stem}"
    for pkg in ("core", "policy")
    for path in (ROOT / pkg).glob("*.py")
    if path.stem != "__init__"
)


def test_core_never_imports_rclpy():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py')]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_module_list_is_not_empty():
    assert "edgeml_ros.policy.live" in CORE_MODULES and len(CORE_MODULES) > 20
