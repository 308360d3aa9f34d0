"""A workaround for an rclpy bug that made every goal a client had ever sent cost it time on each token."""
from __future__ import annotations


def forget_orphaned_futures(action) -> None:
    """Drop the futures an rclpy ActionClient registered but will never complete.

    rclpy 9.1.x (Kilted) ``send_goal_async`` registers each goal's future twice and completes only
    the second (fixed upstream in ros2/rclpy#1532). The first stayed in the client's ``_futures``
    for good: one Future with its lock and callbacks per goal, and the executor walks that list
    each time feedback or a response arrives, so a planner that had sent thousands of goals paid
    for all of them on every token. A future that is neither done nor pending as a goal, cancel
    or result request is such an orphan; none exist on an rclpy without the bug.
    """
    with action._lock:
        live = {id(f) for pending in (action._pending_goal_requests, action._pending_cancel_requests,
                                      action._pending_result_requests) for f in pending.values()}
        for f in [f for f in action._futures if id(f) not in live and not f.done()]:
            action.remove_future(f)
