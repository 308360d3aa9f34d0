"""Where does the generation node's memory go over many goals: Python's heap, or below it?

Runs the generation node (tiny test model, local estimates) and a TimeBillClient in this one
process, sends goals one after another, and compares two tracemalloc snapshots (after --warmup
goals and at the end) by source line, next to the process's RSS. Growth that RSS shows and the
snapshots do not is native (torch, the middleware, the allocator). benchmarks/soak_bench.py
measures the node alone, in its own process; this is the follow-up when it drifts.

    source scripts/env.sh
    python benchmarks/node_heap_bench.py --goals 500 --warmup 100      # ~1 minute on 2 cores
"""
from __future__ import annotations

import argparse
import gc
import os
import pathlib
import sys
import tempfile
import threading
import tracemalloc

from soak_bench import rss_mb, tiny_params  # benchmarks/, this script's folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--goals", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=100, help="goals before the first snapshot")
    ap.add_argument("--top", type=int, default=12, help="source lines to list")
    ap.add_argument("--domain", type=int, default=78)
    args = ap.parse_args()
    if not 0 < args.warmup < args.goals:
        ap.error(f"--warmup must be between 0 and --goals ({args.goals}); it is {args.warmup}")

    work = pathlib.Path(tempfile.mkdtemp(prefix="timebill-heap-"))
    os.environ.update(ROS_DOMAIN_ID=str(args.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                      ROS_HOME=str(work), ROS_LOG_DIR=str(work / "log"))
    params = tiny_params(work, autostart=False)  # configured and activated below, in this process
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init(args=["--ros-args", "-r", "__ns:=/timebill", "--params-file", str(params), "--log-level", "warn"])
    from timebill_ros.client import TimeBillClient
    from timebill_ros.generation_node import GenerationNode

    node = GenerationNode()
    node.trigger_configure()
    node.trigger_activate()
    executor = MultiThreadedExecutor(num_threads=8)
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    client = TimeBillClient()
    try:
        if not client.wait_until_ready(timeout=60):
            print(f"the node did not start serving; logs in {work}", file=sys.stderr)
            return 2
        tracemalloc.start(1)
        for i in range(1, args.goals + 1):
            client.ask(f"Soak question {i}: where is the cup?", 30.0, max_new_tokens=16, policy="kill", timeout=60.0)
            if i == args.warmup:
                gc.collect()
                first, rss0 = tracemalloc.take_snapshot(), rss_mb(os.getpid())
                print(f"{i} goals: RSS {rss0:.1f} MB, Python heap {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB",
                      flush=True)
        gc.collect()
        last, rss1 = tracemalloc.take_snapshot(), rss_mb(os.getpid())
        heap = sum(s.size_diff for s in last.compare_to(first, "filename"))
        n = args.goals - args.warmup
        print(f"{args.goals} goals: RSS {rss1:.1f} MB, Python heap {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB")
        print(f"\nover the last {n} goals: RSS {rss1 - rss0:+.2f} MB ({(rss1 - rss0) * 1024 / n:+.2f} KB a goal), "
              f"Python heap {heap / 2**20:+.3f} MB ({heap / 1024 / n:+.2f} KB a goal)")
        print("largest changes by source line:")
        for stat in last.compare_to(first, "lineno")[:args.top]:
            print(f"  {stat}")
    finally:
        stop.set()
        spinner.join(timeout=5)
        client.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
