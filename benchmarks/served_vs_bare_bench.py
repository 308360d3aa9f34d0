"""Tokens through the nodes against the bare engine, same prompts, one run.

1. The bare engine in this process (`build_engine`, the default configuration): each prompt
   --repeats times, 128 new tokens, no eviction, length control off; the median decoding step
   (`Result.step_times`), the engine's own total (prefill + decoding), and its own work around
   them (`generate()`'s wall time minus that total: planning, sampling, detokenising, loop
   checks), which a served goal does too.
2. The same goals through `timebill_ros bringup` (both nodes) from a `TimeBillClient`: the median
   decoding step the generation node reports (`JobReport.decode_step_times`), and the goal's
   overhead: client send -> result received, minus the engine's own prefill + decoding
   (`JobReport.measured_prefill + measured_decode`): acceptance, the predictor's estimate,
   queueing, feedback and the result's way back. What the nodes add is that overhead minus the
   bare engine's own work around the steps (`node_overhead_ms`), the figure issue 18 bounds.

Prompts: a short question and a ~1,000-token text. Run on a quiet machine; ratios are what to read.

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


def bare(repeats: int) -> dict:
    from timebill.config import load_config
    from timebill.request import Request
    from timebill.runtime import build_engine

    engine = build_engine(load_config(), progress=False)
    out = {}
    for name, prompt in (("short", SHORT), ("long", LONG)):
        steps, totals, arounds, prompt_tokens = [], [], [], 0
        for _ in range(repeats):
            t0 = time.monotonic()
            r = engine.generate(Request(prompt=prompt, budget=60.0, max_new_tokens=NEW_TOKENS, policy="kill",
                                        length_control=False, max_eviction_ratio=0.0))
            wall = time.monotonic() - t0
            steps.append(statistics.median(r.step_times))
            totals.append(r.prefill_time + r.decode_time)
            arounds.append(wall - totals[-1])
            prompt_tokens = r.prompt_tokens
        out[name] = {"prompt_tokens": prompt_tokens, "step_ms": 1e3 * statistics.median(steps),
                     "engine_total_s": statistics.median(totals), "around_steps_ms": 1e3 * statistics.median(arounds)}
        print(f"bare   {name:5s}: {prompt_tokens} prompt tokens, step {out[name]['step_ms']:.2f} ms "
              f"(runs: {', '.join(f'{1e3 * s:.2f}' for s in steps)}), the engine's own work around the steps "
              f"{out[name]['around_steps_ms']:.1f} ms", flush=True)
    return out


def served(repeats: int, domain: int, params: list[str], extra: list[str] = ()) -> dict:
    from rclpy.qos import QoSProfile
    from timebill_msgs.msg import JobReport

    from bringup_session import bringup_session
    from timebill_ros.convert import goal_key, seconds

    reports: dict[bytes, object] = {}
    arrived = threading.Condition()

    def on_report(m):
        with arrived:
            reports[goal_key(m.goal_id)] = m
            arrived.notify_all()

    out = {}
    with bringup_session(domain, [*extra, *[a for p in params for a in ("--param", p)]]) as (client, log):
        client.node.create_subscription(JobReport, "/timebill/job_reports", on_report, QoSProfile(depth=100))
        if not client.wait_until_ready(timeout=600, estimator="--no-predictor" not in extra):
            raise SystemExit(f"the nodes did not come up; log: {log}")
        client.ask("Hello!", 10.0, policy="kill", timeout=60)  # warm: the first goal of a start is not typical
        for name, prompt in (("short", SHORT), ("long", LONG)):
            steps, overheads, prompt_tokens, parts = [], [], 0, []
            for _ in range(repeats):
                t0 = time.monotonic()
                h = client.query(prompt, 60.0, policy="kill", max_new_tokens=NEW_TOKENS, length_control=False,
                                 max_eviction_ratio=0.0)
                r = h.result(timeout=120)
                took = time.monotonic() - t0
                key = goal_key(h.goal_id)
                with arrived:
                    arrived.wait_for(lambda: key in reports, timeout=10)
                rep = reports[key]
                steps.append(statistics.median(rep.decode_step_times))
                engine = seconds(rep.measured_prefill) + seconds(rep.measured_decode)
                overheads.append(took - engine)
                total, wait = seconds(rep.measured_total), seconds(rep.queue_wait)
                # where it goes: the goal's and result's way (client <-> node), acceptance to the
                # plan (the predictor's estimate), and the node's work around the model's steps
                parts.append((took - total, wait, total - wait - engine))
                prompt_tokens = r.prompt_tokens
            out[name] = {"prompt_tokens": prompt_tokens, "step_ms": 1e3 * statistics.median(steps),
                         "overhead_ms": 1e3 * statistics.median(overheads),
                         "transport_ms": 1e3 * statistics.median(p[0] for p in parts),
                         "estimate_wait_ms": 1e3 * statistics.median(p[1] for p in parts),
                         "around_steps_ms": 1e3 * statistics.median(p[2] for p in parts)}
            print(f"served {name:5s}: {prompt_tokens} prompt tokens, step {out[name]['step_ms']:.2f} ms "
                  f"(runs: {', '.join(f'{1e3 * s:.2f}' for s in steps)}), goal overhead "
                  f"{out[name]['overhead_ms']:.1f} ms (runs: {', '.join(f'{1e3 * s:.1f}' for s in overheads)}): "
                  f"transport {out[name]['transport_ms']:.1f}, waiting for the estimate "
                  f"{out[name]['estimate_wait_ms']:.1f}, around the model's steps {out[name]['around_steps_ms']:.1f}",
                  flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--domain", type=int, default=76)
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="a node parameter")
    ap.add_argument("--no-predictor", action="store_true", help="bringup without the predictor node")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    b = bare(args.repeats)
    s = served(args.repeats, args.domain, args.param, ["--no-predictor"] if args.no_predictor else [])
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
