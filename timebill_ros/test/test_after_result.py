"""What a goal's end owes after its result (timebill_ros/after_result.py): done later, in order,
never lost at shutdown, one failure not stopping the rest."""
import threading
import time

from timebill_ros.after_result import AfterResult


def test_work_is_done_after_the_result_has_had_time_to_leave_not_on_its_way():
    done = threading.Event()
    after = AfterResult(on_error=lambda why: None)
    t0 = time.monotonic()
    after.later(done.set)
    assert not done.is_set()  # handed over, not done on the caller's thread
    assert done.wait(2.0)
    assert time.monotonic() - t0 >= AfterResult.DELAY


def test_drain_returns_once_everything_handed_over_is_done_in_order():
    seen = []
    after = AfterResult(on_error=lambda why: None)
    for i in range(5):
        after.later(lambda i=i: seen.append(i))
    assert after.drain(timeout=2.0)
    assert seen == [0, 1, 2, 3, 4]


def test_a_failing_piece_of_work_is_reported_and_the_next_one_still_runs():
    errors, seen = [], []
    after = AfterResult(on_error=errors.append)

    def broken():
        raise RuntimeError("the context is gone")

    after.later(broken)
    after.later(lambda: seen.append("report"))
    assert after.drain(timeout=2.0)
    assert seen == ["report"]
    assert len(errors) == 1 and "RuntimeError: the context is gone" in errors[0]


def test_drain_says_when_the_work_did_not_finish_in_time():
    release = threading.Event()
    after = AfterResult(on_error=lambda why: None)
    after.later(lambda: release.wait(5.0))
    assert not after.drain(timeout=0.1)
    release.set()
    assert after.drain(timeout=2.0)
