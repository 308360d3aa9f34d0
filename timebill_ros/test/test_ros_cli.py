"""`timebill_ros demo` / `bringup --demo` end to end on the tiny model: nodes up from the YAML,
one budgeted query streamed, outcome printed, everything shut down with no process left behind."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import needs_ros, processes_with

pytestmark = needs_ros


def _ours(marker: str) -> list[str]:
    return [" ".join(argv) for argv in processes_with(marker).values()]


def test_demo_brings_up_answers_and_shuts_down(ros_env, tmp_path):
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "timebill_ros.cli", "demo", "Where is the red cup?", "--model", "test:tiny",
           "--budget", "5", "--max-new-tokens", "24", "--policy", "kill",
           "-p", f"cache_dir:={cache}", "-p", "profile_max_tokens:=256", "-p", "constant_expected_tokens:=16"]
    p = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=150)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "--- COMPLETED (goal status SUCCEEDED) ---" in p.stdout, p.stdout + p.stderr
    # The tiny model may end its turn early; it never goes past max_new_tokens, and the streamed
    # answer is printed before the result.
    m = re.search(r"tokens: prompt (\d+), generated (\d+) ", p.stdout)
    assert m, p.stdout
    assert int(m.group(1)) > 0 and 1 <= int(m.group(2)) <= 24, m.group(0)
    assert "[demo] ready." in p.stderr and "[demo] nodes stopped cleanly" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    assert not _ours(str(cache)), "node processes left behind"


def test_demo_reports_a_node_that_cannot_start(ros_env, tmp_path):
    cmd = [sys.executable, "-m", "timebill_ros.cli", "demo", "hello", "--model", str(tmp_path / "no-such-model"),
           "-p", f"cache_dir:={tmp_path}"]
    p = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "model path does not exist" in p.stderr and "exit code 1" in p.stderr, p.stderr
    assert not _ours(str(tmp_path))


def test_the_policy_flag_reads_policies_as_the_core_does():
    from timebill_ros.cli import build_parser

    def policy(text):
        return build_parser().parse_args(["query", "Hello?", "--policy", text]).policy

    assert [policy(p) for p in ("kill", "Skip-Next", " DEFAULT")] == ["kill", "skip_next", "default"]
    with pytest.raises(SystemExit):
        policy("drop")
