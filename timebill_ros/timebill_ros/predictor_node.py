"""The predictor node: completion estimates (length prediction + timing model + eviction plan).

Its own node so that it can run beside the model or on another machine, as TimeBill's response
length predictor does. It answers ``EstimateCompletion`` (planners' what-if questions, and the
generation node for every accepted goal), publishes a ``CompletionEstimate`` for every accepted
goal on ``estimates`` at acceptance (the generation node publishes its updates while it runs),
and refits its timing model online from the ``JobReport``s.

Run: ``predictor_node --ros-args -r __ns:=/timebill --params-file config/timebill.yaml``
"""
from __future__ import annotations

from . import quiet  # noqa: F401  (first: before anything imports tqdm)
import sys
import time

from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import QoSProfile

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from timebill_msgs.msg import CompletionEstimate, JobReport
from timebill_msgs.srv import EstimateCompletion

from timebill.goal_estimate import GoalEstimate
from timebill.request import InvalidRequest

from .common import calibration_values, declare_config, diagnostic_status, load_while_reporting, run_node
from .convert import estimate_msg, fill_response, is_zero_uuid, seconds, short_id, time_from_ns, to_request
from .managed import ManagedNode

EVENT_QOS = QoSProfile(depth=100)


class PredictorNode(ManagedNode):
    """A managed node: configure loads the estimator, activate serves the service and follows the
    goals, deactivate withdraws them, cleanup drops the estimator. With ``autostart`` (the
    default) it takes itself to active at start-up; otherwise a lifecycle manager drives it."""

    def __init__(self, **kwargs):
        super().__init__("predictor_node", **kwargs)
        self.cfg = declare_config(self)
        c = self.cfg
        self.estimate_pub = self.create_publisher(CompletionEstimate, c["estimates_topic"], EVENT_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.estimator = None
        self.service = None
        self.load_state, self.load_error = "unconfigured", ""  # unconfigured | loading | ready | failed
        self.subscriptions_ = []
        # From construction, so /diagnostics also says "loading", "failed" or "inactive".
        self.create_timer(float(c["diagnostics_period"]), self._publish_diagnostics)
        self.served = 0
        self.invalid = 0
        self.reports = 0

    def on_configure(self, state):
        from timebill.runtime import build_estimator

        log = self.get_logger()
        self.load_state = "loading"
        t0 = time.monotonic()
        try:
            self.estimator = load_while_reporting(
                self, lambda: build_estimator(self.cfg, progress=False, say=log.info, served=True))
        except Exception:  # load_while_reporting recorded and published it; run_node reports it
            return TransitionCallbackReturn.FAILURE
        log.info(f"estimator for {self.estimator.loaded.name} ready in {time.monotonic() - t0:.1f} s "
                 f"(length predictor: {getattr(self.estimator.length_predictor, 'name', '?')})")
        self.load_state = "ready"
        self._publish_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        c = self.cfg
        self.service = self.create_service(EstimateCompletion, c["estimate_service"], self._on_request)
        self.subscriptions_ = [
            self.create_subscription(JobReport, c["reports_topic"], self._on_report, EVENT_QOS),
        ]
        # Running goals' estimates come from the generation node, which has their plan and tokens:
        # a subscriber to every feedback message here doubled what each message cost the decoding
        # loop (docs/BENCHMARKS.md).
        self._publish_diagnostics()
        self.get_logger().info(f"serving '{self.service.srv_name}', publishing estimates on '{c['estimates_topic']}'")
        return super().on_activate(state)

    def drop_model(self):
        self.estimator = None

    def shutdown(self, timeout: float = 0.0):
        """Withdraw the service first: a generation node then sees it gone at once and estimates
        locally, instead of waiting out its predictor_timeout on a request nobody will answer."""
        if self.service is not None:
            self.destroy_service(self.service)
            self.service = None
        for sub in self.subscriptions_:
            self.destroy_subscription(sub)
        self.subscriptions_ = []

    # --- the service ------------------------------------------------------------------------------
    def _on_request(self, req, res):
        now = self.get_clock().now().nanoseconds
        already = seconds(req.already_elapsed)
        accepted = now - int(already * 1e9)
        res.header.stamp = time_from_ns(now)
        res.time_budget = req.time_budget
        try:
            r = to_request(req)
            # The sender's ids when it sent them (a goal is tokenized once, by the generation node).
            ids = self.estimator.tokenized(r, req.prompt_ids) if len(req.prompt_ids) else self.estimator.encode(r)
            est = self.estimator.estimate(r, already_elapsed=already, prompt_ids=ids)
        except InvalidRequest as exc:
            self.invalid += 1
            res.valid, res.message = False, f"invalid request: {exc}"
            return res
        except Exception as exc:  # one bad request must not take the service down
            self.get_logger().error(f"estimate failed: {type(exc).__name__}: {exc}")
            res.valid, res.message = False, f"internal error: {type(exc).__name__}: {exc}"
            return res
        self.served += 1
        view = GoalEstimate.of_estimate(est, "predictor")
        res.valid = True
        fill_response(res, view, now, accepted, r.budget, self.estimator.max_new_tokens(r))
        if not is_zero_uuid(req.goal_id):  # an accepted goal: its estimate at acceptance, for everyone
            self.estimate_pub.publish(estimate_msg(req.goal_id, view, now, accepted, r.budget))
        return res

    def _on_report(self, rep):
        steps = [float(x) for x in rep.token_intervals]  # the speed served, as the engine refits from
        prefill = seconds(rep.measured_prefill)
        if rep.generated_tokens and prefill > 0:
            self.estimator.calibration.observe(int(rep.prompt_tokens), prefill, int(rep.cached_tokens), steps)
            self.reports += 1
            self.get_logger().debug(f"refitted from goal {short_id(rep.goal_id)}: {self.estimator.calibration.errors()}")

    # --- diagnostics --------------------------------------------------------------------------------
    def _publish_diagnostics(self):
        now = self.get_clock().now().nanoseconds
        values = {
            "model": self.estimator.loaded.name if self.estimator else self.cfg["model"],
            "model_loaded": self.load_state == "ready",
            "estimates_served": self.served, "invalid_requests": self.invalid,
            "reports_observed": self.reports,
        }
        if self.estimator is not None:
            values["length_predictor"] = getattr(self.estimator.length_predictor, "name", "?")
            values.update(calibration_values(self.estimator))
        if self.load_state == "failed":
            level, msg = DiagnosticStatus.ERROR[0], f"failed to load: {self.load_error}"
        elif self.load_state == "loading":
            level, msg = DiagnosticStatus.WARN[0], "loading the model and timing model"
        elif self.load_state == "unconfigured" or self.service is None:
            level, msg = DiagnosticStatus.WARN[0], f"{'unconfigured' if self.estimator is None else 'inactive'} (lifecycle)"
        else:
            level, msg = DiagnosticStatus.OK[0], f"serving; {self.served} estimates, refitted from {self.reports} reports"
        arr = DiagnosticArray(status=[diagnostic_status(
            f"{self.get_fully_qualified_name()}: completion estimates", str(values["model"]), level, msg, values)])
        arr.header.stamp = time_from_ns(now)
        self.diag_pub.publish(arr)


def main(args=None) -> int:
    return run_node(PredictorNode, lambda n: SingleThreadedExecutor(), args)


if __name__ == "__main__":
    sys.exit(main())
