"""One goal as the generation node serves it: its state, its tokens going back as feedback, its
CompletionEstimate while it runs (and whenever this node made the estimate, not the predictor
node), and its rviz marker. Each goal's stream lives in that goal's thread; ``on_token`` runs
inside the decode loop, where its time counts against the budget. The node's goals in flight are
kept in a ``GoalBook``."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from timebill_msgs.action import BudgetedQuery
from timebill.feedback_pacing import FeedbackPacing
from timebill.goal_estimate import GoalEstimate
from timebill.jobs import Job
from timebill.request import InvalidRequest, Outcome

from .convert import OUTCOME_NAMES, duration, estimate_msg, goal_key, job_report, result_msg, seconds, short_id, unrun_result
from .status_output import answer_marker

Result = BudgetedQuery.Result


@dataclass
class Outlets:
    """Where every goal's stream goes (one set per node)."""

    node: object                       # its clock and logger
    report_pub: object
    estimate_pub: object
    marker_pub: object
    marker_frame: str
    pacing: FeedbackPacing             # when a feedback message leaves
    # Seconds between a running goal's status updates: its re-estimate (CompletionEstimate) and its
    # marker. An update costs the decoding loop ~0.9 ms here, a feedback message ~0.35 ms
    # (benchmarks/node_cost_bench.py): the re-estimate is not made for every message.
    status_period: float


