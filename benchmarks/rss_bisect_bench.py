"""Which part of the generation node drifts in memory over many goals? Pieces run alone.

benchmarks/soak_bench.py measures the whole node (about +1.5 MB per 1,000 tiny-model goals after
the first few hundred) and benchmarks/node_heap_bench.py shows Python's heap does not grow. This
runs the pieces on their own, with resident memory (VmRSS) sampled every --every jobs:

- ``core``: the TimeBill engine on the tiny test model, no ROS, every job on this thread.
- ``core-threads``: the same, each job on a new thread (as threads differ between goals in a node).
- ``rclpy-server``: a minimal rclpy action server of BudgetedQuery in its own process (16 feedback
  messages and a result per goal, no model), driven by TimeBillClient; ``--deep-queues`` gives it
  the generation node's queue depth of 1000 on its services and feedback.

    source scripts/env.sh
    python benchmarks/rss_bisect_bench.py --mode core --jobs 2000           # ~30 s
    python benchmarks/rss_bisect_bench.py --mode rclpy-server --jobs 2000   # ~40 s
    python benchmarks/rss_bisect_bench.py --mode rclpy-server --deep-queues --jobs 3000 --every 500
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from soak_bench import rss_mb  # benchmarks/, this script's folder

MINIMAL_SERVER = '''
import rclpy
from rclpy.action import ActionServer
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile
from timebill_msgs.action import BudgetedQuery

rclpy.init()
node = rclpy.create_node("generation_node", namespace="/timebill")

def execute(handle):
    for i in range(16):
        handle.publish_feedback(BudgetedQuery.Feedback(text="x", tokens_generated=i + 1))
    handle.succeed()
    return BudgetedQuery.Result(outcome=BudgetedQuery.Result.COMPLETED, text="x" * 16, generated_tokens=16)

queues = {f"{k}_qos_profile": QoSProfile(depth=DEPTH) for k in ("goal_service", "result_service",
                                                                  "cancel_service", "feedback_pub")} if DEPTH else {}
server = ActionServer(node, BudgetedQuery, "budgeted_query", execute, callback_group=ReentrantCallbackGroup(),
                      **queues)
executor = MultiThreadedExecutor(num_threads=8)
executor.add_node(node)
try:
    executor.spin()
except KeyboardInterrupt:
    pass
'''


def run_core(jobs: int, every: int, threads: bool, sample):
    from timebill.config import load_config
    from timebill.request import Request
    from timebill.runtime import build_engine

    cfg = load_config(overrides={"model": "test:tiny", "cache_dir": tempfile.mkdtemp(prefix="timebill-rss-"),
                                 "profile_max_tokens": 256, "constant_expected_tokens": 16,
                                 "default_max_new_tokens": 16})
    engine = build_engine(cfg, progress=False)
    sample(0, os.getpid())
    for i in range(1, jobs + 1):
        def job(i=i):
            engine.generate(Request(f"Soak question {i}: where is the cup?", budget=30.0, max_new_tokens=16))
        if threads:
            t = threading.Thread(target=job)
            t.start()
            t.join()
        else:
            job()
        if i % every == 0:
            sample(i, os.getpid())


def run_rclpy_server(jobs: int, every: int, domain: int, depth: int, sample):
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    server = subprocess.Popen([sys.executable, "-c", f"DEPTH = {depth}\n" + MINIMAL_SERVER], env=env,
                              start_new_session=True)
    try:
        import rclpy

        from timebill_ros.client import TimeBillClient

        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain, args=[])
        with TimeBillClient(context=ctx) as client:
            if not client.wait_until_ready(timeout=60):
                raise RuntimeError("the minimal action server did not come up")
            sample(0, server.pid)
            for i in range(1, jobs + 1):
                client.ask("q", 30.0, timeout=30.0)
                if i % every == 0:
                    sample(i, server.pid)
        ctx.try_shutdown()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("core", "core-threads", "rclpy-server"), required=True)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--domain", type=int, default=76)
    ap.add_argument("--deep-queues", action="store_true",
                    help="rclpy-server: the generation node's depth of 1000 (rclpy's default is 10)")
    args = ap.parse_args()

    samples: list[tuple[int, float, float]] = []
    t0 = time.monotonic()

    def sample(i: int, pid: int):
        samples.append((i, rss_mb(pid), time.monotonic() - t0))
        print(f"  {i:6d} jobs  RSS {samples[-1][1]:7.1f} MB  {samples[-1][2]:6.1f} s", flush=True)

    if args.mode == "rclpy-server":
        run_rclpy_server(args.jobs, args.every, args.domain, 1000 if args.deep_queues else 0, sample)
    else:
        run_core(args.jobs, args.every, args.mode == "core-threads", sample)
    half = [mb for n, mb, _ in samples if n >= args.jobs // 2]
    print(f"\n{args.mode}: RSS {samples[0][1]:.1f} -> {samples[-1][1]:.1f} MB over {args.jobs} jobs; "
          f"growth over the second half {half[-1] - half[0]:+.2f} MB "
          f"({(half[-1] - half[0]) * 1024 / max(samples[-1][0] - args.jobs // 2, 1):+.2f} KB a job)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
