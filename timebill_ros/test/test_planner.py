"""The eviction planner: TimeBill's closed form, clamping, infeasibility, and its two properties."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timebill.planner import optimal_alpha, plan_eviction
from timebill.time_model import TimeModel, kept_positions

# Roughly SmolLM2-135M on 2 CPU cores (notes: cpu-llm-stack).
CPU = TimeModel(a=2.0e-7, b=1.4e-3, c=0.02, p=4.75e-6, q=0.041)


def brute_force_alpha(tm, n, nw, budget, t_pred=0.0, steps=20000):
    """The smallest alpha on a fine grid whose worst case fits (continuous cache length)."""
    for i in range(steps + 1):
        a = i / steps
        kv = (1 - a) * n
        t = t_pred + tm.prefill(n) + sum(tm.decode_step(kv + j) for j in range(nw - 1))
        if t <= budget:
            return a
    return math.inf


@pytest.mark.parametrize("n,nw,budget", [(2000, 64, 6.5), (1000, 100, 5.9), (3000, 32, 7.5)])
def test_closed_form_matches_a_brute_force_search(n, nw, budget):
    assert optimal_alpha(CPU, n, nw, budget) == pytest.approx(brute_force_alpha(CPU, n, nw, budget), abs=1e-3)


def test_generous_budget_evicts_nothing():
    plan = plan_eviction(CPU, 500, 50, 100, budget=60.0)
    assert plan.alpha == 0.0 and plan.feasible and plan.reason == ""


def test_ratio_is_clamped_to_alpha_max_and_reported_infeasible_when_the_bound_does_not_fit():
    plan = plan_eviction(CPU, 2000, 50, 256, budget=6.0, alpha_max=0.9)
    assert plan.alpha == pytest.approx(0.9)
    assert not plan.feasible and "bound is too long" in plan.reason
    assert plan.predicted_worst_case > 6.0


def test_prefill_alone_over_budget_is_infeasible_with_that_reason():
    plan = plan_eviction(CPU, 4000, 10, 20, budget=1.0)
    assert not plan.feasible and not plan.expected_fits
    assert "prefill alone exceeds the budget" in plan.reason


def test_predictor_time_counts_against_the_budget():
    without = plan_eviction(CPU, 2000, 32, 64, budget=6.5)
    with_pred = plan_eviction(CPU, 2000, 32, 64, budget=6.5, predictor_time=0.2)
    assert 0.0 < without.alpha < with_pred.alpha < 0.95
    assert with_pred.feasible
    assert with_pred.predicted_worst_case == pytest.approx(0.2 + CPU.end_to_end(2000, 64, with_pred.alpha))


def test_short_prompts_that_cannot_be_compressed_plan_no_eviction():
    plan = plan_eviction(CPU, 10, 5, 50, budget=0.5, press_applies=False)
    assert plan.alpha == 0.0


def test_fixed_ratio_is_taken_as_given():
    plan = plan_eviction(CPU, 1000, 40, 80, budget=100.0, fixed_alpha=0.75)
    assert plan.alpha == 0.75 and plan.cached_tokens == kept_positions(1000, 0.75)


jobs = st.tuples(
    st.integers(min_value=16, max_value=8000),   # prompt tokens
    st.integers(min_value=1, max_value=512),     # bound
    st.floats(min_value=0.0, max_value=0.5),     # predictor time
    st.floats(min_value=0.0, max_value=0.95),    # alpha_max
)


@settings(max_examples=300, deadline=None)
@given(jobs, st.floats(min_value=0.01, max_value=60.0), st.floats(min_value=0.0, max_value=30.0))
def test_alpha_never_rises_when_the_budget_grows(job, budget, extra):
    n, nw, t_pred, a_max = job
    small = plan_eviction(CPU, n, max(1, nw // 2), nw, budget, alpha_max=a_max, predictor_time=t_pred)
    large = plan_eviction(CPU, n, max(1, nw // 2), nw, budget + extra, alpha_max=a_max, predictor_time=t_pred)
    assert large.alpha <= small.alpha + 1e-12


@settings(max_examples=300, deadline=None)
@given(jobs, st.floats(min_value=0.01, max_value=60.0))
def test_a_feasible_plan_fits_its_modelled_worst_case_in_the_budget(job, budget):
    n, nw, t_pred, a_max = job
    plan = plan_eviction(CPU, n, max(1, nw // 2), nw, budget, alpha_max=a_max, predictor_time=t_pred)
    assert 0.0 <= plan.alpha <= a_max
    if plan.feasible:
        assert t_pred + CPU.end_to_end(n, nw, plan.alpha) <= budget
    else:
        assert plan.reason
        # Infeasible means even the largest allowed ratio does not fit.
        assert t_pred + CPU.end_to_end(n, nw, a_max) > budget


def test_a_slower_worst_case_model_evicts_more_and_keeps_the_expected_time_on_the_median_model():
    slow = CPU.scaled(1.05, 1.05)
    plain = plan_eviction(CPU, 2000, 40, 64, 7.0)
    margin = plan_eviction(CPU, 2000, 40, 64, 7.0, worst_tm=slow)
    assert plain.feasible and margin.feasible and margin.alpha > plain.alpha
    assert margin.predicted_worst_case == pytest.approx(slow.end_to_end(2000, 64, margin.alpha)) and margin.predicted_worst_case <= 7.0
    assert margin.predicted_total == pytest.approx(CPU.end_to_end(2000, 40, margin.alpha))
    # A budget the median model fits but the slower one cannot, even at alpha_max.
    tight = plan_eviction(CPU, 2000, 40, 64, CPU.end_to_end(2000, 64, 0.5), worst_tm=slow)
    assert not tight.feasible and tight.alpha == pytest.approx(0.95) and "64 tokens" in tight.reason