@dataclass
class GoalState:
    handle: object
    outlets: Outlets
    estimator: object                  # the engine's: its timing model re-estimates a running goal
    accepted_at: float                 # time.monotonic() at acceptance: the budget starts here
    reservation: object = None         # its place in the scheduler (timebill.jobs.Reservation)
    budget: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)
    shutting_down: bool = False
    state: str = "queued"
    tokens: int = 0
    sent_text: str = ""                # text already sent as feedback
    pending_text: str = ""             # text not yet sent (coalesced: FeedbackPacing)
    sent_tokens: int = 0
    last_feedback: float = -math.inf   # time.monotonic() of the last feedback message
    last_status: float = -math.inf     # time.monotonic() of the last status update (re-estimate, marker)
    running: GoalEstimate | None = None  # the last re-estimate while it runs ...
    running_at: float = 0.0            # ... made this many seconds after acceptance
    estimate: GoalEstimate | None = None
    plan: object = None                # the engine's Estimate once it planned the ratio (after queueing)
    planned: GoalEstimate | None = None  # the same as a goal is told, made once: re-estimated from at every status update

    @property
    def sid(self) -> str:
        return short_id(self.handle.goal_id)

    @property
    def text(self) -> str:
        return self.sent_text + self.pending_text

    def since(self) -> float:
        return time.monotonic() - self.accepted_at

    # --- estimates --------------------------------------------------------------------------------
    def publish_estimate(self, view: GoalEstimate, made_at: float | None = None, elapsed: float | None = None,
                         tokens: int = 0):
        """``view`` as this goal's CompletionEstimate, if anyone listens. Its times count from
        ``made_at`` seconds after acceptance (default: now); ``elapsed``: seconds since acceptance
        (default: now)."""
        if not listened(self.outlets.estimate_pub):
            return
        now = self.outlets.node.get_clock().now().nanoseconds
        accepted = now - int((self.since() if elapsed is None else elapsed) * 1e9)
        stamp = now if made_at is None else accepted + int(made_at * 1e9)
        self.outlets.estimate_pub.publish(estimate_msg(self.handle.goal_id, view, stamp, accepted, self.budget,
                                                       tokens=tokens))

    def planned_by_engine(self, est):
        """The engine planned the goal itself (the length read from the prompt's states in its own
        prefill, or given by the answer format): publish that as the goal's estimate, as the
        predictor node does for others."""
        by_format = est.request.answer_format is not None
        self.plan = est
        self.estimate = self.planned = GoalEstimate.of_estimate(est, "format" if by_format else "prefill")
        v = self.estimate
        self.outlets.node.get_logger().info(
            f"goal {self.sid}: budget {self.budget:.3f} s, {estimate_line(v)}, P(complete) "
            f"{v.completion_probability:.2f} [{'the answer format' if by_format else 'read in the prefill'}]")
        # The plan's times count from when the job started (after any queueing), before its prefill.
        self.publish_estimate(v, made_at=est.planned_at)

    def runs_with(self, view: GoalEstimate, req, ids):
        """Take ``view`` (the predictor's or the local estimate) as the goal's estimate, log it, and
        give the request and prompt ids the goal runs as: with the estimate's word limit when it
        has one, else as sent (``req`` and its ``ids``)."""
        self.estimate = view
        if view.answer_words:  # the estimate is for the prompt with length control's word limit: run that one
            try:
                req, ids = self.estimator.limited_to(req, view.answer_words, view.limited_ids)
            except InvalidRequest as exc:
                self.outlets.node.get_logger().warning(
                    f"goal {self.sid}: the estimate's limited prompt is unusable ({exc}); running the prompt as sent")
        self.log_estimate(req)
        return req, ids

    def set_plan(self, est):
        """The engine planned the goal's eviction ratio when its job started (after queueing)."""
        self.plan = est
        self.planned = GoalEstimate.of_estimate(est, self.estimate.source if self.estimate is not None else "")

    def job(self, req, ids, **kw) -> Job:
        """The scheduler's job for this goal (``req`` and its prompt ``ids`` as it runs; ``kw``: the
        plan's callback and any length already predicted)."""
        return Job(request=req, release=self.accepted_at, id=self.handle.goal_id, on_token=self.on_token,
                   cancel=self.cancel, prompt_ids=ids, reservation=self.reservation, **kw)

    def log_estimate(self, req):
        """Log the estimate the goal runs with (``req``: the request as it runs)."""
        v = self.estimate
        words = f", at most {v.answer_words} words asked" if v.answer_words else ""
        self.outlets.node.get_logger().info(
            f"goal {self.sid}: budget {req.budget:.3f} s, policy {req.policy.value}, {estimate_line(v)}{words} "
            f"[{v.source}]")

    # --- while generating -------------------------------------------------------------------------
    def on_start(self):
        self.state = "running"
        self.marker()

    def on_token(self, ev):
        """Runs in the decoding loop, between two steps: most tokens only count. The text is read
        (detokenized) only when a feedback message or a status update needs it."""
        self.tokens = ev.index + 1
        now = time.monotonic()
        feedback = self.outlets.pacing.due(self.tokens - self.sent_tokens, now - self.last_feedback)
        status = now - self.last_status >= self.outlets.status_period
        if not (feedback or status):
            return
        self.pending_text += ev.text
        if status:
            self.last_status = now
            self.update_status(ev.elapsed)
        if feedback:
            self.send_feedback(ev.elapsed)

    def update_status(self, elapsed: float):
        """Re-estimate the goal from its plan and tokens so far (``elapsed`` s after acceptance),
        publish that as its CompletionEstimate, and redraw its marker."""
        if self.planned is not None:
            self.running, self.running_at = self.running_estimate(elapsed), elapsed
            if self.estimate is not None:
                self.publish_estimate(self.running, elapsed=elapsed, tokens=self.tokens)
        self.marker()

    def send_feedback(self, elapsed: float):
        """A feedback message with the pending text and the last re-estimate (its time left
        counted down to ``elapsed`` s after acceptance)."""
        left, prob, eviction_ratio, fit, words = 0.0, 0.0, 0.0, 0, 0
        if self.running is not None:
            now = self.running
            left, prob = max(now.predicted_total - (elapsed - self.running_at), 0.0), now.completion_probability
            eviction_ratio, fit, words = now.eviction_ratio, now.tokens_that_fit, now.answer_words
        fb = BudgetedQuery.Feedback(text=self.pending_text, tokens_generated=self.tokens, elapsed=duration(elapsed),
                                    predicted_remaining=duration(left), eviction_ratio=eviction_ratio,
                                    tokens_that_fit=fit, answer_word_limit=words, completion_probability=prob)
        self.sent_text += self.pending_text
        self.pending_text = ""
        self.sent_tokens = self.tokens
        self.last_feedback = time.monotonic()
        try:
            self.handle.publish_feedback(fb)
        except Exception as exc:  # the context may be gone at shutdown
            self.outlets.node.get_logger().debug(f"feedback not sent: {exc}")

    def running_estimate(self, elapsed: float) -> GoalEstimate:
        """The engine's plan of the goal re-estimated after its tokens so far, ``elapsed`` s after
        acceptance (the core's arithmetic: GoalEstimate.running); its times count from now."""
        est = self.estimator
        return self.planned.running(est.time_model, self.tokens, elapsed, self.budget,
                                    est.max_new_tokens(self.plan.request))

    def flush(self, final_text: str):
        """Send what the result text has beyond the streamed text, so the stream adds up to it."""
        if final_text.startswith(self.sent_text):
            self.pending_text = final_text[len(self.sent_text):]
        elif self.pending_text:
            self.outlets.node.get_logger().warning("the streamed text is not a prefix of the final text")
        if self.pending_text or self.tokens > self.sent_tokens:
            self.send_feedback(self.since())

    def marker(self, final=None):
        """The goal's rviz marker, if anyone listens."""
        if not listened(self.outlets.marker_pub):
            return
        node = self.outlets.node
        m = answer_marker(self.outlets.marker_frame, node.get_clock().now().to_msg(), self.state, self.since(),
                          self.budget, self.tokens, self.estimate, self.text[-240:], final)
        try:
            self.outlets.marker_pub.publish(m)
        except Exception as exc:  # the context may be gone at shutdown; a marker is not worth a goal
            node.get_logger().debug(f"marker not published: {exc}")

    def answer(self, core, note: str = ""):
        """The action result of the job's core result, with ``note`` added; the stream is flushed
        first, so that it adds up to the result's text when the result arrives."""
        self.flush(core.text)
        res = result_msg(core, self.estimate)
        if self.shutting_down and core.outcome is Outcome.CANCELED:
            res.message = "canceled: the node is shutting down"
        if note:
            res.message = f"{res.message}; {note}" if res.message else note
        self.state = "done"
        return res

    def canceled_unrun(self):
        """The action result of a goal canceled before its job ran (while it was being estimated)."""
        why = "canceled: the node is shutting down" if self.shutting_down else "canceled while being estimated"
        return unrun_result(Outcome.CANCELED, why, self.since())

    def set_status(self, res):
        """The goal handle's final status for the action result ``res``."""
        try:
            if res.outcome == Result.COMPLETED:
                self.handle.succeed()
            elif res.outcome == Result.CANCELED and self.handle.is_cancel_requested:
                self.handle.canceled()
            else:
                self.handle.abort()
        except Exception as exc:  # the context may be gone at shutdown
            self.outlets.node.get_logger().debug(f"could not set the goal status: {exc}")

    def report(self, res, core):
        """The goal's end as the rest of the system sees it, once answered ``res``: its marker shows
        the outcome, its JobReport is published and its outcome logged (``core``: the engine's
        result, None when the goal was answered before it reached the scheduler)."""
        node = self.outlets.node
        self.marker(final=res)
        self.outlets.report_pub.publish(job_report(self.handle.goal_id, res, self.budget,
                                                   node.get_clock().now().nanoseconds, core=core, v=self.estimate,
                                                   waited=self.since()))
        node.get_logger().info(f"goal {self.sid}: {OUTCOME_NAMES.get(res.outcome, '?')} ({res.generated_tokens} tokens, "
                               f"{seconds(res.elapsed):.3f} s of {self.budget:.3f} s)"
                               + (f": {res.message}" if res.message else ""))


