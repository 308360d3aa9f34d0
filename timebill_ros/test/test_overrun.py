"""The Skip-Next rule itself (timebill.overrun), which the scheduler, the batch runner and the
evaluation's replay all apply."""
import pytest

from timebill.overrun import SkipNext, overran
from timebill.request import Outcome, Policy


def test_only_a_skip_next_job_that_completed_late_is_an_overrun():
    assert overran(Policy.SKIP_NEXT, Outcome.COMPLETED, deadline_met=False)
    assert overran("skip-next", Outcome.COMPLETED, deadline_met=False)  # as a goal or a config spells it
    assert not overran(Policy.SKIP_NEXT, Outcome.COMPLETED, deadline_met=True)
    assert not overran(Policy.KILL, Outcome.COMPLETED, deadline_met=False)
    for ended_early in (Outcome.KILLED, Outcome.CANCELED, Outcome.FAILED, Outcome.SKIPPED):
        assert not overran(Policy.SKIP_NEXT, ended_early, deadline_met=False)


def test_an_overrun_skips_the_jobs_released_before_it_ended_and_no_later_ones():
    rule = SkipNext()
    assert not rule.skips(0.0)
    rule.job_ended(Policy.SKIP_NEXT, Outcome.COMPLETED, deadline_met=False, at=2.5)
    assert rule.skips(1.0) and rule.skips(2.499)
    assert not rule.skips(2.5), "a job released the moment the overrun ended waits for nobody"
    assert not rule.skips(3.0)


@pytest.mark.parametrize("policy,outcome,met", [(Policy.SKIP_NEXT, Outcome.COMPLETED, True),
                                                 (Policy.KILL, Outcome.COMPLETED, False),
                                                 (Policy.SKIP_NEXT, Outcome.CANCELED, False)])
def test_a_job_that_did_not_overrun_skips_nobody(policy, outcome, met):
    rule = SkipNext()
    rule.job_ended(policy, outcome, deadline_met=met, at=10.0)
    assert not rule.skips(5.0)


def test_a_later_shorter_overrun_does_not_shrink_the_skipped_window():
    # Two overruns reported out of order (the scheduler reports in the order jobs end, but the
    # window must never lose a job already condemned by an earlier, longer overrun).
    rule = SkipNext()
    rule.job_ended(Policy.SKIP_NEXT, Outcome.COMPLETED, deadline_met=False, at=4.0)
    rule.job_ended(Policy.SKIP_NEXT, Outcome.COMPLETED, deadline_met=False, at=3.0)
    assert rule.skips(3.5)
