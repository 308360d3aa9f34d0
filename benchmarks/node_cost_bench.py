"""Where a served goal's time goes inside the generation node, part by part.

served_vs_bare_bench.py says how much the nodes add to a goal; this says where. It starts the
generation node (the default configuration, no predictor node: the default plans in the prefill)
in a child process with timers around its parts, sends the same two goals as served_vs_bare
(a short question and a ~1,000-token text, up to 128 new tokens, no eviction, length control off)
--repeats times each from a `TimeBillClient`, and prints per goal, as medians over the repeats:

- in the decoding loop, between the model's steps (wall ms per goal, CPU ms of the compute thread
  in brackets where they differ): sampling, the loop guard, detokenizing the streamed text,
  feedback messages, status updates (re-estimate, CompletionEstimate, marker), and the whole
  per-token path (`TokenStream.take`);
- around the goal (ms from the node taking the goal request): acceptance, the executor starting
  the goal, tokenizing, the job starting, the answer made (`GoalState.answer`), its terminal status
  set, the result handed to rclpy; and on the client, send -> goal request taken and result made
  -> result received.

    source scripts/env.sh
    python benchmarks/node_cost_bench.py --repeats 5     # ~2 minutes; run alone on the machine
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
CONFIG = HERE.parent / "timebill_ros" / "config" / "timebill.yaml"
MARK = "NODE-COST "
PARTS = [("sample", "sampling"), ("loop", "loop guard"), ("delta", "detokenizing"), ("feedback", "feedback messages"),
         ("status", "status updates"), ("take", "whole per-token path")]
PHASES = ["accepted", "executing", "tokenized", "job started", "job ended", "generated", "answered", "status set",
          "returned"]


def serve(node_args: list[str]) -> int:
    """The generation node with timers around its parts; one JSON line per goal on stdout."""
    import threading

    from timebill import engine, token_stream
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator
    from timebill_ros import goal_stream
    from timebill_ros.generation_node import GenerationNode, main

    spent: dict[str, float] = {}
    marks: list[tuple[str, float]] = []

    def timed(cls, name, key):
        inner = getattr(cls, name, None)
        if inner is None:  # an older version of the node, without that part
            return

        def wrapper(*a, **k):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return inner(*a, **k)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
                spent[key + "_cpu"] = spent.get(key + "_cpu", 0.0) + time.thread_time() - c0

        setattr(cls, name, wrapper)

    def marked(cls, name, label, after=False):
        inner = getattr(cls, name)

        def wrapper(*a, **k):
            if not after:
                marks.append((label, time.monotonic()))
            out = inner(*a, **k)
            if after:
                marks.append((label, time.monotonic()))
            return out

        setattr(cls, name, wrapper)

    for cls, name, key in ((token_stream.Sampler, "__call__", "sample"), (token_stream.LoopGuard, "push", "loop"),
                           (token_stream.TokenStream, "_delta", "delta"), (token_stream.TokenStream, "take", "take"),
                           (goal_stream.GoalState, "send_feedback", "feedback"),
                           (goal_stream.GoalState, "update_status", "status")):
        timed(cls, name, key)
    marked(GenerationNode, "_on_goal", "goal taken")
    marked(GenerationNode, "_on_accepted", "accepted")
    marked(GenerationNode, "_execute", "executing")
    marked(Estimator, "encode", "tokenized", after=True)
    marked(BudgetedEngine, "generate", "job started")
    marked(engine._Job, "finish", "job ended", after=True)   # where the job report's measured_total ends
    marked(BudgetedEngine, "generate", "generated", after=True)
    marked(goal_stream.GoalState, "answer", "answered", after=True)
    marked(goal_stream.GoalState, "set_status", "status set", after=True)  # the goal's terminal state, before its report
    lock = threading.Lock()
    execute = GenerationNode._execute

    def execute_and_tell(self, handle):
        res = execute(self, handle)
        with lock:
            marks.append(("returned", time.monotonic()))
            t0 = marks[0][1]
            line = {"taken_at": t0, "phases": {label: 1e3 * (t - t0) for label, t in marks[1:]},
                    "parts": {k: 1e3 * v for k, v in spent.items()}, "tokens": res.generated_tokens}
            print(MARK + json.dumps(line), flush=True)
            marks.clear()
            spent.clear()
        return res

    GenerationNode._execute = execute_and_tell
    sys.argv = [sys.argv[0], *node_args]
    return main()


def drive(repeats: int, domain: int) -> list[dict]:
    """Start the instrumented node, send the goals, return one record per measured goal."""
    import rclpy

    sys.path.insert(0, str(HERE))
    from served_vs_bare_bench import LONG, SHORT, send
    from timebill_ros.client import TimeBillClient

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    log = pathlib.Path(f"/tmp/node_cost_bench-{os.getpid()}.log")
    with open(log, "w") as out:
        node = subprocess.Popen([sys.executable, __file__, "--serve", "--ros-args", "-r", "__ns:=/timebill",
                                 "--params-file", str(CONFIG)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    sent = []
    rclpy.init(domain_id=domain)
    try:
        with TimeBillClient() as client:
            if not client.wait_until_ready(timeout=600, estimator=False):
                raise SystemExit(f"the generation node did not come up; log: {log}")
            client.ask("Hello!", 10.0, policy="kill", timeout=60)  # warm: the first goal of a start is not typical
            for i in range(repeats):
                for name, prompt in (("short", SHORT), ("long", LONG)):
                    t0 = time.monotonic()
                    send(client, prompt).result(timeout=120)
                    sent.append((name, t0, time.monotonic()))
                    print(f"goal {len(sent)}/{2 * repeats} ({name}) answered", flush=True)
    finally:
        rclpy.try_shutdown()
        os.killpg(node.pid, signal.SIGINT)
        node.wait(timeout=30)
    lines = [json.loads(x[len(MARK):]) for x in log.read_text().splitlines() if x.startswith(MARK)][1:]  # not the warm-up
    if len(lines) != len(sent):
        raise SystemExit(f"{len(lines)} goal records for {len(sent)} goals; log: {log}")
    for rec, (name, t0, t1) in zip(lines, sent):
        rec["prompt"] = name
        rec["send_to_taken"] = 1e3 * (rec["taken_at"] - t0)
        rec["returned_to_received"] = 1e3 * (t1 - rec["taken_at"]) - rec["phases"]["returned"]
    return lines


def main() -> int:
    if "--serve" in sys.argv:
        return serve(sys.argv[sys.argv.index("--serve") + 1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--domain", type=int, default=79)
    ap.add_argument("--out", default=None, help="write the records as JSON here")
    args = ap.parse_args()
    records = drive(args.repeats, args.domain)

    def med(name, get):
        return statistics.median(get(r) for r in records if r["prompt"] == name)

    print("\nIn the decoding loop, ms per goal (medians; CPU of the compute thread in brackets):")
    print("| part | short | long |\n|---|---|---|")
    for key, label in PARTS:
        cells = []
        for name in ("short", "long"):
            wall, cpu = med(name, lambda r: r["parts"].get(key, 0.0)), med(name, lambda r: r["parts"].get(key + "_cpu", 0.0))
            cells.append(f"{wall:.1f}" + (f" ({cpu:.1f})" if abs(wall - cpu) >= 0.5 else ""))
        print(f"| {label} | {' | '.join(cells)} |")
    print(f"| tokens | {med('short', lambda r: r['tokens']):.0f} | {med('long', lambda r: r['tokens']):.0f} |")
    print("\nAround the goal, ms (medians):")
    print("| step | short | long |\n|---|---|---|")
    print(f"| client send -> goal request taken | {med('short', lambda r: r['send_to_taken']):.1f} | "
          f"{med('long', lambda r: r['send_to_taken']):.1f} |")
    for a, b in zip(["goal taken", *PHASES[:-1]], PHASES):
        def gap(r, a=a, b=b):
            p = r["phases"]
            return p[b] - (p[a] if a != "goal taken" else 0.0)
        if b == "job ended":
            print(f"| (the job: prefill, decoding) | {med('short', gap):.0f} | {med('long', gap):.0f} |")
            continue
        print(f"| {a} -> {b} | {med('short', gap):.1f} | {med('long', gap):.1f} |")
    print(f"| result returned -> received by the client | {med('short', lambda r: r['returned_to_received']):.1f} | "
          f"{med('long', lambda r: r['returned_to_received']):.1f} |")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"repeats": args.repeats, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
