"""Tokens through the nodes against the bare engine, same prompts, one run.

1. The bare engine in this process (`build_engine`, the default configuration): each prompt
   --repeats times, up to 128 new tokens, no eviction, length control off; the median decoding step
   (`Result.step_times`), the engine's own total (prefill + decoding), and its own work around
   them (`generate()`'s wall time minus that total: planning, sampling, detokenising, loop
   checks), which a served goal does too.
2. The same goals through `timebill_ros bringup` (both nodes) from a `TimeBillClient`: the median
   decoding step the generation node reports (`JobReport.decode_step_times`), and the goal's
   overhead: client send -> result received, minus the engine's own prefill + decoding
   (`JobReport.measured_prefill + measured_decode`): acceptance, the predictor's estimate,
   queueing, feedback and the result's way back. What the nodes add is that overhead minus the
   bare engine's own work around the steps (`node_overhead_ms`), the figure issue 18 bounds.

The two sides run interleaved, goal by goal (bare, then served, for each prompt and repeat), so
the machine's drifts in speed hit both alike. Prompts: a short question and a ~1,000-token text.
Run on a quiet machine; ratios are what to read.

    source scripts/env.sh
    python benchmarks/served_vs_bare_bench.py --repeats 5      # ~3 minutes
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import threading
import time

SHORT = "Write a long story about a robot that cleans a warehouse at night."
LONG = " ".join(["The robot moved from the kitchen to the hallway and checked the red cup on the table."] * 55
                ) + " Write a long story about what the robot did next."
NEW_TOKENS = 128


def bare_engine():
    from timebill.config import load_config
    from timebill.runtime import build_engine

    return build_engine(load_config(), progress=False)


def bare_once(engine, prompt: str) -> dict:
    """One goal on the bare engine: its median step, its own total and its work around the steps."""
    from timebill.request import Request

    t0 = time.monotonic()
    r = engine.generate(Request(prompt=prompt, budget=60.0, max_new_tokens=NEW_TOKENS, policy="kill",
                                length_control=False, max_eviction_ratio=0.0))
    wall = time.monotonic() - t0
    total = r.prefill_time + r.decode_time
    return {"prompt_tokens": r.prompt_tokens, "step": statistics.median(r.step_times), "around": wall - total}


def send(client, prompt: str):
    """The benchmarks' served goal (what `bare_once` runs on the bare engine): a 60 s Kill budget,
    up to NEW_TOKENS new tokens, no eviction, length control off. Its QueryHandle."""
    return client.query(prompt, 60.0, policy="kill", max_new_tokens=NEW_TOKENS, length_control=False,
                        max_eviction_ratio=0.0)


def served_once(client, reports, arrived, prompt: str) -> dict:
    """One goal through the nodes: its median step (JobReport), its overhead (client send to result
    received, minus the engine's own prefill + decoding) and where that goes."""
    from timebill_ros.convert import goal_key, seconds

    t0 = time.monotonic()
    h = send(client, prompt)
    r = h.result(timeout=120)
    took = time.monotonic() - t0
    key = goal_key(h.goal_id)
    with arrived:
        arrived.wait_for(lambda: key in reports, timeout=10)
    rep = reports[key]
    engine = seconds(rep.measured_prefill) + seconds(rep.measured_decode)
    total, wait = seconds(rep.measured_total), seconds(rep.queue_wait)
    # where it goes: the goal's and result's way (client <-> node), acceptance to the job's start
    # (the estimate, tokenizing), and the node's work around the model's steps
    return {"prompt_tokens": r.prompt_tokens, "step": statistics.median(rep.decode_step_times),
            "overhead": took - engine, "transport": took - total, "estimate_wait": wait,
            "around": total - wait - engine}


def run(repeats: int, domain: int, params: list[str], extra: list[str] = ()) -> tuple[dict, dict]:
    """Both, interleaved goal by goal (bare, then served, per prompt and repeat): the machine's speed
    drifts by tens of percent for minutes here, and interleaving puts both sides in the same drift."""
    from rclpy.qos import QoSProfile
    from timebill_msgs.msg import JobReport

    from bringup_session import bringup_session
    from timebill_ros.convert import goal_key

    engine = bare_engine()
    reports: dict[bytes, object] = {}
    arrived = threading.Condition()

    def on_report(m):
        with arrived:
            reports[goal_key(m.goal_id)] = m
            arrived.notify_all()

    runs = {(side, name): [] for side in ("bare", "served") for name in ("short", "long")}
    with bringup_session(domain, [*extra, *[a for p in params for a in ("--param", p)]]) as (client, log):
        client.node.create_subscription(JobReport, "/timebill/job_reports", on_report, QoSProfile(depth=100))
        if not client.wait_until_ready(timeout=600, estimator="--no-predictor" not in extra):
            raise SystemExit(f"the nodes did not come up; log: {log}")
        # warm: the first goal of a start is not typical
        client.ask("Hello!", 10.0, policy="kill", timeout=60)
        bare_once(engine, "Hello!")
        for i in range(repeats):
            for name, prompt in (("short", SHORT), ("long", LONG)):
                runs["bare", name].append(bare_once(engine, prompt))
                runs["served", name].append(served_once(client, reports, arrived, prompt))
                b, s = runs["bare", name][-1], runs["served", name][-1]
                print(f"run {i + 1}/{repeats} {name:5s}: step bare {1e3 * b['step']:.2f} ms, served "
                      f"{1e3 * s['step']:.2f} ms; goal overhead {1e3 * s['overhead']:.1f} ms (transport "
                      f"{1e3 * s['transport']:.1f}, waiting for the estimate {1e3 * s['estimate_wait']:.1f}, around "
                      f"the model's steps {1e3 * s['around']:.1f}); the bare engine's own work around its steps "
                      f"{1e3 * b['around']:.1f} ms", flush=True)

    def med(side, name, key):
        return 1e3 * statistics.median(r[key] for r in runs[side, name])

    b, s = {}, {}
    for name in ("short", "long"):
        b[name] = {"prompt_tokens": runs["bare", name][0]["prompt_tokens"], "step_ms": med("bare", name, "step"),
                   "around_steps_ms": med("bare", name, "around")}
        s[name] = {"prompt_tokens": runs["served", name][0]["prompt_tokens"], "step_ms": med("served", name, "step"),
                   "overhead_ms": med("served", name, "overhead"), "transport_ms": med("served", name, "transport"),
                   "estimate_wait_ms": med("served", name, "estimate_wait"),
                   "around_steps_ms": med("served", name, "around"),
                   # per run, so the ratio's spread shows too
                   "step_ratios": [sv["step"] / bv["step"] for sv, bv in zip(runs["served", name], runs["bare", name])]}
    return b, s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--domain", type=int, default=76)
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="a node parameter")
    ap.add_argument("--no-predictor", action="store_true", help="bringup without the predictor node")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    b, s = run(args.repeats, args.domain, args.param, ["--no-predictor"] if args.no_predictor else [])
    for name in ("short", "long"):
        s[name]["node_overhead_ms"] = s[name]["overhead_ms"] - b[name]["around_steps_ms"]
    print(f"\n| prompt | prompt tokens | bare step (ms) | served step (ms) | served / bare | goal overhead (ms) | "
          f"engine's own, bare (ms) | added by the nodes (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("short", "long"):
        print(f"| {name} | {b[name]['prompt_tokens']} | {b[name]['step_ms']:.2f} | {s[name]['step_ms']:.2f} | "
              f"{s[name]['step_ms'] / b[name]['step_ms']:.2f}x | {s[name]['overhead_ms']:.1f} | "
              f"{b[name]['around_steps_ms']:.1f} | {s[name]['node_overhead_ms']:.1f} |")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"bare": b, "served": s, "repeats": args.repeats,
                                                      "new_tokens": NEW_TOKENS}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
