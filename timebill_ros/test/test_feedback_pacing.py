"""When a running goal's tokens leave as feedback (timebill/feedback_pacing.py)."""
from __future__ import annotations

import math

import pytest

from timebill.config import load_config
from timebill.feedback_pacing import FeedbackPacing


def test_the_first_token_leaves_at_once_and_later_ones_wait_for_the_period():
    p = FeedbackPacing(every_tokens=1, period=0.05)
    assert p.due(1, math.inf)           # nothing sent yet
    assert not p.due(3, 0.02)           # tokens pending, but the previous message is 20 ms old
    assert p.due(3, 0.05)


def test_a_message_needs_its_tokens_as_well_as_its_period():
    p = FeedbackPacing(every_tokens=8, period=0.0)
    assert not p.due(7, math.inf)
    assert p.due(8, 0.0)


def test_period_zero_sends_every_token():
    p = FeedbackPacing(every_tokens=1, period=0.0)
    assert all(p.due(1, 0.0) for _ in range(5))


def test_the_shipped_configuration_coalesces_at_twenty_messages_a_second():
    assert FeedbackPacing.of_config(load_config()) == FeedbackPacing(every_tokens=1, period=0.05)


@pytest.mark.parametrize("every, period, named", [(0, 0.05, "feedback_every_n_tokens"), (1, -0.1, "feedback_period"),
                                                  (1, float("nan"), "feedback_period")])
def test_a_pacing_that_cannot_be_meant_is_refused_by_name(every, period, named):
    with pytest.raises(ValueError, match=named):
        FeedbackPacing(every, period)
