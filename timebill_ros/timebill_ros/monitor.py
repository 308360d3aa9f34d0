"""`timebill_ros monitor`: a live terminal view of the jobs, from the estimates, feedback and
job_reports topics alone (it needs nothing from the nodes but what they publish)."""
from __future__ import annotations

import math
import sys
import time

from .exit_codes import EXIT_OK
from .names import configured_names


class Monitor:
    """Jobs seen on the estimates, feedback and job_reports topics."""

    COLUMNS = f"{'goal':8}  {'state':10} {'budget':>7} {'predict':>7} {'elapsed':>7} {'tokens':>6} {'tok/s':>6} {'evict':>5}  note"

    def __init__(self, node, namespace: str, plain: bool, names: dict, out=sys.stdout):
        """``names``: the configured action and topic names (relative ones resolve in ``namespace``)."""
        from rclpy.qos import QoSProfile
        from timebill_msgs.action import BudgetedQuery
        from timebill_msgs.msg import CompletionEstimate, JobReport

        from .convert import OUTCOME_NAMES, goal_key, seconds, short_id

        self._key, self._short, self._seconds, self._names = goal_key, short_id, seconds, OUTCOME_NAMES
        self.out, self.plain = out, plain
        self.jobs: dict[bytes, dict] = {}
        self.order: list[bytes] = []
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""

        def resolve(name: str) -> str:
            return name if name.startswith("/") else f"{ns}/{name}"

        qos = QoSProfile(depth=100)
        node.create_subscription(CompletionEstimate, resolve(names["estimates_topic"]), self.on_estimate, qos)
        node.create_subscription(JobReport, resolve(names["reports_topic"]), self.on_report, qos)
        node.create_subscription(BudgetedQuery.Impl.FeedbackMessage,
                                 f"{resolve(names['action_name'])}/_action/feedback", self.on_feedback,
                                 QoSProfile(depth=1000))

    def job(self, goal_id) -> dict:
        k = self._key(goal_id)
        if k not in self.jobs:
            self.jobs[k] = {"id": self._short(goal_id), "state": "accepted", "budget": float("nan"),
                            "predicted": float("nan"), "elapsed": 0.0, "tokens": 0, "eviction_ratio": float("nan"), "note": ""}
            self.order.append(k)
            self.order[:] = self.order[-20:]
        return self.jobs[k]

    def on_estimate(self, m):
        seconds = self._seconds
        j = self.job(m.goal_id)
        j["budget"], j["predicted"], j["eviction_ratio"] = seconds(m.time_budget), seconds(m.predicted_total), m.eviction_ratio
        if m.tokens_generated == 0:
            j["note"] = f"estimate ({m.source})" + ("" if m.feasible else ": worst case over budget")
            self.line(j)

    def on_feedback(self, m):
        j = self.job(m.goal_id)
        fb = m.feedback
        if j["state"] in ("accepted", "queued"):
            j["state"] = "running"
        j["elapsed"], j["tokens"], j["eviction_ratio"] = self._seconds(fb.elapsed), fb.tokens_generated, fb.eviction_ratio

    def on_report(self, m):
        seconds = self._seconds
        j = self.job(m.goal_id)
        j["state"] = self._names.get(m.outcome, "?").lower()
        j["budget"], j["elapsed"], j["tokens"] = seconds(m.time_budget), seconds(m.measured_total), m.generated_tokens
        j["predicted"], j["eviction_ratio"] = seconds(m.predicted_total), m.eviction_ratio
        j["note"] = ("deadline met" if m.deadline_met else "deadline MISSED") + (f"; {m.message}" if m.message else "")
        self.line(j)

    @staticmethod
    def fmt(j) -> str:
        decode = max(j["elapsed"], 1e-9)
        rate = j["tokens"] / decode if j["tokens"] else 0.0
        return (f"{j['id']:8}  {j['state'][:10]:10} {j['budget']:7.3f} {j['predicted']:7.3f} {j['elapsed']:7.3f} "
                f"{j['tokens']:6d} {rate:6.1f} {j['eviction_ratio']:5.2f}  {j['note'][:70]}")

    def line(self, j):
        if self.plain:
            print(self.fmt(j), file=self.out, flush=True)

    def render(self):
        if self.plain:
            return
        lines = ["timebill_ros monitor (Ctrl-C to quit)   budget/predict/elapsed in seconds", self.COLUMNS]
        lines += [self.fmt(self.jobs[k]) for k in self.order]
        self.out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        self.out.flush()


def cmd_monitor(args) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=[])
    node = rclpy.create_node("timebill_monitor")
    plain = args.plain or not sys.stdout.isatty()
    mon = Monitor(node, args.namespace, plain, configured_names(args.config))
    if plain:
        print(Monitor.COLUMNS, flush=True)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    end = time.monotonic() + args.duration if args.duration else math.inf
    last = 0.0
    try:
        while time.monotonic() < end and rclpy.ok():
            ex.spin_once(timeout_sec=0.1)
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                mon.render()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return EXIT_OK
