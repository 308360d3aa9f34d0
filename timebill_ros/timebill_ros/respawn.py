"""The one rule by which a node that ended is started again, under `timebill_ros bringup` and under
`ros2 launch timebill_ros timebill.launch.py` (which imports ``RESPAWN`` from here).

Launch's respawn (launch_ros ``Node(respawn=..., respawn_delay=..., respawn_max_retries=...)``)
can say only this much: a fixed delay before each restart, and a number of restarts over the
whole run, after which the node stays down. Bringup keeps to the same rule rather than a richer
one of its own, so a node behaves the same whichever way it was started.

Nothing here imports ROS: the launch file reads it before any node exists.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RespawnRule:
    delay: float       # seconds between a node's end and its restart
    max_retries: int   # restarts of one node over the whole run; after them it stays down

    def restart_delay(self, restarts_so_far: int) -> float | None:
        """Seconds to wait before restarting a node that ended after ``restarts_so_far`` restarts;
        None when it has had all it gets (launch's ``respawn_retries < respawn_max_retries``)."""
        return self.delay if restarts_so_far < self.max_retries else None


# 2 s and 5: the launch file's values before the rule was shared. A node that fails at start-up
# (a missing model, say) is retried for about 10 s of delays, not forever.
RESPAWN = RespawnRule(delay=2.0, max_retries=5)
