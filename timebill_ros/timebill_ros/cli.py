"""``timebill_ros``: the ROS 2 side from a terminal, for machines without the ``ros2`` CLI or ``launch``.

    timebill_ros demo ["prompt"] [--budget 3]    bring both nodes up on the embedded model, ask one
                                                 budgeted question, stream the answer, shut down
    timebill_ros bringup [--model M] [-p k:=v]   start both nodes from config/timebill.yaml (like
                                                 the launch file) until Ctrl-C; --demo "prompt" as above
    timebill_ros query "prompt" --budget 2.5 --policy kill     action client: stream tokens, print the result
    timebill_ros estimate "prompt" --budget 2.5                what-if: the predictor's estimate
    timebill_ros monitor                                       live view of jobs (estimates, feedback, reports)
"""
from __future__ import annotations

import argparse
import math
import sys

from timebill.cli import add_answer_args
from timebill.request import InvalidRequest, Policy

from .bringup import cmd_bringup
from .demo import DEFAULT_PROMPT, cmd_demo, run_demo
from .exit_codes import EXIT_GOAL_FAILED, EXIT_NO_SYSTEM
from .monitor import cmd_monitor
from .query import cmd_estimate, cmd_query


def _policy(s: str) -> str:
    """``default`` (the node's), or a policy as the core spells it (``Policy.parse``: Skip-Next too)."""
    if s.strip().lower() == "default":
        return "default"
    try:
        return Policy.parse(s).value
    except InvalidRequest:
        raise argparse.ArgumentTypeError("use kill, skip_next or default") from None


def _budget(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"the budget must be a positive number of seconds, got {s}")
    return v


def _add_goal_args(p, prompt_required=True):
    if prompt_required:
        p.add_argument("prompt", help="the question")
    p.add_argument("--budget", "-b", type=_budget, default=3.0, help="time budget in seconds, end to end (default 3)")
    p.add_argument("--policy", type=_policy, default="default", help="overrun policy: kill | skip_next | default (the node's)")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=0, help="0 = the node's default")
    p.add_argument("--max-eviction-ratio", type=float, default=-1.0, help="negative = the node's default")
    add_answer_args(p)


def _add_ns(p):
    p.add_argument("--namespace", "-n", default="timebill", help="the nodes' namespace (default timebill)")
    p.add_argument("--config", default=None,
                   help="parameter file the nodes run with, for the action, service and topic names "
                        "(default: the package's config/timebill.yaml)")


def _bringup_or_demo(args) -> int:
    return run_demo(args, args.demo) if args.demo is not None else cmd_bringup(args)


def _add_bringup_args(p):
    p.add_argument("--model", default=None, help="model parameter: embedded, an HF folder or a .gguf file")
    _add_ns(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("--param", "-p", action="append", metavar="NAME:=VALUE", help="a node parameter (repeatable)")
    p.add_argument("--no-predictor", action="store_true", help="start only the generation node")
    p.add_argument("--startup-timeout", type=float, default=900.0, help="seconds to wait for the nodes (demo)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="timebill_ros", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("query", help="send a budgeted query, stream tokens, print the result")
    _add_goal_args(p)
    _add_ns(p)
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the action server")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("estimate", help="ask the predictor how long a query would take (nothing is generated)")
    _add_goal_args(p)
    _add_ns(p)
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the service")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("monitor", help="live terminal view of jobs")
    _add_ns(p)
    p.add_argument("--plain", action="store_true", help="one line per event instead of a redrawn table")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("bringup", help="start both nodes from the YAML (like the launch file)")
    _add_bringup_args(p)
    p.add_argument("--demo", metavar="PROMPT", default=None,
                   help="bring up, ask PROMPT once (see --budget/--policy), stream the answer, shut down")
    _add_goal_args(p, prompt_required=False)
    p.set_defaults(func=_bringup_or_demo)

    p = sub.add_parser("demo", help="bring up on the embedded model, ask one budgeted question, shut down")
    p.add_argument("prompt", nargs="?", default=None, help=f"the question (default: {DEFAULT_PROMPT!r})")
    _add_goal_args(p, prompt_required=False)
    _add_bringup_args(p)
    # Budget: long enough for a complete short answer from the embedded model on a small CPU.
    # Tokens: a two-sentence answer fits in 64 tokens; with the node default (256) and no trained length
    # predictor the worst case cannot fit 8 s on 2 CPU cores and the planner evicts 95 % of the prompt.
    p.set_defaults(func=cmd_demo, budget=8.0, max_new_tokens=64)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except FileNotFoundError as exc:
        print(f"timebill_ros: {exc}", file=sys.stderr)
        return EXIT_NO_SYSTEM
    except InvalidRequest as exc:  # e.g. a --json-schema file that cannot be read
        print(f"timebill_ros: invalid request: {exc}", file=sys.stderr)
        return EXIT_GOAL_FAILED


if __name__ == "__main__":
    sys.exit(main())
