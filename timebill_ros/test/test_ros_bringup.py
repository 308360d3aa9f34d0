"""`timebill_ros bringup` under faults (issue 12, failures 2 and 6): it stops its nodes on SIGTERM
and SIGHUP as on Ctrl-C, no node outlives it even when it is SIGKILLed, and a crashed node is
restarted while the other keeps serving. Both nodes on the tiny test model, in their own domain."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROS_HOME, needs_ros, processes_with, wait_for

pytestmark = needs_ros

COMPLETED = pytest.importorskip("timebill_msgs.action", reason="source scripts/env.sh").BudgetedQuery.Result.COMPLETED


def _config(tmp_path, **extra) -> str:
    cache = tmp_path / "cache"
    lines = [f'    model: "test:tiny"', f'    cache_dir: "{cache}"', "    profile_max_tokens: 256",
             "    constant_expected_tokens: 16", "    default_max_new_tokens: 16", "    diagnostics_period: 0.5",
             "    loop_window_tokens: 0"]  # the random test model repeats itself; long goals must stay long
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    path = tmp_path / "tiny.yaml"
    path.write_text("/**:\n  ros__parameters:\n" + "\n".join(lines) + "\n")
    return str(path)


def nodes_of(config: str) -> dict[str, int]:
    """Node processes started with this parameter file: name -> pid."""
    return {name: pid for pid, argv in processes_with(config).items()
            for name in ("generation_node", "predictor_node") if f"timebill_ros.{name}" in argv}


class Bringup:
    def __init__(self, env, tmp_path, **params):
        self.config = _config(tmp_path, **params)
        self.log_path = ROS_HOME / f"bringup-{env['ROS_DOMAIN_ID']}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "timebill_ros.cli", "bringup", "--config", self.config],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def teardown(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in nodes_of(self.config).values():  # never leave a node behind, whatever failed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


@pytest.fixture
def bringup(ros_env, tmp_path):
    made = []

    def start(**params):
        b = Bringup(ros_env, tmp_path, **params)
        made.append(b)
        return b

    yield start
    for b in made:
        b.teardown()


@pytest.fixture
def client(rclpy_context):
    from timebill_ros.client import TimeBillClient

    c = TimeBillClient(context=rclpy_context)
    yield c
    c.close()


def _ready(b: Bringup, client, timeout=120):
    if not client.wait_until_ready(timeout=timeout, estimator=True):
        raise AssertionError("nodes not ready:\n" + b.text()[-3000:])
    return wait_for(lambda: len(nodes_of(b.config)) == 2 and nodes_of(b.config), 10, what="both node processes")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_bringup_stops_its_nodes_on_sigterm_and_sighup(bringup, client, sig):
    # Issue 12, failure 6: `kill -TERM <bringup>` (systemd, docker stop) left both nodes running.
    b = bringup()
    _ready(b, client)
    os.kill(b.proc.pid, sig)
    assert b.proc.wait(timeout=20) == 0, b.text()[-3000:]
    assert not nodes_of(b.config), "node processes left behind"
    assert "nodes stopped" in b.text() and "had to be killed" not in b.text(), b.text()[-3000:]


def test_no_node_outlives_a_sigkilled_bringup(bringup, client):
    # Issue 12, failure 6: after bringup was killed, nodes were found alive 51 minutes later.
    b = bringup()
    _ready(b, client)
    os.kill(b.proc.pid, signal.SIGKILL)
    b.proc.wait(timeout=5)
    t0 = time.monotonic()
    wait_for(lambda: not nodes_of(b.config), 10, what="the nodes to end after bringup was killed")
    assert time.monotonic() - t0 < 8.0


def test_a_crashed_predictor_is_restarted_and_generation_keeps_serving(bringup, client):
    # Issue 12, failure 2: SIGKILL of the predictor stopped the generation node too, and while the
    # predictor was gone every goal first waited out predictor_timeout.
    timeout = 3.0
    b = bringup(predictor_timeout=timeout)
    pids = _ready(b, client)
    assert client.ask("Before the crash?", 20.0, max_new_tokens=4).outcome == COMPLETED
    os.kill(pids["predictor_node"], signal.SIGKILL)
    # The generation node answers on its local estimate; the first goal may still wait out the
    # timeout (the middleware has not noticed the crash yet), the ones after it must not.
    first = client.ask("Anyone predicting?", 30.0, max_new_tokens=4)
    assert first.outcome == COMPLETED, first.message
    t0 = time.monotonic()
    second = client.ask("Still nobody?", 30.0, max_new_tokens=4)
    waited = time.monotonic() - t0
    assert second.outcome == COMPLETED and "local estimate" in second.message, second.message
    assert waited < timeout, f"a goal waited {waited:.2f} s with the predictor known to be gone"
    assert nodes_of(b.config).get("generation_node") == pids["generation_node"], "the generation node restarted"
    # Bringup restarts the predictor, and the generation node finds it again by its probe.
    wait_for(lambda: "predictor_node restarted" in b.text(), 20, what="bringup to restart the predictor")
    wait_for(lambda: nodes_of(b.config).get("predictor_node") not in (None, pids["predictor_node"]), 5,
             what="a new predictor process")
    assert client.wait_until_ready(timeout=120, estimator=True)

    def served_by_predictor():
        r = client.ask("Back again?", 30.0, max_new_tokens=4)
        return r.outcome == COMPLETED and "local estimate" not in r.message

    wait_for(served_by_predictor, 60, interval=0.5, what="a goal estimated by the restarted predictor")
    log = b.text()
    assert "predictor_node ended (exit code -9); restarting it" in log, log[-3000:]
    assert b.proc.poll() is None, "bringup ended"


def test_a_client_learns_at_once_that_its_goals_died_with_the_generation_node(bringup, client):
    # Issue 18: with a goal running and others queued, the generation node was SIGKILLed (bringup
    # restarted it within a second) and the client heard nothing until its own timeout.
    from timebill_ros.liveness import CONFIRM, LEASE, GoalLost

    b = bringup()
    pids = _ready(b, client)
    running = client.query("Tell me a very long story.", 60.0, policy="skip_next", max_new_tokens=1800)
    wait_for(lambda: running.tokens_generated > 0, 20, what="the first goal to run")
    queued = [client.query(f"Question {i}?", 60.0, max_new_tokens=4) for i in range(3)]
    for h in queued:
        h.wait_accepted(timeout=10)
    os.kill(pids["generation_node"], signal.SIGKILL)
    t0 = time.monotonic()
    for h in [running, *queued]:
        with pytest.raises(GoalLost, match="generation node stopped"):
            h.result(timeout=10)
    assert time.monotonic() - t0 < LEASE + CONFIRM + 1.0, "the loss was noticed late"
    # Bringup restarts the node, and the same client's next goal is served.
    assert client.wait_until_ready(timeout=120)

    def served():
        try:
            return client.ask("Back?", 30.0, max_new_tokens=4, timeout=10).outcome == COMPLETED
        except (GoalLost, TimeoutError):
            return False

    wait_for(served, 60, interval=0.5, what="a goal served by the restarted generation node")


def test_by_default_tokens_are_coalesced_into_feedback_at_most_every_feedback_period(bringup, client):
    # One message per token costs the decoding loop ~1.7 ms each (docs/BENCHMARKS.md); the shipped
    # configuration sends the first token at once and then at most one message per 50 ms.
    b = bringup()
    _ready(b, client)
    fbs = []
    t0 = time.monotonic()
    r = client.query("Tell me a long story.", 30.0, max_new_tokens=256, on_feedback=fbs.append).result(timeout=60)
    took = time.monotonic() - t0
    assert r.outcome == COMPLETED, r.message
    wait_for(lambda: fbs and fbs[-1].tokens_generated >= r.generated_tokens, 5, what="the stream's tail")
    assert "".join(fb.text for fb in fbs) == r.text
    assert fbs[0].tokens_generated == 1                    # the first token is not held back
    assert len(fbs) <= took / 0.05 + 2                     # the period, plus the first token and the flush
    assert len(fbs) < r.generated_tokens
