"""launch_testing test of launch/timebill.launch.py: start it, send a goal, check feedback and result.

Where launch_testing is not importable (a venv of PyPI wheels: it has no wheel) this module is
reported as skipped with that reason; test_ros_launch.py checks the file statically, and
test_ros_nodes.py / test_ros_cli.py run the same nodes started by `timebill_ros bringup`.
"""
from __future__ import annotations

import tempfile
import unittest

import pytest

launch_testing = pytest.importorskip(
    "launch_testing", reason="launch_testing is not installed (no PyPI wheel; it comes with a ROS 2 install)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed (no PyPI wheel; it comes with a ROS 2 install)")

import launch_testing.actions  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from conftest import PKG_DIR  # noqa: E402

LAUNCH = PKG_DIR / "launch" / "timebill.launch.py"
NAMESPACE = "timebill_launch_test"


@pytest.mark.launch_test
def generate_test_description():
    cache = tempfile.mkdtemp(prefix="timebill-launch-test-")
    config = f"{cache}/tiny.yaml"
    with open(config, "w") as f:
        f.write(f"/**:\n  ros__parameters:\n    model: \"test:tiny\"\n    cache_dir: \"{cache}\"\n"
                f"    profile_max_tokens: 256\n    constant_expected_tokens: 16\n"
                f"    loop_window_tokens: 0\n")  # the random test model repeats itself
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH)),
        launch_arguments={"config": config, "namespace": NAMESPACE, "log_level": "info"}.items(),
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestBudgetedQuery(unittest.TestCase):
    def test_goal_feedback_and_result(self):
        import rclpy

        from timebill_ros.client import TimeBillClient

        ctx = rclpy.Context()
        rclpy.init(context=ctx, args=[])
        try:
            with TimeBillClient(namespace=NAMESPACE, context=ctx) as client:
                self.assertTrue(client.wait_until_ready(timeout=120, estimator=True), "nodes not ready")
                feedback = []
                h = client.query("Where is the red cup?", 10.0, max_new_tokens=20, on_feedback=feedback.append)
                r = h.result(timeout=60)
                from action_msgs.msg import GoalStatus
                from timebill_msgs.action import BudgetedQuery

                self.assertEqual(r.outcome, BudgetedQuery.Result.COMPLETED, r.message)
                self.assertEqual(h.status, GoalStatus.STATUS_SUCCEEDED)
                self.assertTrue(feedback)
                self.assertEqual("".join(fb.text for fb in feedback), r.text)
        finally:
            ctx.try_shutdown()
