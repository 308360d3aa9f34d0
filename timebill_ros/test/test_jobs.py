"""Sequences of jobs on one model: Kill, Skip-Next, queue order and expiry, and the scheduler's
admission (one place per job, reserved before the job exists)."""
import threading
import time

from conftest import slow_time_model
from timebill.engine import BudgetedEngine
from timebill.estimator import Estimator
from timebill.jobs import Job, QueueFull, Scheduler, run_sequence
from timebill.length_predictor import LengthEstimate
from timebill.request import Outcome, Request

PROMPT = "Planners send goals; the node streams tokens back as feedback. " * 3


def make_engine(tiny):
    # Claims 20 ms a step (the tiny model takes ~1 ms): an overrun is then a matter of the model.
    engine = BudgetedEngine(Estimator(tiny, slow_time_model(step=0.02, prefill=0.005)), reject_infeasible=False, learn_online=False)
    engine.warm_up()
    return engine


def periodic(policy, n=4, period=0.05, long_tokens=300):
    # Job 0 wants many tokens; the rest are short. Released one per period, budget = period.
    return [Job(Request(PROMPT, budget=period, max_new_tokens=long_tokens if i == 0 else 3, policy=policy),
                release=i * period, id=i) for i in range(n)] + \
           [Job(Request(PROMPT, budget=5.0, max_new_tokens=3, policy=policy), release=100.0, id="late")]


def test_kill_keeps_jobs_independent(tiny):
    results = run_sequence(make_engine(tiny), periodic("kill"))
    assert results[0].outcome is Outcome.KILLED and results[0].deadline_met
    assert [r.outcome for r in results[1:]] == [Outcome.COMPLETED] * 4


def test_skip_next_lets_the_overrunning_job_finish_and_skips_those_released_meanwhile(tiny):
    results = run_sequence(make_engine(tiny), periodic("skip_next"))
    first = results[0]
    assert first.outcome is Outcome.COMPLETED and not first.deadline_met and first.generated_tokens == 300
    # Jobs 1-3 were released (at 0.05, 0.10, 0.15 s) while job 0 still ran: skipped, never run.
    assert [r.outcome for r in results[1:4]] == [Outcome.SKIPPED] * 3
    assert all(r.generated_tokens == 0 and "overran" in r.message for r in results[1:4])
    # A job released after the overrun ended runs normally.
    assert results[4].outcome is Outcome.COMPLETED


def test_idle_time_between_releases_is_skipped_not_slept(tiny):
    t0 = time.monotonic()
    results = run_sequence(make_engine(tiny), [Job(Request(PROMPT, budget=1, max_new_tokens=2), release=r) for r in (0, 30, 60)])
    assert all(r.outcome is Outcome.COMPLETED for r in results)
    assert time.monotonic() - t0 < 10


def _scheduler_with_blocker(tiny, max_pending=8, engine=None):
    """A scheduler busy with a job that runs until released, so others queue behind it."""
    started, go = [], threading.Event()
    sched = Scheduler(engine or make_engine(tiny), max_pending=max_pending, on_start=lambda job: started.append(job.id))

    def hold(ev):
        go.wait(10)

    blocker = Job(Request(PROMPT, budget=60, max_new_tokens=2), id="blocker", on_token=hold)
    results = {}
    threads = [threading.Thread(target=lambda: results.__setitem__("blocker", sched.run(blocker)))]
    threads[0].start()
    while started != ["blocker"]:
        time.sleep(0.005)
    return sched, started, go, results, threads


def test_queued_jobs_run_earliest_deadline_first(tiny):
    sched, started, go, results, threads = _scheduler_with_blocker(tiny)
    now = time.monotonic()
    for name, budget in (("c", 30.0), ("a", 10.0), ("b", 20.0)):
        job = Job(Request(PROMPT, budget=budget, max_new_tokens=2), release=now, id=name)
        t = threading.Thread(target=lambda j=job: results.__setitem__(j.id, sched.run(j)))
        t.start()
        threads.append(t)
    while sched.pending < 3:
        time.sleep(0.005)
    go.set()
    for t in threads:
        t.join(20)
    assert started == ["blocker", "a", "b", "c"]
    assert all(r.outcome is Outcome.COMPLETED for r in results.values())


def test_a_queued_job_whose_deadline_passes_is_answered_at_once(tiny):
    sched, started, go, results, threads = _scheduler_with_blocker(tiny)
    t0 = time.monotonic()
    r = sched.run(Job(Request(PROMPT, budget=0.2, max_new_tokens=2), id="short"))
    waited = time.monotonic() - t0
    go.set()
    threads[0].join(20)
    assert r.outcome is Outcome.KILLED and "while the job waited in the queue" in r.message
    assert waited < 0.5  # answered at its deadline, not when the blocker finished
    assert "short" not in started


