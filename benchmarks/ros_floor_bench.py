"""The floor under any rclpy action server on this machine: what a goal costs with no work in it.

Issue 18 bounds what the nodes add to a goal (send -> result received, minus the engine's own
work) at 10 ms. This measures what ROS 2 itself costs here, without timebill's nodes, on a private
domain, with the client in another process as a planner's would be:

1. one DDS message: the CPU the publishing thread spends in ``publish`` (a BudgetedQuery feedback
   message, reliable, depth 1000, one subscriber in another process), back to back and with a
   pause between messages as a decoding loop makes (a message every 50 ms at the node's default
   feedback rate);
2. an empty BudgetedQuery action server (the execute callback succeeds at once, as
   ros2/examples' minimal action server), single-threaded and multi-threaded executor (the
   generation node's): client send -> result received, median over --goals goals;
3. the same server sending --feedback messages --period s apart before it succeeds (what a goal
   of that length streams): send -> result received minus the time the server slept.

    source scripts/env.sh
    python benchmarks/ros_floor_bench.py --out docs/bench/ros_floor.json     # ~1 minute; run alone
    python benchmarks/ros_floor_bench.py --timebill-client   # part 2 also from timebill's own client
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ACTION = "/ros_floor_bench/query"
TOPIC = "/ros_floor_bench/feedback"


def _qos():
    from rclpy.qos import QoSProfile

    return QoSProfile(depth=1000)


def subscriber() -> None:
    """A subscriber process for part 1: takes every message, until killed."""
    import rclpy
    from timebill_msgs.action import BudgetedQuery

    rclpy.init()
    node = rclpy.create_node("ros_floor_sub")
    node.create_subscription(BudgetedQuery.Impl.FeedbackMessage, TOPIC, lambda m: None, _qos())
    rclpy.spin(node)


def publish_cost(messages: int) -> dict:
    """Part 1: CPU microseconds of the publishing thread per message, by pause before it."""
    import rclpy
    from timebill_msgs.action import BudgetedQuery

    node = rclpy.create_node("ros_floor_pub")
    pub = node.create_publisher(BudgetedQuery.Impl.FeedbackMessage, TOPIC, _qos())
    child = subprocess.Popen([sys.executable, __file__, "--role", "subscriber"])
    try:
        while pub.get_subscription_count() == 0:
            time.sleep(0.05)
        time.sleep(0.5)
        msg = BudgetedQuery.Impl.FeedbackMessage()
        msg.feedback.text = " the robot"
        out = {}
        for pause in (0.0, 0.01, 0.05):
            cpu = []
            for _ in range(messages):
                time.sleep(pause)
                t = time.thread_time()
                pub.publish(msg)
                cpu.append(time.thread_time() - t)
            out[f"pause_{int(pause * 1000)}ms_us"] = 1e6 * statistics.median(cpu)
        return out
    finally:
        child.terminate()
        child.wait()
        node.destroy_node()


def client(goals: int, kind: str = "plain") -> None:
    """The client process for parts 2 and 3: one goal at a time, each send -> result received
    printed in seconds, one per line. ``kind``: "plain" (rclpy's ActionClient, spun by the caller)
    or "timebill" (``TimeBillClient``, as the benchmarks and planners use it)."""
    import rclpy
    from rclpy.action import ActionClient
    from timebill_msgs.action import BudgetedQuery

    rclpy.init()
    if kind == "timebill":
        from timebill_ros.client import TimeBillClient

        with TimeBillClient(namespace="", action_name=ACTION) as tb:
            tb.wait_until_ready(timeout=60)
            for _ in range(goals + 2):  # the first two warm up
                t0 = time.monotonic()
                tb.query("x", 60.0).result(timeout=60)
                print(f"{time.monotonic() - t0:.6f}", flush=True)
        rclpy.try_shutdown()
        return
    node = rclpy.create_node("ros_floor_client")
    ac = ActionClient(node, BudgetedQuery, ACTION, feedback_sub_qos_profile=_qos())
    ac.wait_for_server()
    for _ in range(goals + 2):  # the first two warm up
        t0 = time.monotonic()
        sent = ac.send_goal_async(BudgetedQuery.Goal(prompt="x"), feedback_callback=lambda m: None)
        rclpy.spin_until_future_complete(node, sent)
        done = sent.result().get_result_async()
        rclpy.spin_until_future_complete(node, done)
        print(f"{time.monotonic() - t0:.6f}", flush=True)
    node.destroy_node()
    rclpy.shutdown()


def round_trip(executor_kind: str, goals: int, feedback: int, period: float, client_kind: str = "plain") -> dict:
    """Parts 2 and 3: an action server in this process, the client in another."""
    import rclpy
    from rclpy.action import ActionServer
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from timebill_msgs.action import BudgetedQuery

    slept: list[float] = []

    def execute(handle):
        t = 0.0
        for i in range(feedback):
            t0 = time.monotonic()
            time.sleep(period)  # stands for the decoding steps between two messages
            t += time.monotonic() - t0
            handle.publish_feedback(BudgetedQuery.Feedback(text=" the robot", tokens_generated=i + 1))
        slept.append(t)
        handle.succeed()
        return BudgetedQuery.Result()

    node = rclpy.create_node("ros_floor_server")
    server = ActionServer(node, BudgetedQuery, ACTION, execute_callback=execute, callback_group=ReentrantCallbackGroup(),
                          feedback_pub_qos_profile=_qos())
    ex = MultiThreadedExecutor(num_threads=8) if executor_kind == "multi" else SingleThreadedExecutor()
    ex.add_node(node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        out = subprocess.run([sys.executable, __file__, "--role", "client", "--goals", str(goals), "--client", client_kind],
                             capture_output=True, text=True, timeout=600, check=True).stdout
    finally:
        ex.shutdown()
        server.destroy()
        node.destroy_node()
    times = [float(x) for x in out.split()][2:]
    overheads = [1000 * (t - s) for t, s in zip(times, slept[2:])]
    return {"executor": executor_kind, "client": client_kind, "feedback": feedback, "period_s": period, "goals": len(times),
            "overhead_ms_median": statistics.median(overheads), "overhead_ms_min": min(overheads)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", default="main", choices=["main", "subscriber", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--goals", type=int, default=20)
    ap.add_argument("--messages", type=int, default=200, help="messages per pause in part 1")
    ap.add_argument("--feedback", type=int, default=32, help="feedback messages per goal in part 3 (~1.6 s at 20 Hz)")
    ap.add_argument("--period", type=float, default=0.05)
    ap.add_argument("--domain", type=int, default=77)
    ap.add_argument("--client", default="plain", choices=["plain", "timebill"], help=argparse.SUPPRESS)
    ap.add_argument("--timebill-client", action="store_true",
                    help="also time the empty goal from a TimeBillClient (the client the other benches use)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    os.environ["ROS_DOMAIN_ID"] = str(a.domain)  # the child processes inherit it
    if a.role == "subscriber":
        subscriber()
        return 0
    if a.role == "client":
        client(a.goals, a.client)
        return 0
    import rclpy

    rclpy.init()
    res = {"publish_cpu": publish_cost(a.messages), "round_trips": []}
    print("1. CPU of the publishing thread per message:",
          ", ".join(f"{k[:-3].replace('_', ' ')} {v:.0f} us" for k, v in res["publish_cpu"].items()), flush=True)
    print("2-3. client send -> result received, minus the server's sleep (ms):")
    for kind in ("single", "multi"):
        for fb in (0, a.feedback):
            r = round_trip(kind, a.goals, fb, a.period)
            res["round_trips"].append(r)
            print(f"  {kind}-threaded executor, {fb:3d} feedback messages: median {r['overhead_ms_median']:.1f}, "
                  f"min {r['overhead_ms_min']:.1f} ({r['goals']} goals)", flush=True)
        if a.timebill_client:
            r = round_trip(kind, a.goals, 0, a.period, client_kind="timebill")
            res["round_trips"].append(r)
            print(f"  {kind}-threaded executor, empty goal from a TimeBillClient: median {r['overhead_ms_median']:.1f}, "
                  f"min {r['overhead_ms_min']:.1f} ({r['goals']} goals)", flush=True)
    rclpy.shutdown()
    res["command"] = "python benchmarks/ros_floor_bench.py " + " ".join(sys.argv[1:])
    if a.out:
        path = os.path.join(a.out, "ros_floor.json") if os.path.isdir(a.out) else a.out
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