def listened(publisher) -> bool:
    """Whether any subscriber is matched to ``publisher``. Status a running goal publishes every
    ``status_period`` (its CompletionEstimate, its marker) is made and sent only then: each costs the
    decoding loop ~0.3 ms even with nobody listening (benchmarks/node_cost_bench.py, "status
    updates"). Messages are volatile, so a subscriber that comes later misses nothing it could
    have had."""
    try:
        return publisher.get_subscription_count() > 0
    except Exception:  # the context may be gone at shutdown
        return False


def estimate_line(v: GoalEstimate) -> str:
    """An estimate as the node's log states it."""
    return (f"{v.prompt_tokens} prompt tokens, expected {v.predicted_tokens} (bound {v.predicted_tokens_bound}) tokens, "
            f"eviction ratio {v.eviction_ratio:.2f}, predicted {v.predicted_total:.3f} s")


class GoalBook:
    """The node's goals from acceptance until answered, by goal id: the cancel callback and the
    scheduler's start find a goal's state here, shutdown stops them all, /diagnostics names the
    running one. Goals are added and removed from their own threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._goals: dict[bytes, GoalState] = {}

    def add(self, g: GoalState):
        with self._lock:
            self._goals[goal_key(g.handle.goal_id)] = g

    def get(self, goal_id) -> GoalState | None:
        return self._goals.get(goal_key(goal_id))

    def remove(self, goal_id):
        with self._lock:
            self._goals.pop(goal_key(goal_id), None)

    def stop_all(self) -> int:
        """Cancel every goal because the node shuts down (their results say so); how many."""
        with self._lock:
            goals = list(self._goals.values())
        for g in goals:
            g.shutting_down = True
            g.cancel.set()
        return len(goals)

    def wait_answered(self, timeout: float) -> int:
        """Wait at most ``timeout`` s for every goal to be answered; how many were not."""
        end = time.monotonic() + timeout
        while self._goals and time.monotonic() < end:
            time.sleep(0.02)
        return len(self._goals)

    def running(self) -> str:
        """The short id of the goal generating now, or ''."""
        with self._lock:
            running = [g.sid for g in self._goals.values() if g.state == "running"]
        return running[0] if running else ""
