"""Jobs over one model: earliest-deadline-first queue, Kill and Skip-Next across jobs.

``Scheduler`` is the live form (the ROS node calls ``run`` from one thread per goal; one job
generates at a time). ``run_sequence`` is the batch form (evaluation): jobs with release times
run one at a time, idle gaps skipped. Both apply the same two rules:

* a job whose deadline passes while it waits is answered at once (KILLED under Kill, SKIPPED
  under Skip-Next), never run;
* under Skip-Next, when a job finishes after its deadline, every job released before that
  moment and still waiting is SKIPPED (``timebill.overrun.SkipNext``, the one statement of the
  rule, also used by the evaluation's replay).
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .engine import BudgetedEngine, Result, TokenCallback
from .estimator import Estimate
from .length_predictor import LengthEstimate
from .overrun import SKIPPED_MESSAGE, SkipNext
from .request import Outcome, Policy, Request


class QueueFull(RuntimeError):
    pass


@dataclass
class Job:
    request: Request
    release: float = field(default_factory=time.monotonic)  # monotonic time its budget started
    id: Any = None
    on_token: TokenCallback | None = None
    cancel: threading.Event | None = None
    length: LengthEstimate | None = None       # predicted at acceptance; not predicted again
    prompt_ids: list | None = None             # tokenized at acceptance; not tokenized again
    on_plan: Callable[[Estimate], None] | None = None

    @property
    def deadline(self) -> float:
        return self.release + float(self.request.budget)

    @property
    def policy(self) -> Policy:
        return Policy.parse(self.request.policy)


def unrun(job: Job, outcome: Outcome, message: str, now: float | None = None) -> Result:
    """The result of a job answered without running."""
    now = time.monotonic() if now is None else now
    return Result(outcome=outcome, text="", message=message, deadline_met=now <= job.deadline,
                  queue_wait=now - job.release, total_time=now - job.release, stop_reason=outcome.value)


def expired(job: Job, now: float) -> Result | None:
    if now < job.deadline:
        return None
    if job.policy is Policy.SKIP_NEXT:
        return unrun(job, Outcome.SKIPPED, "skipped: the deadline passed while the job waited behind another", now)
    return unrun(job, Outcome.KILLED, "killed: the deadline passed while the job waited in the queue", now)


class Scheduler:
    """Live EDF scheduling of jobs onto one engine. Thread-safe; ``run`` blocks until the job's result."""

    def __init__(self, engine: BudgetedEngine, max_pending: int = 8, on_start: Callable[[Job], None] | None = None):
        self.engine = engine
        self.max_pending = max_pending
        self.on_start = on_start
        self._cond = threading.Condition()
        self._pending: dict[int, Job] = {}
        self._seq = itertools.count()
        self._busy = False
        self._skip_next = SkipNext()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _first(self) -> int:
        return min(self._pending, key=lambda k: (self._pending[k].deadline, k))

    def run(self, job: Job) -> Result:
        with self._cond:
            if len(self._pending) >= self.max_pending:
                raise QueueFull(f"the queue is full ({self.max_pending} goals waiting)")
            key = next(self._seq)
            self._pending[key] = job
            try:
                while True:
                    now = time.monotonic()
                    if self._skip_next.skips(job.release):
                        return unrun(job, Outcome.SKIPPED, SKIPPED_MESSAGE, now)
                    if job.cancel is not None and job.cancel.is_set():
                        return unrun(job, Outcome.CANCELED, "canceled while waiting in the queue", now)
                    gone = expired(job, now)
                    if gone is not None:
                        return gone
                    if not self._busy and self._first() == key:
                        break
                    # Wake for the deadline even if nobody notifies; poll cancels at 20 Hz.
                    self._cond.wait(timeout=max(0.0, min(0.05, job.deadline - now)))
            finally:
                self._pending.pop(key, None)
                self._cond.notify_all()
            self._busy = True
        result = None
        try:
            if self.on_start:
                self.on_start(job)
            result = self.engine.generate(job.request, on_token=job.on_token, cancel=job.cancel, accepted_at=job.release,
                                          length=job.length, on_plan=job.on_plan, prompt_ids=job.prompt_ids)
        finally:
            with self._cond:
                # Set before the next job can start, so it sees the overrun.
                if result is not None:
                    self._skip_next.job_ended(job.policy, result.outcome, result.deadline_met, time.monotonic())
                self._busy = False
                self._cond.notify_all()
        return result


def run_sequence(engine: BudgetedEngine, jobs: list[Job], skip_idle: bool = True, progress=None) -> list[Result]:
    """Run jobs (release times relative to 0, in seconds) one at a time in release order.

    With ``skip_idle``, time with nothing to run is skipped instead of slept (nothing can happen
    then), so a periodic sequence runs in the time its jobs take.
    """
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].release)
    results: list[Result | None] = [None] * len(jobs)
    origin = time.monotonic()
    skipped = 0.0       # seconds of idle time skipped so far
    skip_next = SkipNext()
    for i in order:
        job = jobs[i]
        now = time.monotonic() - origin + skipped  # virtual time
        if now < job.release:
            if skip_idle:
                skipped += job.release - now
            else:
                time.sleep(job.release - now)
            now = job.release
        real_release = origin + job.release - skipped
        live = dataclasses.replace(job, release=real_release)
        if skip_next.skips(job.release):
            res = unrun(live, Outcome.SKIPPED, SKIPPED_MESSAGE)
        else:
            res = expired(live, time.monotonic()) or engine.generate(
                live.request, on_token=live.on_token, cancel=live.cancel, accepted_at=real_release,
                length=live.length, on_plan=live.on_plan, prompt_ids=live.prompt_ids)
            skip_next.job_ended(live.policy, res.outcome, res.deadline_met, time.monotonic() - origin + skipped)
        results[i] = res
        if progress:
            progress(i, res)
    return results  # type: ignore[return-value]
