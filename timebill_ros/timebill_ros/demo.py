"""`timebill_ros demo` (and `bringup --demo`): bring both nodes up, ask one budgeted question,
stream the answer, shut everything down."""
from __future__ import annotations

import os
import pathlib
import signal
import sys
import time

from .bringup import bringup_from_args
from .exit_codes import EXIT_GOAL_FAILED, EXIT_NO_SYSTEM
from .query import run_query

DEFAULT_PROMPT = "In two sentences: why should a robot's language model answer within a time budget?"


def run_demo(args, prompt: str) -> int:
    """Bring the system up, ask one budgeted question, stream the answer, shut everything down."""
    from .client import TimeBillClient

    ros_home = pathlib.Path(os.environ.get("ROS_HOME") or pathlib.Path.home() / ".ros")
    log_path = ros_home / "log" / f"timebill_demo-{time.strftime('%Y%m%d-%H%M%S')}.log"
    b = bringup_from_args(args, log_path=log_path, echo=True)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: stop the nodes, then exit
        signal.signal(sig, interrupt)
    print(f"[demo] starting the nodes on model '{args.model or 'from ' + (b.config or 'defaults')}' "
          f"(node output: {log_path})", file=sys.stderr)
    print("[demo] the first run converts the embedded model and profiles this machine (a minute or two)",
          file=sys.stderr)
    b.start()
    code = EXIT_NO_SYSTEM
    client = None
    try:
        client = TimeBillClient(namespace=b.namespace, node_name="timebill_demo")
        start = time.monotonic()
        end = start + args.startup_timeout
        ready = False
        beat = start
        while time.monotonic() < end and not b.dead():
            if client.wait_until_ready(timeout=0.5, estimator="predictor_node" in b.nodes):
                ready = True
                break
            if time.monotonic() - beat >= 20.0:
                beat = time.monotonic()
                print(f"[demo] still starting ({beat - start:.0f} s)", file=sys.stderr, flush=True)
        if not ready:
            why = f"ended: {', '.join(b.dead())}" if b.dead() else f"not ready within {args.startup_timeout:.0f} s"
            print(f"[demo] the nodes {why}; see {log_path}", file=sys.stderr)
            return code
        b.quiet_after_ready = True
        print(f"[demo] ready. Question (budget {args.budget:.2f} s, policy {args.policy}): {prompt}\n",
              file=sys.stderr, flush=True)
        args.prompt = prompt
        code = run_query(client, args)
    except KeyboardInterrupt:
        print("\n[demo] interrupted", file=sys.stderr)
        code = EXIT_GOAL_FAILED
    finally:
        if client is not None:
            client.close()
        clean = b.stop()
        print(f"[demo] nodes stopped {'cleanly' if clean else '(some had to be killed)'}", file=sys.stderr)
    return code


def cmd_demo(args) -> int:
    return run_demo(args, args.prompt or DEFAULT_PROMPT)
