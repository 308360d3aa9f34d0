"""How fast a client process takes BudgetedQuery feedback, per rclpy executor.

A publisher process streams N feedback messages (one per "token", paced like a fast model) on a
private domain; this process subscribes with the same QoS as TimeBillClient (depth 1000) and
each executor in turn, and prints what arrived, what was lost, how far behind it ended and the CPU
this process spent per message taken (what each message costs a client on the same cores).

    source scripts/env.sh
    python benchmarks/feedback_bench.py            # ~1 minute
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

TOPIC = "/feedback_bench/_action/feedback"


def publish(n: int, period: float) -> None:
    import rclpy
    from rclpy.qos import QoSProfile
    from timebill_msgs.action import BudgetedQuery

    rclpy.init()
    node = rclpy.create_node("feedback_bench_pub")
    pub = node.create_publisher(BudgetedQuery.Impl.FeedbackMessage, TOPIC, QoSProfile(depth=1000))
    while pub.get_subscription_count() == 0:
        time.sleep(0.05)
    time.sleep(0.5)
    msg = BudgetedQuery.Impl.FeedbackMessage()
    t0 = time.monotonic()
    for i in range(1, n + 1):
        msg.feedback.tokens_generated = i
        msg.feedback.text = " word"
        pub.publish(msg)
        time.sleep(period)
    print(f"{time.monotonic() - t0:.4f}", flush=True)
    time.sleep(2.0)
    node.destroy_node()
    rclpy.shutdown()


def receive(executor_kind: str, n: int, period: float, domain: int) -> dict:
    import rclpy
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from timebill_msgs.action import BudgetedQuery

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("feedback_bench_sub", context=ctx)
    got: list[tuple[float, int]] = []
    node.create_subscription(BudgetedQuery.Impl.FeedbackMessage, TOPIC,
                             lambda m: got.append((time.monotonic(), m.feedback.tokens_generated)),
                             QoSProfile(depth=1000), callback_group=MutuallyExclusiveCallbackGroup())
    ex = (SingleThreadedExecutor(context=ctx) if executor_kind == "single"
          else MultiThreadedExecutor(num_threads=2, context=ctx))
    ex.add_node(node)
    cpu0 = time.process_time()  # this process only: what taking the messages costs a client
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    pub = subprocess.run([sys.executable, __file__, "--publish", str(n), "--period", str(period)],
                         env=env, capture_output=True, text=True, timeout=120)
    sent_s = float(pub.stdout.strip().splitlines()[-1])
    cpu = time.process_time() - cpu0
    ex.shutdown()
    spin.join(5)
    node.destroy_node()
    ctx.try_shutdown()
    ids = [i for _, i in got]
    span = got[-1][0] - got[0][0] if len(got) > 1 else float("nan")
    return {"received": len(got), "lost": n - len(set(ids)), "send_s": sent_s, "receive_s": span,
            "rate": len(got) / span if span > 0 else float("nan"), "cpu_ms": 1e3 * cpu / max(len(got), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--period", type=float, default=0.001, help="seconds between messages")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--publish", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publish:
        publish(args.publish, args.period)
        return
    domain = 90 + os.getpid() % 10
    print(f"{args.messages} feedback messages, one every {args.period * 1e3:.1f} ms (+ publish cost), "
          f"{args.repeats} runs per executor, medians")
    print(f"{'executor':<10} {'sent/s':>8} {'taken/s':>8} {'lost':>6} {'behind s':>9} {'CPU ms/msg':>10}")
    for kind in ("single", "multi"):
        runs = [receive(kind, args.messages, args.period, domain) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{kind:<10} {args.messages / med['send_s']:8.0f} {med['rate']:8.0f} {med['lost']:6.0f} "
              f"{med['receive_s'] - med['send_s']:9.3f} {med['cpu_ms']:10.3f}", flush=True)


if __name__ == "__main__":
    main()
