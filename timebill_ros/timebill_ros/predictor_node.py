"""The predictor node: completion estimates (length prediction + timing model + eviction plan).

Its own node so that it can run beside the model or on another machine, as TimeBill's response
length predictor does. It answers ``EstimateCompletion`` (planners' what-if questions, and the
generation node for every accepted goal), publishes a ``CompletionEstimate`` for every accepted
goal on ``estimates`` (at acceptance, then while it runs, from the action's feedback), and refits
its timing model online from the ``JobReport``s.

Run: ``predictor_node --ros-args -r __ns:=/timebill --params-file config/timebill.yaml``
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from timebill_msgs.action import BudgetedQuery
from timebill_msgs.msg import CompletionEstimate, JobReport
from timebill_msgs.srv import EstimateCompletion

from timebill.request import InvalidRequest, Request
from timebill.time_model import kept_positions

from .common import (declare_config, diagnostic_status, duration, goal_key, is_zero_uuid, seconds, short_id,
                     load_while_reporting, run_node, time_after)

EVENT_QOS = QoSProfile(depth=100)


@dataclass
class Tracked:
    """What the predictor said about an accepted goal, to update it while the goal runs."""

    goal_id: object
    prompt_tokens: int
    expected: int
    bound: int
    alpha: float
    budget: float
    accepted_ns: int
    predicted_prefill: float
    latency: float
    tokens_that_fit: int = 0
    last_update: float = 0.0


class PredictorNode(Node):
    def __init__(self, **kwargs):
        super().__init__("predictor_node", **kwargs)
        self.cfg = declare_config(self)
        c = self.cfg
        self.estimate_pub = self.create_publisher(CompletionEstimate, c["estimates_topic"], EVENT_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.estimator = None
        self.load_state, self.load_error = "loading", ""
        self.tracked: dict[bytes, Tracked] = {}
        self.served = 0
        self.invalid = 0
        self.reports = 0
        self.updates = 0

    def load(self):
        from timebill.runtime import build_estimator

        log = self.get_logger()
        t0 = time.monotonic()
        self.estimator = load_while_reporting(
            self, lambda: build_estimator(self.cfg, progress=sys.stderr.isatty(), say=log.info))
        log.info(f"estimator for {self.estimator.loaded.name} ready in {time.monotonic() - t0:.1f} s "
                 f"(length predictor: {getattr(self.estimator.length_predictor, 'name', '?')})")
        c = self.cfg
        self.service = self.create_service(EstimateCompletion, c["estimate_service"], self._on_request)
        self.create_subscription(JobReport, c["reports_topic"], self._on_report, EVENT_QOS)
        # Progress of running goals comes from the action's own feedback topic (what
        # `ros2 action send_goal --feedback` shows), so the generation node publishes nothing extra.
        self.create_subscription(BudgetedQuery.Impl.FeedbackMessage, f"{c['action_name']}/_action/feedback",
                                 self._on_feedback, QoSProfile(depth=100))
        self.create_timer(float(c["diagnostics_period"]), self._publish_diagnostics)
        self.load_state = "ready"
        self._publish_diagnostics()
        log.info(f"serving '{self.service.srv_name}', publishing estimates on '{c['estimates_topic']}'")

    def shutdown(self):
        pass

    # --- the service ------------------------------------------------------------------------------
    def _on_request(self, req, res):
        now = self.get_clock().now().nanoseconds
        already = seconds(req.already_elapsed)
        ratio = float(req.max_eviction_ratio)
        r = Request(prompt=req.prompt, budget=seconds(req.time_budget), system_prompt=req.system_prompt,
                    max_new_tokens=int(req.max_new_tokens),
                    max_eviction_ratio=ratio if (ratio != ratio or ratio >= 0) else None)
        res.header.stamp = time_after(now, 0.0)
        res.time_budget = req.time_budget
        try:
            est = self.estimator.estimate(r, already_elapsed=already)
        except InvalidRequest as exc:
            self.invalid += 1
            res.valid, res.message = False, f"invalid request: {exc}"
            return res
        except Exception as exc:  # one bad request must not take the service down
            self.get_logger().error(f"estimate failed: {type(exc).__name__}: {exc}")
            res.valid, res.message = False, f"internal error: {type(exc).__name__}: {exc}"
            return res
        self.served += 1
        plan = est.plan
        accepted = now - int(already * 1e9)
        res.valid = True
        res.prompt_tokens = plan.prompt_tokens
        res.predicted_tokens = est.length.expected
        res.predicted_tokens_bound = est.length.bound
        res.eviction_ratio = plan.alpha
        res.feasible = plan.feasible
        res.reason = plan.reason
        res.predicted_prefill = duration(plan.predicted_prefill)
        res.predicted_total = duration(plan.predicted_total)
        res.predicted_worst_case = duration(plan.predicted_worst_case)
        res.predicted_completion = time_after(now, plan.predicted_total)
        res.deadline = time_after(accepted, r.budget)
        res.predictor_latency = duration(est.predictor_latency)
        res.tokens_that_fit = plan.tokens_that_fit
        if not is_zero_uuid(req.goal_id):
            t = Tracked(goal_id=req.goal_id, prompt_tokens=plan.prompt_tokens, expected=est.length.expected,
                        bound=est.length.bound, alpha=plan.alpha, budget=r.budget, accepted_ns=accepted,
                        predicted_prefill=plan.predicted_prefill, latency=est.predictor_latency,
                        tokens_that_fit=plan.tokens_that_fit)
            self.tracked[goal_key(req.goal_id)] = t
            self.estimate_pub.publish(self._estimate_msg(
                t, now, tokens=0, total=already + plan.predicted_total, worst=already + plan.predicted_worst_case,
                feasible=plan.feasible, reason=plan.reason))
        return res

    def _estimate_msg(self, t: Tracked, now_ns: int, tokens: int, total: float, worst: float, feasible: bool,
                      reason: str) -> CompletionEstimate:
        """``total`` and ``worst`` count from the goal's acceptance."""
        m = CompletionEstimate(
            goal_id=t.goal_id, prompt_tokens=t.prompt_tokens, predicted_tokens=t.expected,
            predicted_tokens_bound=t.bound, eviction_ratio=t.alpha, feasible=feasible, reason=reason,
            tokens_generated=tokens, time_budget=duration(t.budget), predicted_prefill=duration(t.predicted_prefill),
            predicted_total=duration(total), predicted_worst_case=duration(worst),
            predicted_completion=time_after(t.accepted_ns, total),
            deadline=time_after(t.accepted_ns, t.budget), predictor_latency=duration(t.latency), source="predictor",
            tokens_that_fit=t.tokens_that_fit,
        )
        m.header.stamp = time_after(now_ns, 0.0)
        return m

    # --- updates while a goal runs ------------------------------------------------------------------
    def _on_feedback(self, msg):
        t = self.tracked.get(goal_key(msg.goal_id))
        if t is None:
            return
        mono = time.monotonic()
        first = t.last_update == 0.0
        if not first and mono - t.last_update < float(self.cfg["estimate_update_period"]):
            return
        t.last_update = mono
        fb = msg.feedback
        k = int(fb.tokens_generated)
        elapsed = seconds(fb.elapsed)
        t.alpha = float(fb.eviction_ratio)  # the ratio the engine actually used (replanned after queueing)
        t.tokens_that_fit = int(fb.tokens_that_fit)
        tm = self.estimator.time_model
        first_step_kv = kept_positions(t.prompt_tokens, t.alpha) + max(k - 1, 0)
        # Past the expected length, the bound is all that is left to predict with.
        left = t.expected - k if k < t.expected else t.bound - k
        total = elapsed + tm.decode(first_step_kv, max(left, 0) + 1)
        worst = elapsed + tm.decode(first_step_kv, max(t.bound - k, 0) + 1)
        feasible = worst <= t.budget
        reason = "" if feasible else (f"{t.bound - k} more tokens in the worst case need "
                                      f"{worst - elapsed:.3f} s; {max(t.budget - elapsed, 0):.3f} s left")
        self.updates += 1
        self.estimate_pub.publish(self._estimate_msg(t, self.get_clock().now().nanoseconds, k, total, worst,
                                                     feasible, reason))

    def _on_report(self, rep):
        self.tracked.pop(goal_key(rep.goal_id), None)
        steps = [float(x) for x in rep.decode_step_times]
        prefill = seconds(rep.measured_prefill)
        if rep.generated_tokens and prefill > 0:
            self.estimator.calibration.observe(int(rep.prompt_tokens), prefill, int(rep.cached_tokens), steps)
            self.reports += 1
            self.get_logger().debug(f"refitted from goal {short_id(rep.goal_id)}: {self.estimator.calibration.errors()}")

    # --- diagnostics --------------------------------------------------------------------------------
    def _publish_diagnostics(self):
        # Forget goals whose report never came (generation node restarted): a budget plus a minute.
        now = self.get_clock().now().nanoseconds
        for k, t in list(self.tracked.items()):
            if now > t.accepted_ns + int((t.budget + 60.0) * 1e9):
                self.tracked.pop(k, None)
        values = {
            "model": self.estimator.loaded.name if self.estimator else self.cfg["model"],
            "model_loaded": self.load_state == "ready",
            "estimates_served": self.served, "invalid_requests": self.invalid,
            "goals_tracked": len(self.tracked), "estimate_updates": self.updates,
            "reports_observed": self.reports,
        }
        if self.estimator is not None:
            errs = self.estimator.calibration.errors()
            values.update({
                "length_predictor": getattr(self.estimator.length_predictor, "name", "?"),
                "time_model_prefill_mape_pct": errs["prefill_mape_pct"],
                "time_model_decode_step_mape_pct": errs["decode_step_mape_pct"],
                "time_model_jobs": errs["jobs"], "prefill_scale": errs["prefill_scale"],
                "decode_scale": errs["decode_scale"],
            })
        if self.load_state == "failed":
            level, msg = DiagnosticStatus.ERROR[0], f"failed to load: {self.load_error}"
        elif self.load_state == "loading":
            level, msg = DiagnosticStatus.WARN[0], "loading the model and timing model"
        else:
            level, msg = DiagnosticStatus.OK[0], f"serving; {self.served} estimates, refitted from {self.reports} reports"
        arr = DiagnosticArray(status=[diagnostic_status(
            f"{self.get_fully_qualified_name()}: completion estimates", str(values["model"]), level, msg, values)])
        arr.header.stamp = time_after(now, 0.0)
        self.diag_pub.publish(arr)


def main(args=None) -> int:
    return run_node(PredictorNode, lambda n: SingleThreadedExecutor(), args)


if __name__ == "__main__":
    sys.exit(main())
