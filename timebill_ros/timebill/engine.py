"""Budgeted generation: plan the KV-cache eviction ratio, prefill with a kvpress press, decode token by token to a deadline.

The decode loop is our own (not ``model.generate``): a compressed cache is physically shorter
than the logical positions, which ``generate`` cannot handle, and we must be able to stop
between any two tokens. Under Kill no decoding step is started that the time model says would
end after the deadline; a cancel stops before the next step. The model itself is behind a
backend (``timebill.backends``: torch, the reference, or llamacpp, the fast path); the deadline
rules, cancel, sampling and streaming (``timebill.token_stream``) are the same for both.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from . import compute_thread
from .backends import Backend, make_backend
from .estimator import Estimate, Estimator
from .length_predictor import LengthEstimate
from .planner import Plan
from .deferred_press import DeferredPress
from .presses import make_press
from .constrained import token_pieces
from .request import InvalidRequest, Outcome, Policy, Request
from .token_stream import Sampler, TokenCallback, TokenEvent, TokenStream, sample


@dataclass
class Result:
    outcome: Outcome
    text: str
    message: str
    deadline_met: bool
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    eviction_ratio: float = 0.0
    plan: Plan | None = None
    predictor_time: float = 0.0
    queue_wait: float = 0.0
    prefill_time: float = 0.0
    decode_time: float = 0.0
    total_time: float = 0.0     # acceptance to result
    step_times: list = field(default_factory=list)   # seconds of each decoding step
    token_times: list = field(default_factory=list)  # elapsed seconds at each token
    stop_reason: str = ""       # eos, max_tokens, loop, format, deadline, cancel, infeasible
    # What the plan's timing model says the tokens actually generated take (predictor, prefill,
    # decode at the ratio used): the time estimate's own error, apart from the length's.
    time_given_length: float = 0.0
    planned_at: float = 0.0     # seconds from acceptance when the plan was made (queueing, any earlier prefill)
    forward_time: float = 0.0   # seconds into the prefill when the plan was made inside it (0: made before it)
    # An answer format's answer that decoding stopped before it was whole (the deadline, a cancel,
    # the token cap): ``text`` ends with the shortest ending the format allows, appended.
    closed_early: bool = False

    @property
    def completed(self) -> bool:
        return self.outcome is Outcome.COMPLETED

    @property
    def token_intervals(self) -> list[float]:
        """Seconds from each answer token to the next, as served: a decoding step and all the
        decode loop does around it (sampling, the caller's token callback, the deadline check).
        Interval i follows step i (``step_times[i]``); the time model is refitted from these, the
        speed a caller gets, not from the bare steps."""
        return [b - a for a, b in zip(self.token_times, self.token_times[1:])]

    @property
    def timed_tokens(self) -> int:
        """The tokens the timing model counts: the answer's, and the end of turn where one ended it
        (a decoding step like any other)."""
        return self.generated_tokens + (self.stop_reason == "eos")


class BudgetedEngine:
    def __init__(self, estimator: Estimator, reject_infeasible: bool = True, learn_online: bool = True,
                 backend: str | Backend = "auto", predict_in_prefill: bool = True, loop_window: int = 0):
        """``reject_infeasible``: answer INFEASIBLE without generating when the plan says nothing
        useful fits (``Plan.useful_fits``: not even ``min_useful_tokens``); otherwise run and let the
        overrun policy decide (False: always run, the paper's behaviour). ``backend``: a name (``auto``, ``torch``,
        ``llamacpp``) or a backend object; its timing model must be the estimator's.
        ``predict_in_prefill``: a length predictor that reads the model's hidden states takes them
        from the job's own prefill and the ratio is applied after it (``DeferredPress``); False:
        it runs its own pass first and the press evicts inside the prefill. ``loop_window`` > 0: a
        free-text answer whose last that many tokens repeat earlier ones ends there, COMPLETED
        (``timebill.repetition``; 0 = run loops to the cap)."""
        self.estimator = estimator
        self.loaded = estimator.loaded
        self.reject_infeasible = reject_infeasible
        self.learn_online = learn_online
        self.backend = make_backend(backend, self.loaded) if isinstance(backend, str) else backend
        self.predict_in_prefill = bool(predict_in_prefill)
        self.loop_window = int(loop_window)
        self._lock = threading.Lock()  # one model: one generation at a time

    def warm_up(self) -> None:
        """Run one short job untimed: the first forward passes after loading are several times slower.
        It also applies the configured press once, so a press the backend cannot apply fails at start-up."""
        req = Request(prompt="Hello. " * 24, budget=3600.0, max_new_tokens=4, fixed_eviction_ratio=0.5)
        token_pieces(self.loaded)  # what answer formats read, made now rather than in a goal's budget
        with self._lock:  # not through generate(): these times must not teach the calibration
            compute_thread.run(lambda: self._run(self.estimator.estimate(req), time.monotonic(), 0.0, None, None))

    def generate(
        self,
        req: Request,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
        accepted_at: float | None = None,
        length: LengthEstimate | None = None,
        on_plan: Callable[[Estimate], None] | None = None,
        prompt_ids: list | None = None,
    ) -> Result:
        """Run one job. ``accepted_at`` (time.monotonic()) is when its budget started; default now.

        ``length``: a length prediction already made for this job (not repeated in the budget).
        ``prompt_ids``: the prompt already tokenized and checked by ``Estimator.encode`` (not repeated).
        ``on_plan`` is called with the estimate once the ratio is planned, before the prefill.
        The job runs the estimate's request: ``req``, or ``req`` with the word limit length control
        chose (``Result.plan.answer_words``).
        Raises InvalidRequest for a bad request; every other problem is a Result.
        """
        accepted_at = time.monotonic() if accepted_at is None else accepted_at

        def job() -> Result:
            queue_wait = time.monotonic() - accepted_at
            ids = prompt_ids if prompt_ids is not None else self.estimator.encode(req)
            known = length if length is not None else self.estimator.format_length(req)
            if known is None and self.reads_own_prefill(ids):
                return self._run_predicting_in_prefill(req, ids, accepted_at, queue_wait, on_token, cancel, on_plan)
            est = self.estimator.estimate(req, already_elapsed=queue_wait, length=known, prompt_ids=ids)
            if on_plan is not None:
                on_plan(est)
            return self._run(est, accepted_at, queue_wait, on_token, cancel)

        # The lock is taken here, before the hand-over: a holder of the lock may itself be waiting
        # for the compute thread (timebill/compute_thread.py).
        with self._lock:
            result = compute_thread.run(job)
        if self.learn_online and result.generated_tokens:
            self.estimator.calibration.observe(result.prompt_tokens, result.prefill_time, result.cached_tokens,
                                               result.token_intervals, result.forward_time)
            if req.answer_format is not None and result.stop_reason in ("eos", "format"):
                self.estimator.format_lengths.observe(req.answer_format, result.timed_tokens)
        return result

    def refusal_before_queueing(self, req: Request, accepted_at: float, length: LengthEstimate | None,
                                prompt_ids: list | None, on_plan: Callable[[Estimate], None] | None = None
                                ) -> Result | None:
        """The INFEASIBLE answer to a job that cannot be useful even if it started now, or None.
        Judged only when the ids and the length are known without running the model (tokenized
        and predicted at acceptance, or the length its answer format gives); ``on_plan`` is then
        called with the refusing estimate, as ``generate`` would."""
        if not self.reject_infeasible or prompt_ids is None:
            return None
        length = length if length is not None else self.estimator.format_length(req)
        if length is None:
            return None
        elapsed = time.monotonic() - accepted_at
        est = self.estimator.estimate(req, already_elapsed=elapsed, prompt_ids=prompt_ids, length=length,
                                      control_length=False)  # a word limit never makes a job useful that is not
        refused = self._infeasible(_Job(req, est, accepted_at, elapsed, self.estimator.max_new_tokens(req)))
        if refused is not None and on_plan is not None:
            on_plan(est)
        return refused

    def estimate_between_jobs(self, req: Request, accepted_at: float, prompt_ids: list | None = None,
                              cancel: threading.Event | None = None) -> Estimate | None:
        """``Estimator.estimate`` for a job accepted at ``accepted_at``, made while no job runs: a
        length predictor runs model layers, and a running job's prefill registers kvpress hooks on
        those same layers. None when ``cancel`` is set while it waits for the model."""
        while not self._lock.acquire(timeout=0.05):
            if cancel is not None and cancel.is_set():
                return None
        try:
            return self.estimator.estimate(req, already_elapsed=time.monotonic() - accepted_at, prompt_ids=prompt_ids)
        finally:
            self._lock.release()

    def plans_itself(self, req: Request, ids) -> bool:
        """True when the job needs no length prediction from elsewhere (e.g. the predictor node):
        its answer format gives the length, or the length predictor reads the job's own prefill."""
        return self.estimator.format_length(req) is not None or self.reads_own_prefill(ids)

    def reads_own_prefill(self, ids) -> bool:
        return self.predicts_in_prefill and self.estimator.length_predictor.reads_states_of(len(ids))

    @property
    def predicts_in_prefill(self) -> bool:
        """True when the length predictor reads the served prefill's hidden states (the paper's
        order: predict beside the prefill, evict after it), so that it costs no pass of its own."""
        return self.predict_in_prefill and getattr(self.estimator.length_predictor, "state_layer", None) is not None

    def _run_predicting_in_prefill(self, req, ids, accepted_at, queue_wait, on_token, cancel, on_plan) -> Result:
        """Prefill, predict the length from the prefill's states, plan, evict, decode. When length
        control asks for a word limit that can pay for a prefill of the limited prompt
        (``Estimator.limit_after_prefill``), that prompt is read by a prefill of its own (its
        length predicted there too) and runs if ``Estimator.better`` prefers it; otherwise the
        prompt as sent runs again with its own plan."""
        estimator = self.estimator
        first = self._prefill_and_plan(req, ids, accepted_at, queue_wait, on_token, cancel, on_plan, limit=True)
        if isinstance(first, Result):
            return first  # the job ran (or was refused) on the prompt as sent
        first, limited = first  # limited: the limited request and its ids, as limit_after_prefill made them
        second = self._prefill_and_plan(limited.request, limited.prompt_ids, accepted_at, queue_wait, on_token,
                                        cancel, on_plan, limit=False, prefer_over=first)
        if isinstance(second, Result):
            return second
        # The prompt as sent, with the length its own prefill predicted, planned for the time left.
        est = estimator.estimate(req, time.monotonic() - accepted_at, prompt_ids=ids, length=first.length,
                                 control_length=False)
        if on_plan is not None:
            on_plan(est)
        return self._run(est, accepted_at, queue_wait, on_token, cancel)

    def _prefill_and_plan(self, req, ids, accepted_at, queue_wait, on_token, cancel, on_plan, limit: bool,
                          prefer_over: Estimate | None = None):
        """Run ``req`` with the plan made from its own prefill; returns its Result, or, without
        decoding, (the Estimate made there, the limited request's from ``limit_after_prefill`` or
        None) when length control asks for a word limit (``limit``) or ``Estimator.better``
        prefers ``prefer_over`` to it."""
        estimator = self.estimator
        max_new = estimator.max_new_tokens(req)
        elapsed = time.monotonic() - accepted_at  # queueing, and any prefill of another prompt before this one
        # Before the prefill only what needs no length is judged: whether the prefill fits the
        # deadline and whether the least useful answer fits (a plan for the longest answer asks
        # exactly that). The real plan is made once the prefill has read the prompt.
        before = estimator.estimate(req, elapsed, prompt_ids=ids, length=LengthEstimate(max_new, max_new),
                                    control_length=False)
        declined: list[tuple[Estimate, Estimate | None]] = []

        def decide(state, forward: float) -> Estimate | None:
            # ``forward`` seconds of this prefill have run: the plan times it rather than models it
            est = estimator.estimate(req, elapsed, prompt_ids=ids,
                                     length=estimator.length_predictor.from_state(state, max_new), control_length=False,
                                     prefill_seconds=estimator.calibration.whole_prefill(len(ids), forward))
            limited = estimator.limit_after_prefill(req, est, time.monotonic() - accepted_at) if limit else None
            if limited is not None or (prefer_over is not None and estimator.better(prefer_over, est) is prefer_over):
                declined.append((est, limited))
                return None
            if on_plan is not None:
                on_plan(est)
            return est

        result = self._run(before, accepted_at, queue_wait, on_token, cancel, decide=decide)
        return declined[0] if declined else result

    # ---------------------------------------------------------------------------------------------
    def _run(self, est: Estimate, accepted_at, queue_wait, on_token, cancel, decide=None) -> Result:
        """Run one planned job. ``decide``: the plan is made from the prefill's states instead
        (``est`` then only judged whether the job may start): it is called with them and returns
        the Estimate to run, or None to end the job after the prefill (its cache unused)."""
        req = est.request
        job = _Job(req, est, accepted_at, queue_wait, self.estimator.max_new_tokens(req))
        refusal = self._refusal(job, cancel)
        if refusal is not None:
            return refusal
        stream = TokenStream(self.loaded, accepted_at, on_token, Sampler(req, self.loaded), self.loop_window)
        t0 = time.monotonic()
        if decide is None:
            press = make_press(self.estimator.press, est.plan.eviction_ratio, len(job.ids))
        else:
            def planned_inside(state) -> float:
                job.forward_time = time.monotonic() - t0
                return job.replan(decide(state, job.forward_time))

            press = DeferredPress(self.estimator.press, len(job.ids), self.estimator.length_predictor.state_layer,
                                  planned_inside)
        logits, cached = self.backend.prefill(job.ids, press)
        prefill_time = time.monotonic() - t0
        if job.declined:
            return job.finish(Outcome.CANCELED, "another prompt is to run", "replanned")
        est = job.est
        stop = stream.take(logits)
        if stop:
            outcome, message, step_times = Outcome.COMPLETED, "", []
        else:
            stop, outcome, message, step_times = self._decode(job, stream, cancel)
        text, closing = stream.text()
        if stop == "loop":
            message = (f"stopped a loop after {len(stream.ids)} tokens: the last {self.loop_window} repeated earlier "
                       f"text word for word")
        if closing:
            message += f"; the answer was closed with the shortest ending its format allows ({closing!r})"
        result = job.finish(outcome, message, stop, text=text, closed_early=bool(closing), cached_tokens=cached,
                            generated_tokens=len(stream.ids), prefill_time=prefill_time, decode_time=sum(step_times),
                            step_times=step_times, token_times=stream.times)
        result.time_given_length = result.planned_at + est.plan.predictor_time + est.time_model.end_to_end(
            len(est.prompt_ids), result.timed_tokens, est.plan.eviction_ratio)
        if outcome is Outcome.COMPLETED and not result.deadline_met:
            result.message = (f"completed {result.total_time - float(req.budget):.3f} s after the deadline "
                              f"(policy {job.policy.value})")
        return result

    def _refusal(self, job: "_Job", cancel) -> Result | None:
        """The answer to a job that must not start, or None when it may."""
        refused = self._infeasible(job)
        if refused is not None:
            return refused
        if cancel is not None and cancel.is_set():
            return job.finish(Outcome.CANCELED, "canceled before generation started", "cancel")
        # judged at the speed INFEASIBLE is judged at (OnlineCalibration.for_refusals)
        if job.policy is not Policy.KILL:
            return None
        prefill = self.estimator.calibration.for_refusals.prefill(len(job.ids))
        left = job.deadline - time.monotonic()
        if prefill <= left:
            return None
        why = (f"the prefill alone would end after the deadline: {len(job.ids)} prompt tokens need "
               f"{prefill:.3f} s, {max(left, 0.0):.3f} s of the {float(job.req.budget):.3f} s budget are left")
        if job.req.answer_format is not None:  # no answer at all is not a valid one: refused, as INFEASIBLE is
            return job.finish(Outcome.INFEASIBLE, f"infeasible: {why}", "infeasible")
        return job.finish(Outcome.KILLED, f"killed: {why}", "deadline")

    def _infeasible(self, job: "_Job") -> Result | None:
        """The one INFEASIBLE rule (at the head of the queue, and before queueing): with
        ``reject_infeasible``, a plan under which not even a useful minimum fits is not run."""
        if self.reject_infeasible and not job.plan.useful_fits:
            return job.finish(Outcome.INFEASIBLE, f"infeasible: {job.plan.reason or 'not even a minimal answer fits'}", "infeasible")
        return None

    def _decode(self, job: "_Job", stream: TokenStream, cancel):
        """Decode until end of turn, the token cap, a cancel or (under Kill) the deadline.
        Returns (stop reason, outcome, message, seconds of each step)."""
        tm = self.estimator.time_model
        step_times: list[float] = []
        position = len(job.ids)
        recent: deque[float] = deque(maxlen=4)
        last_check = None
        while True:
            if len(stream.ids) >= job.max_new:
                return "max_tokens", Outcome.COMPLETED, "", step_times
            if cancel is not None and cancel.is_set():
                return "cancel", Outcome.CANCELED, "canceled by the client", step_times
            now = time.monotonic()
            if last_check is not None:
                recent.append(now - last_check)
            last_check = now
            # The next step costs what the model says, or what the last few whole iterations
            # (step + sampling + callbacks) really took, whichever is longer: jitter and
            # per-token overhead are not in the time model.
            if job.policy is Policy.KILL and now + max(tm.decode_step(self.backend.cached()), max(recent, default=0.0)) > job.deadline:
                return ("deadline", Outcome.KILLED,
                        f"killed at the deadline after {len(stream.ids)} tokens (budget {float(job.req.budget):.3f} s)", step_times)
            t1 = time.monotonic()
            logits = self.backend.decode_one(stream.last, position)
            step_times.append(time.monotonic() - t1)
            position += 1
            stop = stream.take(logits)
            if stop:
                return stop, Outcome.COMPLETED, "", step_times


@dataclass
class _Job:
    """One job's fixed facts, and how to turn them into a Result."""

    req: Request
    est: Estimate
    accepted_at: float
    queue_wait: float
    max_new: int
    declined: bool = False  # the plan made from the prefill declined to run this prompt
    forward_time: float = 0.0  # seconds into the prefill when the plan was made inside it

    def __post_init__(self):
        self.plan = self.est.plan
        self.ids = self.est.prompt_ids
        self.policy = Policy.parse(self.req.policy)
        self.deadline = self.accepted_at + float(self.req.budget)

    def replan(self, est: Estimate | None) -> float:
        """Take the plan made from the prefill's states; the eviction ratio to apply now (none
        when the plan declined this prompt: its cache will not be used)."""
        if est is None:
            self.declined = True
            return 0.0
        self.est, self.plan = est, est.plan
        return est.plan.eviction_ratio

    def finish(self, outcome, message, stop, text="", **kw) -> Result:
        now = time.monotonic()
        return Result(
            outcome=outcome, text=text, message=message, deadline_met=now <= self.deadline,
            prompt_tokens=len(self.ids), eviction_ratio=self.plan.eviction_ratio, plan=self.plan,
            predictor_time=self.est.predictor_latency, planned_at=self.est.planned_at,
            queue_wait=self.queue_wait, total_time=now - self.accepted_at, stop_reason=stop,
            forward_time=self.forward_time, **kw,
        )


__all__ = ["BudgetedEngine", "Result", "TokenEvent", "InvalidRequest", "sample"]
