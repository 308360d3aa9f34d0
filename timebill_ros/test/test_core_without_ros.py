"""The TimeBill core is ROS-free: `pip install` of the node package gives a working `timebill`
in an interpreter where no ROS module can be imported."""
import ast
import subprocess
import sys

from conftest import PKG_DIR

ROS_MODULES = ("rclpy", "rosidl", "rcl_interfaces", "builtin_interfaces", "timebill_msgs", "action_msgs",
               "std_msgs", "diagnostic_msgs", "visualization_msgs", "unique_identifier_msgs", "launch", "ament_index_python")

# Makes every ROS import fail in the child interpreter, as on a machine without ROS.
BLOCKER = f"""
import importlib.abc, sys
class _NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {ROS_MODULES!r}:
            raise ImportError('no ROS on this machine: ' + name)
sys.meta_path.insert(0, _NoRos())
"""


def test_no_module_of_the_core_imports_ros():
    offenders = []
    for path in sorted((PKG_DIR / "timebill").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                # ament_index is only tried (in a try block) to find the installed config file.
                if n.split(".")[0] in ROS_MODULES and n != "ament_index_python.packages":
                    offenders.append(f"{path.relative_to(PKG_DIR)}: {n}")
    assert offenders == []


def test_pip_install_gives_a_working_core_without_ros(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PKG_DIR)], check=True, timeout=300)
    assert (target / "timebill" / "engine.py").is_file()
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = (
        "import timebill, rclpy\n"
    )
    # First prove the blocker works, then run a real budgeted generation on the tiny model.
    blocked = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": f"{tmp_path}:{target}", "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert blocked.returncode != 0 and "no ROS on this machine" in blocked.stderr
    run = (
        "import timebill.engine as e, timebill\n"
        "assert e.__file__.startswith(%r), e.__file__\n"
        "from timebill.testing import tiny_test_model\n"
        "from timebill.profiler import profile\n"
        "from timebill.estimator import Estimator\n"
        "from timebill.request import Request\n"
        "m = tiny_test_model()\n"
        "tm = profile(m, lengths=(16, 32, 64), repeats=1, decode_steps=2, progress=False)\n"
        "r = e.BudgetedEngine(Estimator(m, tm, default_max_new_tokens=5)).generate(Request('hello robot', budget=10))\n"
        "print(r.outcome.value, r.generated_tokens)\n"
    ) % str(target)
    done = subprocess.run([sys.executable, "-c", run], env={"PYTHONPATH": f"{tmp_path}:{target}", "PATH": "/usr/bin:/bin",
                                                            "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["completed", "5"]
