"""The served system for the benchmarks that measure through the nodes: `timebill_ros bringup` in a
ROS domain of its own, and a `TimeBillClient` on it, both stopped when the block ends."""
from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import tempfile


@contextlib.contextmanager
def bringup_session(domain: int, bringup_args=(), log_dir: str | None = None, log_name: str = "bringup.log"):
    """Yields (client, bringup log path). The caller waits for readiness (``client.wait_until_ready``)."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    import rclpy

    from timebill_ros.client import TimeBillClient

    log = pathlib.Path(log_dir or tempfile.mkdtemp(prefix="timebill-bench-")) / log_name
    with open(log, "w") as out:
        bringup = subprocess.Popen(["timebill_ros", "bringup", *bringup_args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain, args=[])
    try:
        with TimeBillClient(context=ctx) as client:
            yield client, log
    finally:
        ctx.try_shutdown()
        os.killpg(bringup.pid, signal.SIGINT)
        bringup.wait(timeout=30)


@contextlib.contextmanager
def ready_session(domain: int, params=(), log_dir: str | None = None, log_name: str = "bringup.log"):
    """``bringup_session`` with node parameters ``params`` (NAME:=VALUE), once both nodes answer:
    yields (client, bringup log path). When they do not come up within 600 s the benchmark ends
    with exit status 2, naming the log."""
    with bringup_session(domain, [a for p in params for a in ("--param", p)], log_dir, log_name) as (client, log):
        if not client.wait_until_ready(timeout=600, estimator=True):
            print(f"the nodes did not come up; log: {log}", file=sys.stderr)
            raise SystemExit(2)
        yield client, log
