"""When a client decides that the generation node's goals are lost (timebill_ros/liveness.py)."""
import threading
import time

import pytest

pytest.importorskip("rclpy", reason="source scripts/env.sh")
from timebill_ros.liveness import NodeWatch  # noqa: E402


def watch(confirm=0.2):
    lost = threading.Event()
    return NodeWatch(lost.set, confirm=confirm), lost


def test_a_node_that_stays_silent_past_the_confirmation_loses_its_goals():
    w, lost = watch()
    w.event(alive_change=-1, not_alive_change=+1)
    assert not lost.is_set()
    assert lost.wait(2.0)


def test_a_restarted_node_loses_the_old_goals_at_once():
    w, lost = watch(confirm=30.0)
    w.event(alive_change=-1, not_alive_change=+1)   # the old writer lapses
    w.event(alive_change=+1, not_alive_change=0)    # a new writer: the respawned node
    assert lost.is_set()


def test_a_starved_node_that_recovers_keeps_its_goals():
    w, lost = watch()
    w.event(alive_change=-1, not_alive_change=+1)
    w.event(alive_change=+1, not_alive_change=-1)   # the same writer asserted itself again
    time.sleep(0.4)
    assert not lost.is_set()


def test_a_node_coming_up_is_no_loss():
    w, lost = watch()
    w.event(alive_change=+1, not_alive_change=0)
    time.sleep(0.3)
    assert not lost.is_set()
