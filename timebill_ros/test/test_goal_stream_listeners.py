"""A running goal's status (its CompletionEstimate, its rviz marker) is made and published only
while someone listens (timebill_ros/goal_stream.py ``listened``): with nobody subscribed the
decoding loop does not pay for it."""
from conftest import needs_ros, wait_for

pytestmark = needs_ros


def test_a_publisher_is_listened_to_only_while_a_subscriber_is_matched(rclpy_context):
    from rclpy.node import Node
    from visualization_msgs.msg import Marker

    from timebill_ros.goal_stream import listened

    talker = Node("listened_talker", context=rclpy_context)
    listener = Node("listened_listener", context=rclpy_context)
    try:
        pub = talker.create_publisher(Marker, "/listened_test/marker", 10)
        assert not listened(pub)
        sub = listener.create_subscription(Marker, "/listened_test/marker", lambda m: None, 10)
        wait_for(lambda: listened(pub), 10, what="the subscriber to be matched")
        listener.destroy_subscription(sub)
        wait_for(lambda: not listened(pub), 10, what="the subscriber to be gone")
    finally:
        talker.destroy_node()
        listener.destroy_node()


def test_a_publisher_of_a_context_that_is_gone_is_not_listened_to(rclpy_context):
    from rclpy.node import Node
    from visualization_msgs.msg import Marker

    from timebill_ros.goal_stream import listened

    node = Node("listened_gone", context=rclpy_context)
    pub = node.create_publisher(Marker, "/listened_test/gone", 10)
    node.destroy_node()
    assert not listened(pub)
