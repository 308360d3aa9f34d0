"""Sequences of jobs on one model: Kill, Skip-Next, queue order and expiry."""
import threading
import time

from conftest import slow_time_model
from timebill.engine import BudgetedEngine
from timebill.estimator import Estimator
from timebill.jobs import Job, QueueFull, Scheduler, run_sequence
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


def _scheduler_with_blocker(tiny, max_pending=8):
    """A scheduler busy with a job that runs until released, so others queue behind it."""
    started, go = [], threading.Event()
    sched = Scheduler(make_engine(tiny), max_pending=max_pending, on_start=lambda job: started.append(job.id))

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
