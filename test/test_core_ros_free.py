import json
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


def test_workstation_commands_run_without_ros(tmp_path):
    # a researcher's workstation has neither rclpy nor the package's messages: `edgeml` must still
    # build its command line and evaluate (the ROS commands import them only when they run)
    code = (
        "import sys\n"
        "sys.modules['rclpy'] = sys.modules['edgeml_ros.msg'] = None  # importing them fails\n"
        "from edgeml_ros.cli import main\n"
        "sys.exit(main(['evaluate', '--policy', 'tuned_static', '--scenario', 'throttle-100000',"
        f" '--duration', '5', '--json', '{tmp_path}/e.json', '--plots', '{tmp_path}']))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert "tuned_static" in json.loads((tmp_path / "e.json").read_text())["policies"]
