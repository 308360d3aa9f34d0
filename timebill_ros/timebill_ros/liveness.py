"""How a client learns that the generation node died with its goals.

An action client hears nothing when the server's process ends: the goal's result request just
never gets an answer (a SIGKILLed node restarted by bringup or launch knows nothing of the goals
the old one had). DDS itself can tell: the generation node offers a topic with AUTOMATIC
liveliness and a lease of ``LEASE`` seconds (its process asserts it, nothing is ever published),
and a subscriber whose writer stops asserting gets a liveliness-changed event within the lease.
``TimeBillClient`` then fails every goal still waiting with ``GoalLost``; a client of your own
subscribes to ``ALIVE_TOPIC`` with ``ALIVE_QOS`` and does the same (README).

A lease can also lapse on a node that is only starved of CPU (seen here with the tests and a
labelling job on 2 cores): failing its goals would be wrong. So a lapse makes the goals suspect,
and ``NodeWatch`` decides: the same writer alive again (``not_alive`` back down) clears them; a
new writer (a restarted node: ``alive`` up, ``not_alive`` unchanged) or ``CONFIRM`` seconds
without recovery loses them.
"""
from __future__ import annotations

import threading
import time

from rclpy.duration import Duration
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy

ALIVE_TOPIC = "generation_alive"  # in the nodes' namespace: /timebill/generation_alive
LEASE = 1.0                       # seconds: a node silent this long is suspect
CONFIRM = 1.0                     # seconds more without recovery: it is gone
ALIVE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, liveliness=LivelinessPolicy.AUTOMATIC,
                       liveliness_lease_duration=Duration(nanoseconds=int(LEASE * 1e9)))


class GoalLost(RuntimeError):
    """The generation node stopped (crashed, was killed or restarted) while this goal was queued or
    running: it will not be answered. A restarted node does not know it; send it again."""


class NodeWatch:
    """Liveliness events of the generation node's writer -> ``on_lost()`` when goals sent before are
    lost for good (see the module's docstring). ``event(alive_change, not_alive_change)`` is called
    with each liveliness-changed event's counts; ``on_lost`` runs on a timer thread or the caller's."""

    def __init__(self, on_lost, confirm: float = CONFIRM):
        self.on_lost, self.confirm = on_lost, float(confirm)
        self._lock = threading.Lock()
        self._suspect_since: float | None = None
        self._timer: threading.Timer | None = None

    def event(self, alive_change: int, not_alive_change: int) -> None:
        with self._lock:
            if not_alive_change > 0 or alive_change < 0:  # a writer lapsed or left
                if self._suspect_since is None:
                    self._suspect_since = time.monotonic()
                    self._timer = threading.Timer(self.confirm, self._expire, args=(self._suspect_since,))
                    self._timer.daemon = True
                    self._timer.start()
                return
            if self._suspect_since is None:
                return  # a writer came while all was well (start-up): nothing to decide
            recovered = alive_change > 0 and not_alive_change < 0
            self._clear()
        if not recovered:  # a new writer: the node restarted, the old one's goals are gone
            self.on_lost()

    def _expire(self, since: float) -> None:
        with self._lock:
            if self._suspect_since != since:
                return  # decided meanwhile
            self._clear()
        self.on_lost()

    def _clear(self) -> None:
        self._suspect_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
