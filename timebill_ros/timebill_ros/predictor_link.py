"""The generation node's side of the predictor node: ask it for each goal's estimate (made locally
when it is gone), know when it is gone (then no goal waits for it), and probe it in the
background until it is back.

Without this, every goal waited out ``predictor_timeout`` while the predictor was gone (issue 12:
2.6 s instead of 1.6 s a goal for ~18 s, until the middleware noticed the crash).
"""
from __future__ import annotations

import threading
import time

from timebill_msgs.srv import EstimateCompletion
from timebill.goal_estimate import GoalEstimate

from .convert import duration, estimate_of_response, estimate_request

# The probe that asks a predictor known to be gone whether it is back (a what-if, nothing tracked).
PROBE = EstimateCompletion.Request(prompt="probe", time_budget=duration(1.0), max_new_tokens=1,
                                   max_eviction_ratio=-1.0)


class PredictorLink:
    def __init__(self, node, service: str, timeout: float, probe_period: float, callback_group=None):
        self.node = node
        self.client = node.create_client(EstimateCompletion, service, callback_group=callback_group)
        self.timeout = float(timeout)
        self.probe_period = float(probe_period)
        self.group = callback_group
        self.ok: bool | None = None      # None until the first goal
        self.problem = ""
        self.fallbacks = 0               # goals estimated locally
        self._lock = threading.Lock()
        self._probe = None               # (future, sent at) of the probe in flight
        self._timer = None

    @property
    def name(self) -> str:
        return self.client.srv_name

    def start(self):
        """Probe in the background from now on (while serving goals)."""
        if self._timer is None:
            self._timer = self.node.create_timer(self.probe_period, self._probe_tick, callback_group=self.group)

    def stop(self):
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        self._probe = None

    def ask(self, request, cancel: threading.Event) -> GoalEstimate | str | None:
        """The predictor's estimate for ``request``; otherwise why not (a str: the caller estimates
        locally and says so); None when ``cancel`` was set meanwhile."""
        gone = True  # False when the predictor answered but refused the goal
        if self.ok is False:
            problem = self.problem  # known to be gone: no goal waits for it; the probe finds out when it is back
        elif not self.client.service_is_ready():
            problem = f"service '{self.name}' not available"
        else:
            fut = self.client.call_async(request)
            end = time.monotonic() + self.timeout
            done = threading.Event()
            fut.add_done_callback(lambda _f: done.set())
            while not fut.done() and time.monotonic() < end and not cancel.is_set():
                done.wait(min(0.02, max(0.0, end - time.monotonic())))
            if fut.done() and fut.exception() is None and fut.result() is not None:
                r = fut.result()
                self._state(True)
                if r.valid:
                    return estimate_of_response(r)
                # Valid here but not there: the two nodes run different configurations.
                problem, gone = f"the predictor refused the goal ({r.message})", False
            else:
                self.client.remove_pending_request(fut)
                if cancel.is_set():
                    return None
                problem = f"no answer from '{self.name}' within {self.timeout:.2f} s"
        with self._lock:
            self.fallbacks += 1
        if gone and self.ok is not False:
            self._state(False, problem)
        return f"predictor unreachable ({problem})" if gone else problem

    def estimate(self, g, req, ids, engine) -> tuple[GoalEstimate | None, str]:
        """Goal ``g``'s estimate (a GoalState; ``req`` and its ``ids``: the goal as a core request)
        and a note for its result: the predictor's, or, when it is known to be gone or does not
        answer in time, ``engine``'s own, published and said so. None when the goal was canceled
        meanwhile."""
        answer = self.ask(estimate_request(g.handle.request, g.handle.goal_id, g.since(), ids), g.cancel)
        if answer is None or isinstance(answer, GoalEstimate):
            return answer, ""
        est = engine.estimate_between_jobs(req, g.accepted_at, ids, g.cancel)
        if est is None:
            return None, ""
        view = GoalEstimate.of_estimate(est, "local")
        # The predictor publishes an estimate for every goal; when it is down, the generation node does.
        g.publish_estimate(view)
        note = f"{answer}: planned with the generation node's local estimate"
        # A predictor known to be gone was logged once, when it went (and /diagnostics says so):
        # a warning for each goal after it would bury the console (`bringup --no-predictor`).
        log = self.node.get_logger().debug if self.ok is False else self.node.get_logger().warning
        log(f"goal {g.sid}: {note}")
        return view, note

    def diagnostics(self) -> dict:
        return {"predictor_reachable": {None: "unknown (no goal yet)", True: "yes", False: "no"}[self.ok],
                "predictor_problem": self.problem, "predictor_fallbacks": self.fallbacks}

    def _state(self, ok: bool, problem: str = ""):
        with self._lock:
            changed = ok != self.ok
            self.ok, self.problem = ok, problem
        if changed:
            if ok:
                self.node.get_logger().info("predictor reachable")
            else:
                self.node.get_logger().warning(f"predictor unreachable: {problem}; probing it in the background")

    def _probe_tick(self):
        """While the predictor is known to be gone, ask it a what-if now and then; its answer
        brings goals back to it."""
        if self.ok is not False:
            return
        if self._probe is not None:
            fut, sent = self._probe
            if fut.done():
                self._probe = None
                if fut.exception() is None and fut.result() is not None:
                    self._state(True)
            elif time.monotonic() - sent > self.timeout:
                self.client.remove_pending_request(fut)
                self._probe = None
            return
        if self.client.service_is_ready():
            self._probe = (self.client.call_async(PROBE), time.monotonic())
