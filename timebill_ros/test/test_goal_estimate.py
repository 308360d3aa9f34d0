"""The one estimate type a goal is told (timebill/goal_estimate.py), without ROS: made of a real
Estimator plan on the tiny model, and re-made while the goal runs from the tokens it has generated."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from conftest import slow_time_model
from timebill.estimator import Estimator
from timebill.goal_estimate import GoalEstimate
from timebill.length_distribution import LengthDistribution
from timebill.length_predictor import ConstantLengthPredictor, LengthEstimate
from timebill.request import Request

STEP = 0.05  # seconds a decoding step under slow_time_model (the prompt's cache does not slow it: p = 0)


@dataclass
class SpreadPredictor:
    """A length predictor with a distribution: half the answers short, half long."""

    name: str = "spread"

    def predict(self, prompt_ids, max_new_tokens: int) -> LengthEstimate:
        dist = LengthDistribution.of((10, 20, 60, 100), (0.3, 0.2, 0.3, 0.2))
        return LengthEstimate(predicted_tokens=30, predicted_tokens_bound=min(100, max_new_tokens), distribution=dist)


def _estimator(tiny, predictor, **kw) -> Estimator:
    return Estimator(tiny, slow_time_model(STEP), predictor, length_control=False, **kw)


def test_of_estimate_tells_the_goal_what_the_plan_says(tiny):
    est = _estimator(tiny, SpreadPredictor()).estimate(Request("Where is the red cup kept?", budget=4.0,
                                                               max_new_tokens=100))
    v = GoalEstimate.of_estimate(est, "local")
    p = est.plan
    assert v.source == "local" and v.prompt_tokens == p.prompt_tokens == len(est.prompt_ids)
    assert (v.predicted_tokens, v.predicted_tokens_bound) == (est.length.predicted_tokens, est.length.predicted_tokens_bound)
    assert (v.predicted_tokens, v.predicted_tokens_bound) == (p.predicted_tokens, p.predicted_tokens_bound)
    assert (v.eviction_ratio, v.predicted_prefill, v.predicted_total, v.predicted_worst_case) == (
        p.eviction_ratio, p.predicted_prefill, p.predicted_total, p.predicted_worst_case)
    assert (v.feasible, v.reason, v.tokens_that_fit) == (p.feasible, p.reason, p.tokens_that_fit)
    assert (v.completion_probability, v.expected_time, v.p90_time) == (p.completion_probability, p.expected_time, p.p90_time)
    assert 0 < v.completion_probability < 1            # some of the long answers do not fit 4 s
    assert v.latency == est.predictor_latency and v.distribution == est.length.distribution
    assert v.answer_words == 0 and v.limited_ids == () and v.answer_format == ""
    # Planned again from it, the length is not predicted again.
    assert v.length() == est.length


def test_an_estimate_with_a_word_limit_carries_the_limited_prompts_ids_to_run(tiny):
    # A goal is tokenized once: the limited prompt's ids travel with the estimate (and, through
    # the translation, with the predictor's response) and stay with it while it runs.
    from timebill.time_model import TimeModel

    est = Estimator(tiny, TimeModel(a=0.0, b=0.0, c=0.01, p=0.0, q=0.01, model="x"), ConstantLengthPredictor(expected=100))
    req = Request("Where is the red cup usually kept?", budget=0.5, max_new_tokens=128)
    limited = est.estimate(req)
    assert limited.plan.answer_words > 0
    v = GoalEstimate.of_estimate(limited, "local")
    assert v.limited_ids == tuple(limited.prompt_ids) and len(v.limited_ids) == v.prompt_tokens
    assert v.running(est.time_model, 3, 0.2, 0.5, 128).limited_ids == v.limited_ids
    plain = GoalEstimate.of_estimate(est.estimate(Request(**{**req.__dict__, "budget": 60.0})), "local")
    assert plain.answer_words == 0 and plain.limited_ids == ()


def test_remaining_time_uses_the_bound_past_the_expected_length(tiny_time_model):
    tm = tiny_time_model
    v = GoalEstimate(source="local", prompt_tokens=100, predicted_tokens=10, predicted_tokens_bound=50, eviction_ratio=0.0,
                     predicted_prefill=0.0,
                     predicted_total=0.0, predicted_worst_case=0.0, feasible=True, reason="")
    exp_left, worst_left = v.remaining(tm, 4)
    assert exp_left == pytest.approx(tm.decode(103, 7)) and worst_left == pytest.approx(tm.decode(103, 47))
    past, _ = v.remaining(tm, 20)
    assert past == pytest.approx(tm.decode(119, 31))
    # Evicted positions are not decoded against.
    half = GoalEstimate(**{**v.__dict__, "eviction_ratio": 0.5})
    assert half.remaining(tm, 4)[0] == pytest.approx(tm.decode(53, 7))


def test_a_running_estimate_counts_what_is_left_from_now(tiny):
    e = _estimator(tiny, ConstantLengthPredictor(expected=40))
    est = e.estimate(Request("Name three fruits.", budget=10.0, max_new_tokens=64))
    v = GoalEstimate.of_estimate(est, "prefill")
    tm = e.time_model
    assert v.feasible and v.completion_probability == 1.0
    early = v.running(tm, 10, 0.6, 10.0, 64)
    late = v.running(tm, 30, 1.6, 10.0, 64)
    # 40 - 10 tokens left: 30 steps; the worst case runs to the bound of 64.
    assert early.predicted_total == pytest.approx(30 * STEP) and early.predicted_worst_case == pytest.approx(54 * STEP)
    assert early.expected_time == pytest.approx(30 * STEP) and early.p90_time == pytest.approx(30 * STEP)
    # As the answer runs its expected time left falls.
    assert late.predicted_total < early.predicted_total and late.expected_time < early.expected_time
    assert early.feasible and early.reason == "" and early.completion_probability == 1.0
    # The plan it runs with stays: the goal keeps running with it.
    for field in ("source", "prompt_tokens", "predicted_tokens", "predicted_tokens_bound", "eviction_ratio",
                  "predicted_prefill", "tokens_that_fit", "answer_words", "limited_ids", "distribution", "answer_format"):
        assert getattr(early, field) == getattr(v, field), field


def test_a_running_estimate_is_infeasible_with_a_reason_when_the_worst_case_no_longer_fits(tiny):
    e = _estimator(tiny, ConstantLengthPredictor(expected=40))
    v = GoalEstimate.of_estimate(e.estimate(Request("Name three fruits.", budget=10.0, max_new_tokens=64)), "local")
    # 20 tokens in 9.2 s (the machine was slow): 44 more in the worst case need 2.2 s, 0.8 s are
    # left, and the 20 expected more need 1 s.
    late = v.running(e.time_model, 20, 9.2, 10.0, 64)
    assert not late.feasible
    assert late.reason == f"44 more tokens in the worst case need {44 * STEP:.3f} s; 0.800 s left"
    assert late.completion_probability == 0.0
    # Past its deadline the time left is said as none, not negative.
    assert v.running(e.time_model, 20, 12.0, 10.0, 64).reason.endswith("; 0.000 s left")


def test_a_running_estimate_conditions_the_length_on_the_tokens_generated(tiny):
    # 4 s hold about 80 tokens: the 100-token answers miss. After 25 tokens without an end the short
    # answers (half of them) are ruled out, so the answer is less likely to complete, and later.
    e = _estimator(tiny, SpreadPredictor())
    v = GoalEstimate.of_estimate(e.estimate(Request("Where is the red cup kept?", budget=4.0, max_new_tokens=100)), "local")
    tm = e.time_model
    running = v.running(tm, 25, 25 * STEP, 4.0, 100)
    dist = v.distribution
    assert v.completion_probability == pytest.approx(dist.p_at_most(80), abs=0.02)
    assert running.completion_probability < v.completion_probability - 0.05
    assert running.completion_probability == pytest.approx(dist.given_at_least(25).p_at_most(80), abs=0.02)
    # The expected answer left is longer than the unconditioned one says (E[N | N >= 25] - 25 > E[N] - 25).
    unconditioned_left = (dist.mean() - 25) * STEP
    assert running.expected_time > unconditioned_left
    # Once the budget holds the token limit, it is sure to complete.
    assert v.running(tm, 25, 25 * STEP, 60.0, 100).completion_probability == 1.0