def test_a_full_queue_refuses_more_jobs(tiny):
    sched, started, go, results, threads = _scheduler_with_blocker(tiny, max_pending=1)
    t = threading.Thread(target=lambda: results.__setitem__("q", sched.run(Job(Request(PROMPT, budget=30, max_new_tokens=2), id="q"))))
    t.start()
    while sched.pending < 1:
        time.sleep(0.005)
    try:
        sched.run(Job(Request(PROMPT, budget=30, max_new_tokens=2), id="over"))
        raise AssertionError("a full queue accepted a job")
    except QueueFull as exc:
        assert "queue is full" in str(exc)
    finally:
        go.set()
        t.join(20)
        threads[0].join(20)
    assert results["q"].outcome is Outcome.COMPLETED


# --- admission ------------------------------------------------------------------------------------
def test_reservations_admit_one_running_plus_max_pending_and_a_released_place_is_free_again(tiny):
    sched = Scheduler(make_engine(tiny), max_pending=1)
    first, second = sched.reserve(), sched.reserve()
    try:
        sched.reserve()
        raise AssertionError("a third place was admitted with max_pending=1")
    except QueueFull as exc:
        assert str(exc) == "the queue is full (1 goals waiting)"
    first.release()
    first.release()  # again: nothing more is freed
    assert sched.admitted == 1
    sched.reserve()
    assert sched.admitted == 2 and not second.released


def test_a_reservation_never_handed_over_expires_but_a_handed_over_one_does_not(tiny):
    sched = Scheduler(make_engine(tiny), max_pending=1, reservation_timeout=0.05)
    lost, kept = sched.reserve(), sched.reserve()
    kept.hand_over()
    time.sleep(0.1)
    assert sched.admitted == 1  # the hand-over that never came freed its place
    sched.reserve()
    try:
        sched.reserve()
        raise AssertionError("a handed-over place expired")
    except QueueFull:
        pass
    assert not lost.released  # expired, not released: a late hand-over takes its place back
    lost.hand_over()
    assert sched.admitted == 3


def test_a_place_reserved_under_a_key_is_claimed_by_it_and_a_goal_whose_place_is_gone_still_gets_one(tiny):
    sched = Scheduler(make_engine(tiny), max_pending=0)
    r = sched.reserve(key="goal-a")
    assert sched.claim("goal-a") is r and r.handed_over
    # Accepted elsewhere but its place is gone (expired): it must be answered, so it gets one over the limit.
    late = sched.claim("goal-b")
    assert late.handed_over and sched.admitted == 2


def test_a_job_runs_in_its_reserved_place_and_frees_it_with_its_result(tiny):
    sched = Scheduler(make_engine(tiny), max_pending=0)  # room for the running job only
    place = sched.reserve()
    r = sched.run(Job(Request(PROMPT, budget=30, max_new_tokens=2), reservation=place))
    assert r.outcome is Outcome.COMPLETED and place.released and sched.admitted == 0
    # Without a reservation run() takes a place itself, and refuses when there is none.
    sched.reserve()
    try:
        sched.run(Job(Request(PROMPT, budget=30, max_new_tokens=2)))
        raise AssertionError("run() without a place ran")
    except QueueFull:
        pass


def test_a_job_that_cannot_be_useful_is_answered_infeasible_at_once_not_after_the_queue(tiny):
    # Claimed prefill of 2 s: a 1 s budget is infeasible whatever waits in front of it.
    engine = BudgetedEngine(Estimator(tiny, slow_time_model(step=0.02, prefill=2.0)), learn_online=False)
    sched, started, go, results, threads = _scheduler_with_blocker(tiny, max_pending=1, engine=engine)
    try:
        req = Request(PROMPT, budget=1.0, max_new_tokens=8)
        place = sched.reserve()
        t0 = time.monotonic()
        r = sched.run(Job(req, id="hopeless", length=LengthEstimate(8, 8), prompt_ids=engine.estimator.encode(req),
                          reservation=place))
        answered = time.monotonic() - t0
        assert r.outcome is Outcome.INFEASIBLE and r.generated_tokens == 0
        assert r.message.startswith("infeasible: prefill alone exceeds the budget")
        assert answered < 0.5 and "hopeless" not in started  # not left to wait for its deadline in the queue
        assert place.released
        # So is one whose answer format gives its length (nothing predicted), its plan handed on as generate() does.
        planned = []
        req = Request(PROMPT, budget=1.0, choices=["kitchen", "hall"])
        r = sched.run(Job(req, id="hopeless choice", prompt_ids=engine.estimator.encode(req), on_plan=planned.append))
        assert r.outcome is Outcome.INFEASIBLE and "hopeless choice" not in started
        assert len(planned) == 1 and not planned[0].plan.useful_fits
    finally:
        go.set()
        threads[0].join(20)
    assert results["blocker"].outcome is Outcome.COMPLETED
