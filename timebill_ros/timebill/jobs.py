"""Jobs over one model: earliest-deadline-first queue, Kill and Skip-Next across jobs.

``Scheduler`` is the live form (the ROS node calls ``run`` from one thread per goal; one job
generates at a time) and the one admission: ``reserve`` takes a job's place (one running plus
``max_pending`` waiting) when a server decides whether to accept it, before the job exists, and
``run`` frees it with the job's result. ``run_sequence`` is the batch form (evaluation): jobs with
release times run one at a time, idle gaps skipped. Both apply the same two rules:

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


# A place reserved for a job that never reached ``run`` (the server failed to create its goal
# handle, so the hand-over never came) is freed after this many seconds.
RESERVATION_TIMEOUT = 10.0


class Reservation:
    """A job's place in a ``Scheduler``, from its admission until its result (``release``)."""

    def __init__(self, scheduler: "Scheduler", made_at: float):
        self._scheduler = scheduler
        self.made_at = made_at
        self.handed_over = False  # on its way to ``run``: no longer expires
        self.released = False

    def hand_over(self) -> None:
        self._scheduler._hand_over(self)

    def release(self) -> None:
        """Free the place (the job was answered without running, or ran); again is a no-op."""
        self._scheduler._release(self)


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
    reservation: Reservation | None = None     # its place, taken at admission (``Scheduler.reserve``)

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

    def __init__(self, engine: BudgetedEngine, max_pending: int = 8, on_start: Callable[[Job], None] | None = None,
                 reservation_timeout: float = RESERVATION_TIMEOUT):
        self.engine = engine
        self.max_pending = max_pending
        self.on_start = on_start
        self.reservation_timeout = float(reservation_timeout)
        self._cond = threading.Condition()
        self._pending: dict[int, Job] = {}
        self._seq = itertools.count()
        self._busy = False
        self._skip_next = SkipNext()
        self._admitted: set[Reservation] = set()
        self._unclaimed: dict[Any, Reservation] = {}

    @property
    def pending(self) -> int:
        """Jobs waiting in the queue (not the running one, nor those admitted and not yet queued)."""
        with self._cond:
            return len(self._pending)

    @property
    def admitted(self) -> int:
        """Places taken: the running job, the waiting ones, and those reserved for jobs on their way."""
        with self._cond:
            self._expire(time.monotonic())
            return len(self._admitted)

    # --- admission --------------------------------------------------------------------------------
    def reserve(self, key: Any = None) -> Reservation:
        """Take a place for a job to come, or raise QueueFull. ``key``: the job reaches ``run``
        from elsewhere (an action server accepts a goal in one callback and hands it over in
        another); ``claim(key)`` there finds this place."""
        with self._cond:
            now = time.monotonic()
            self._expire(now)
            if len(self._admitted) > self.max_pending:  # one running plus max_pending waiting
                raise QueueFull(f"the queue is full ({self.max_pending} goals waiting)")
            r = Reservation(self, now)
            self._admitted.add(r)
            if key is not None:
                self._unclaimed[key] = r  # a key used again belongs to a hand-over that never came
            return r

    def claim(self, key: Any) -> Reservation:
        """The place reserved under ``key``, handed over. When it expired meanwhile, a new place,
        over the limit if need be: the job was accepted and must be answered."""
        with self._cond:
            r = self._unclaimed.pop(key, None) or Reservation(self, time.monotonic())
        r.hand_over()
        return r

    def _expire(self, now: float) -> None:
        stale = [r for r in self._admitted if not r.handed_over and now - r.made_at >= self.reservation_timeout]
        for r in stale:
            self._admitted.discard(r)
        if stale:
            self._unclaimed = {k: r for k, r in self._unclaimed.items() if r in self._admitted}

    def _hand_over(self, r: Reservation) -> None:
        with self._cond:
            r.handed_over = True
            if not r.released:
                self._admitted.add(r)  # back in, if it expired before the hand-over came

    def _release(self, r: Reservation) -> None:
        with self._cond:
            r.released = True
            self._admitted.discard(r)

    # --- running ----------------------------------------------------------------------------------
    def run(self, job: Job) -> Result:
        """The job's result, once it has run or been answered without running. The job's place is
        ``job.reservation``, or taken here (QueueFull when there is none); it is freed on return."""
        place = job.reservation or self.reserve()
        place.hand_over()
        try:
            # Judged before queueing: waiting only shortens the budget, so a job that cannot be
            # useful now is answered at once rather than at the head of the queue.
            refused = self.engine.refusal_before_queueing(job.request, job.release, job.length, job.prompt_ids,
                                                          job.on_plan)
            return refused if refused is not None else self._queue_and_run(job)
        finally:
            place.release()

    def _first(self) -> int:
        return min(self._pending, key=lambda k: (self._pending[k].deadline, k))

    def _queue_and_run(self, job: Job) -> Result:
        with self._cond:
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
