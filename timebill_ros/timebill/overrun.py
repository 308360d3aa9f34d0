"""The Skip-Next rule across jobs, in one place.

Under Skip-Next an overrunning job (one that completes after its deadline) is let finish, and
every job released before the moment it ended and still waiting is skipped, never run (the
paper's Skip-Next). The live scheduler, the batch runner (``timebill.jobs``) and the evaluation's
replay of recorded runs (``timebill.evaluation.schedule``) all decide with ``SkipNext``; they
differ only in their clock (monotonic, virtual or replayed seconds), which the rule does not care
about as long as releases and ends are on the same one.
"""
from __future__ import annotations

from .request import Outcome, Policy

SKIPPED_MESSAGE = "skipped: an earlier Skip-Next job overran its deadline"


def overran(policy: Policy | str, outcome: Outcome, deadline_met: bool) -> bool:
    """Whether a finished job makes the jobs waiting behind it skipped: a Skip-Next job that
    completed late. A Kill job stops at its deadline, and a job that did not complete (killed,
    canceled, failed) held nobody up past its deadline by finishing."""
    return Policy.parse(policy) is Policy.SKIP_NEXT and outcome is Outcome.COMPLETED and not deadline_met


class SkipNext:
    """Which waiting jobs an overrun skips. Not thread-safe: the caller holds its own lock."""

    def __init__(self) -> None:
        self._skip_released_before = float("-inf")

    def skips(self, release: float) -> bool:
        """Whether a job released at ``release`` that has not started yet is skipped."""
        return release < self._skip_released_before

    def job_ended(self, policy: Policy | str, outcome: Outcome, deadline_met: bool, at: float) -> None:
        """Record a job that ended at ``at``; call it before the next job may start."""
        if overran(policy, outcome, deadline_met):
            self._skip_released_before = max(self._skip_released_before, at)
