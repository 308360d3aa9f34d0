"""The launch file, without `launch` (not installable from PyPI): it compiles, declares the
arguments the issue names, starts the two installed executables, and `timebill_ros bringup` (its
stand-in here) builds the same node command lines from the same file. The launch_testing test that
actually starts it is test_ros_launch_testing.py (skipped where launch_testing is missing)."""
from __future__ import annotations

import ast
import re
import threading
import time

import pytest

from conftest import PKG_DIR, REPO

LAUNCH = PKG_DIR / "launch" / "timebill.launch.py"


def _calls(tree, name):
    return [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", None) == name]


def test_launch_file_compiles_and_declares_its_arguments():
    src = LAUNCH.read_text()
    compile(src, str(LAUNCH), "exec")
    tree = ast.parse(src)
    assert any(isinstance(f, ast.FunctionDef) and f.name == "generate_launch_description" for f in tree.body)
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert {"config", "model", "namespace", "log_level"} <= declared
    # Managed (lifecycle) nodes, as nav2 and llama_ros use.
    assert not _calls(tree, "Node")
    executables = {kw.value.value for c in _calls(tree, "LifecycleNode") for kw in c.keywords
                   if kw.arg == "executable"}
    assert executables == {"generation_node", "predictor_node"}
    # A crashed node is respawned (issue 12, failure 2): launch_ros's Node passes these to ExecuteProcess.
    common = next(c for c in _calls(tree, "dict") if any(kw.arg == "package" for kw in c.keywords))
    kws = {kw.arg: kw.value for kw in common.keywords}
    assert isinstance(kws["respawn"], ast.Constant) and kws["respawn"].value is True
    # ... by the rule bringup follows, taken from the installed package rather than written twice.
    assert any(isinstance(n, ast.ImportFrom) and n.module == "timebill_ros.respawn"
               and [a.name for a in n.names] == ["RESPAWN"] for n in tree.body)
    assert ast.unparse(kws["respawn_delay"]) == "RESPAWN.delay"
    assert ast.unparse(kws["respawn_max_retries"]) == "RESPAWN.max_retries"
    # Both are console scripts of the package, installed where launch_ros looks (lib/<package>).
    setup_py = (PKG_DIR / "setup.py").read_text()
    for exe in executables:
        assert re.search(rf'"{exe} = timebill_ros\.{exe}:main"', setup_py)
    assert "install_scripts=$base/lib/timebill_ros" in (PKG_DIR / "setup.cfg").read_text()


def test_launch_and_config_files_are_installed():
    share = REPO / "install" / "timebill_ros" / "share" / "timebill_ros"
    if not share.is_dir():
        pytest.skip("the workspace is not built (scripts/setup.sh)")
    assert (share / "launch" / "timebill.launch.py").is_file(), "re-run scripts/setup.sh after adding launch files"
    assert (share / "config" / "timebill.yaml").is_file()


def test_bringup_builds_the_same_node_commands_as_the_launch_file():
    from timebill_ros.bringup import Bringup

    b = Bringup(model="test:tiny", namespace="robot1/llm", log_level="debug", params=["queue_size:=3"])
    for node in ("generation_node", "predictor_node"):
        cmd = b.command(node)
        assert cmd[1:3] == ["-m", f"timebill_ros.{node}"]
        ros = cmd[cmd.index("--ros-args"):]
        assert ros[ros.index("-r") + 1] == "__ns:=/robot1/llm"
        assert ros[ros.index("--log-level") + 1] == "debug"
        assert ros[ros.index("--params-file") + 1].endswith("timebill.yaml")
        # -p after the file: the command line overrides the file, as in the launch file.
        assert ros.index("model:=test:tiny") > ros.index("--params-file")
        assert "queue_size:=3" in ros
    assert Bringup(predictor=False).nodes == ("generation_node",)


def test_the_respawn_rule_is_launchs_a_fixed_delay_and_a_number_of_restarts_per_run():
    from timebill_ros.respawn import RESPAWN, RespawnRule

    rule = RespawnRule(delay=2.0, max_retries=3)
    assert [rule.restart_delay(n) for n in range(5)] == [2.0, 2.0, 2.0, None, None]
    assert RESPAWN.delay > 0 and RESPAWN.max_retries > 0


class _Ended:
    """A node's process that has already exited."""
    pid, returncode = 4242, 3

    def poll(self):
        return self.returncode


def test_bringup_restarts_a_node_that_ends_by_the_rule_then_gives_up(monkeypatch):
    from timebill_ros.bringup import Bringup
    from timebill_ros.respawn import RespawnRule

    b = Bringup(predictor=False, respawn=RespawnRule(delay=0.3, max_retries=2))
    starts = []

    def start_node(name):
        starts.append(time.monotonic())
        b.procs[name] = _Ended()

    monkeypatch.setattr(b, "start_node", start_node)
    b.start()
    said = []
    assert b.supervise(threading.Event(), say=said.append) is False
    # Started once, restarted twice, each after the rule's delay; the third end is final.
    assert len(starts) == 3 and b.restarts == {"generation_node": 2}
    assert all(later - earlier >= 0.3 for earlier, later in zip(starts, starts[1:]))
    assert "giving up" in said[-1]
