"""The eviction planner: TimeBill's closed form, clamping, infeasibility, and its two properties."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timebill.planner import optimal_eviction_ratio, plan_eviction, tokens_that_fit
from timebill.time_model import TimeModel, kept_positions

# Roughly SmolLM2-135M on 2 CPU cores (notes: cpu-llm-stack).
CPU = TimeModel(a=2.0e-7, b=1.4e-3, c=0.02, p=4.75e-6, q=0.041)


def brute_force_ratio(tm, n, nw, budget, t_pred=0.0, steps=20000):
    """The smallest eviction_ratio on a fine grid whose worst case fits (continuous cache length)."""
    for i in range(steps + 1):
        a = i / steps
        kv = (1 - a) * n
        t = t_pred + tm.prefill(n) + sum(tm.decode_step(kv + j) for j in range(nw - 1))
        if t <= budget:
            return a
    return math.inf


@pytest.mark.parametrize("n,nw,budget", [(2000, 64, 6.5), (1000, 100, 5.9), (3000, 32, 7.5)])
def test_closed_form_matches_a_brute_force_search(n, nw, budget):
    assert optimal_eviction_ratio(CPU, n, nw, budget) == pytest.approx(brute_force_ratio(CPU, n, nw, budget), abs=1e-3)


def test_generous_budget_evicts_nothing():
    plan = plan_eviction(CPU, 500, 50, 100, budget=60.0)
    assert plan.eviction_ratio == 0.0 and plan.feasible and plan.reason == ""


def test_ratio_is_clamped_to_max_eviction_ratio_and_reported_infeasible_when_the_bound_does_not_fit():
    plan = plan_eviction(CPU, 2000, 50, 256, budget=6.0, max_eviction_ratio=0.9)
    assert plan.eviction_ratio == pytest.approx(0.9)
    assert not plan.feasible and "bound is too long" in plan.reason
    assert plan.predicted_worst_case > 6.0


def test_prefill_alone_over_budget_is_infeasible_with_that_reason():
    plan = plan_eviction(CPU, 4000, 10, 20, budget=1.0)
    assert not plan.feasible and not plan.expected_fits
    assert "prefill alone exceeds the budget" in plan.reason


def test_predictor_time_counts_against_the_budget():
    without = plan_eviction(CPU, 2000, 32, 64, budget=6.5)
    with_pred = plan_eviction(CPU, 2000, 32, 64, budget=6.5, predictor_time=0.2)
    assert 0.0 < without.eviction_ratio < with_pred.eviction_ratio < 0.95
    assert with_pred.feasible
    assert with_pred.predicted_worst_case == pytest.approx(0.2 + CPU.end_to_end(2000, 64, with_pred.eviction_ratio))


def test_short_prompts_that_cannot_be_compressed_plan_no_eviction():
    plan = plan_eviction(CPU, 10, 5, 50, budget=0.5, press_applies=False)
    assert plan.eviction_ratio == 0.0


def test_fixed_ratio_is_taken_as_given():
    plan = plan_eviction(CPU, 1000, 40, 80, budget=100.0, fixed_eviction_ratio=0.75)
    assert plan.eviction_ratio == 0.75 and plan.cached_tokens == kept_positions(1000, 0.75)


jobs = st.tuples(
    st.integers(min_value=16, max_value=8000),   # prompt tokens
    st.integers(min_value=1, max_value=512),     # bound
    st.floats(min_value=0.0, max_value=0.5),     # predictor time
    st.floats(min_value=0.0, max_value=0.95),    # max_eviction_ratio
)


@settings(max_examples=300, deadline=None)
@given(jobs, st.floats(min_value=0.01, max_value=60.0), st.floats(min_value=0.0, max_value=30.0))
def test_eviction_ratio_never_rises_when_the_budget_grows(job, budget, extra):
    n, nw, t_pred, a_max = job
    small = plan_eviction(CPU, n, max(1, nw // 2), nw, budget, max_eviction_ratio=a_max, predictor_time=t_pred)
    large = plan_eviction(CPU, n, max(1, nw // 2), nw, budget + extra, max_eviction_ratio=a_max, predictor_time=t_pred)
    assert large.eviction_ratio <= small.eviction_ratio + 1e-12


@settings(max_examples=300, deadline=None)
@given(jobs, st.floats(min_value=0.01, max_value=60.0))
def test_a_feasible_plan_fits_its_modelled_worst_case_in_the_budget(job, budget):
    n, nw, t_pred, a_max = job
    plan = plan_eviction(CPU, n, max(1, nw // 2), nw, budget, max_eviction_ratio=a_max, predictor_time=t_pred)
    assert 0.0 <= plan.eviction_ratio <= a_max
    if plan.feasible:
        assert t_pred + CPU.end_to_end(n, nw, plan.eviction_ratio) <= budget
    else:
        assert plan.reason
        # Infeasible means even the largest allowed ratio does not fit.
        assert t_pred + CPU.end_to_end(n, nw, a_max) > budget


def test_a_slower_worst_case_model_evicts_more_and_keeps_the_expected_time_on_the_median_model():
    slow = CPU.scaled(1.05, 1.05)
    plain = plan_eviction(CPU, 2000, 40, 64, 7.0)
    margin = plan_eviction(CPU, 2000, 40, 64, 7.0, worst_tm=slow)
    assert plain.feasible and margin.feasible and margin.eviction_ratio > plain.eviction_ratio
    assert margin.predicted_worst_case == pytest.approx(slow.end_to_end(2000, 64, margin.eviction_ratio))
    assert margin.predicted_worst_case <= 7.0
    assert margin.predicted_total == pytest.approx(CPU.end_to_end(2000, 40, margin.eviction_ratio))
    # A budget the median model fits but the slower one cannot, even at max_eviction_ratio.
    tight = plan_eviction(CPU, 2000, 40, 64, CPU.end_to_end(2000, 64, 0.5), worst_tm=slow)
    assert not tight.feasible and tight.eviction_ratio == pytest.approx(0.95) and "64 tokens" in tight.reason


# --- the budget planner (the default): evict only where it changes whether the expected answer fits ---
def budget_plan(n, expected, bound, budget, **kw):
    return plan_eviction(CPU, n, expected, bound, budget, planner="budget", **kw)


def expected_time(n, expected, eviction_ratio, t_pred=0.0):
    return t_pred + CPU.end_to_end(n, expected, eviction_ratio)


def test_budget_planner_evicts_nothing_when_the_expected_answer_fits_without_eviction():
    # The bound (256) does not fit, the expected answer (40) does: the paper evicts, this does not.
    budget = expected_time(2000, 40, 0.0) + 0.01
    assert plan_eviction(CPU, 2000, 40, 256, budget).eviction_ratio == pytest.approx(0.95)
    plan = budget_plan(2000, 40, 256, budget)
    assert plan.eviction_ratio == 0.0 and plan.expected_fits and not plan.feasible and plan.useful_fits


def test_budget_planner_takes_the_smallest_ratio_that_makes_the_expected_answer_fit():
    n, expected = 2000, 64
    budget = (expected_time(n, expected, 0.0) + expected_time(n, expected, 0.95)) / 2  # between: eviction decides
    plan = budget_plan(n, expected, 256, budget)
    assert 0.0 < plan.eviction_ratio < 0.95
    assert plan.expected_fits and plan.predicted_total <= budget
    assert expected_time(n, expected, plan.eviction_ratio - 2.0 / n) > budget  # two positions fewer evicted would not fit
    assert plan.eviction_ratio == pytest.approx(optimal_eviction_ratio(CPU, n, expected, budget), abs=1.5 / n)


def test_budget_planner_does_not_jump_to_max_eviction_ratio_when_no_ratio_makes_the_answer_fit():
    n, expected = 2000, 64
    budget = expected_time(n, expected, 0.95) - 0.05  # even 0.95 leaves the expected answer 50 ms short
    paper = plan_eviction(CPU, n, expected, 256, budget)
    plan = budget_plan(n, expected, 256, budget)
    assert paper.eviction_ratio == pytest.approx(0.95)
    assert plan.eviction_ratio == 0.0 and not plan.expected_fits
    # It still runs (under Kill it stops at the deadline with what fitted) and says how much fits.
    assert plan.useful_fits and 8 <= plan.tokens_that_fit < expected


def test_short_prompts_are_never_evicted_whatever_the_budget():
    # The issue's case: a 46-token question, 256 predicted. Evicting 95 % of it saves 0.4 % of the time.
    n = 46
    saving = expected_time(n, 256, 0.0) - expected_time(n, 256, 0.95)
    assert saving < 0.01 * expected_time(n, 256, 0.0)
    for budget in (1.0, 3.0, expected_time(n, 256, 0.0) - saving / 2, 10.0, 20.0):
        plan = budget_plan(n, 256, 256, budget)
        assert plan.eviction_ratio == 0.0, budget


def test_the_issue_red_cup_question_at_3_s_runs_instead_of_infeasible():
    # 80 prompt tokens, predicted (and bounded) at the 256-token cap: 14 s expected, 3 s budget.
    plan = budget_plan(80, 256, 256, 3.0, predictor_time=0.06, max_new_tokens=256)
    assert not plan.expected_fits and plan.useful_fits and plan.eviction_ratio == 0.0
    assert plan.tokens_that_fit == tokens_that_fit(CPU, 80, 0.0, 3.0, 0.06, 256)
    assert 50 < plan.tokens_that_fit < 256


budget_jobs = st.tuples(
    st.integers(min_value=1, max_value=8000),    # prompt tokens
    st.integers(min_value=1, max_value=512),     # expected tokens
    st.integers(min_value=0, max_value=512),     # bound - expected
    st.floats(min_value=0.0, max_value=0.5),     # predictor time
    st.floats(min_value=0.0, max_value=0.95),    # max_eviction_ratio (or the goal's max_eviction_ratio)
)


@settings(max_examples=400, deadline=None)
@given(budget_jobs, st.floats(min_value=0.01, max_value=60.0), st.floats(min_value=0.0, max_value=30.0))
def test_budget_planner_once_eviction_can_make_the_answer_fit_more_budget_never_evicts_more(job, budget, extra):
    n, expected, more, t_pred, a_max = job
    small = budget_plan(n, expected, expected + more, budget, max_eviction_ratio=a_max, predictor_time=t_pred)
    large = budget_plan(n, expected, expected + more, budget + extra, max_eviction_ratio=a_max, predictor_time=t_pred)
    if expected_time(n, expected, a_max, t_pred) <= budget:
        assert large.eviction_ratio <= small.eviction_ratio + 1e-12
    else:
        # Below that budget no ratio changes the predicted outcome: nothing is evicted.
        assert small.eviction_ratio == 0.0


@settings(max_examples=400, deadline=None)
@given(budget_jobs, st.floats(min_value=0.01, max_value=60.0))
def test_budget_planner_eviction_ratio_is_zero_unless_it_makes_the_expected_answer_fit_and_never_above_the_cap(job, budget):
    n, expected, more, t_pred, a_max = job
    plan = budget_plan(n, expected, expected + more, budget, max_eviction_ratio=a_max, predictor_time=t_pred)
    assert 0.0 <= plan.eviction_ratio <= a_max
    fits_without = expected_time(n, expected, 0.0, t_pred) <= budget
    fits_at_cap = expected_time(n, expected, a_max, t_pred) <= budget
    if fits_without or not fits_at_cap:
        assert plan.eviction_ratio == 0.0  # eviction cannot change the predicted outcome
    if plan.eviction_ratio > 0.0:
        assert plan.expected_fits
    assert plan.expected_fits == (plan.predicted_total <= budget)


@settings(max_examples=300, deadline=None)
@given(budget_jobs, st.floats(min_value=0.01, max_value=60.0), st.sampled_from(["budget", "paper"]),
       st.integers(min_value=1, max_value=512))
def test_tokens_that_fit_is_the_most_the_budget_holds_and_infeasible_means_not_even_the_useful_minimum(
        job, budget, planner, max_new):
    n, expected, more, t_pred, a_max = job
    plan = plan_eviction(CPU, n, expected, expected + more, budget, max_eviction_ratio=a_max, predictor_time=t_pred,
                         planner=planner, min_useful_tokens=8, max_new_tokens=max_new)
    k = plan.tokens_that_fit
    assert 0 <= k <= max_new
    if k > 0:
        assert t_pred + CPU.end_to_end(n, k, plan.eviction_ratio) <= budget
    if k < max_new:
        assert t_pred + CPU.end_to_end(n, k + 1, plan.eviction_ratio) > budget
    # The verdict is the same for both planners: judged without eviction and at the largest allowed ratio.
    useful = min(8, expected, max_new)
    assert plan.useful_fits == any(t_pred + CPU.end_to_end(n, useful, a) <= budget for a in (0.0, a_max))
    assert plan.useful_fits or plan.reason


def test_infeasible_only_when_the_prefill_and_a_minimal_answer_do_not_fit():
    n = 2000
    minimal = CPU.end_to_end(n, 8, 0.95)
    assert budget_plan(n, 200, 256, minimal + 1e-3).useful_fits
    no = budget_plan(n, 200, 256, minimal - 1e-3)
    assert not no.useful_fits and "not even 8 tokens fit" in no.reason
    # A one-word answer is useful in full: 3 expected tokens need only 3 to fit.
    assert budget_plan(n, 3, 16, CPU.end_to_end(n, 3, 0.95) + 1e-3).useful_fits
    assert plan_eviction(CPU, n, 200, 256, minimal + 1e-3, min_useful_tokens=16).useful_fits is False


def test_a_short_answer_that_fits_only_without_eviction_is_not_refused():
    # Eviction costs prefill time of its own (the press scores the cache): for a short answer the
    # largest ratio can fit less than none. Seen on QASPER: 1,500-token prompts at a 2.8 s budget.
    import dataclasses

    tm = dataclasses.replace(CPU, r=4.6e-5, s=0.026)
    n = 1500
    budget = tm.end_to_end(n, 2, 0.0) + 1e-3
    assert tm.end_to_end(n, 2, 0.95) > budget                    # at 0.95 not even 2 tokens fit
    for planner in ("budget", "paper"):
        plan = plan_eviction(tm, n, 30, 32, budget, planner=planner, min_useful_tokens=1)
        assert plan.useful_fits, plan.reason
    plan = plan_eviction(tm, n, 30, 32, budget, min_useful_tokens=8)
    assert not plan.useful_fits and "at eviction ratio 0.00" in plan.reason


def test_paper_planner_is_unchanged_by_the_useful_minimum():
    a = plan_eviction(CPU, 2000, 50, 256, budget=6.0, max_eviction_ratio=0.9)
    b = plan_eviction(CPU, 2000, 50, 256, budget=6.0, max_eviction_ratio=0.9, min_useful_tokens=100)
    assert a.eviction_ratio == b.eviction_ratio == pytest.approx(0.9)


def test_an_unknown_planner_or_a_useless_minimum_is_refused_naming_the_config_key():
    with pytest.raises(ValueError, match="planner 'greedy'.*`planner`"):
        plan_eviction(CPU, 100, 10, 20, 5.0, planner="greedy")
    with pytest.raises(ValueError, match="min_useful_tokens"):
        plan_eviction(CPU, 100, 10, 20, 5.0, min_useful_tokens=0)


# --- what the verdict does to a served job (the tiny test model, a timing model that claims 50 ms a step) ---
PROMPT = "The robot moves to the kitchen and picks up the red cup. " * 6


def served(tiny, expected, **kw):
    from conftest import slow_time_model
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator
    from timebill.length_predictor import ConstantLengthPredictor

    engine = BudgetedEngine(Estimator(tiny, slow_time_model(step=0.05, prefill=0.01), ConstantLengthPredictor(expected), **kw),
                            learn_online=False)  # reject_infeasible: the default (True)
    engine.warm_up()
    return engine


def test_an_answer_too_long_for_the_budget_runs_and_kill_returns_the_part_that_fitted(tiny):
    from timebill.request import Outcome, Request

    # 1,500 tokens: more than the tiny model (a few ms a token here) generates in 0.5 s.
    r = served(tiny, 1500).generate(Request(PROMPT, budget=0.5, max_new_tokens=1500))
    assert not r.plan.expected_fits and r.plan.useful_fits
    assert r.plan.tokens_that_fit == 10  # 0.01 s prefill (1st token) + 9 steps of 0.05 s
    assert r.outcome is Outcome.KILLED and r.stop_reason == "deadline" and r.deadline_met
    # (The tiny model is much faster than this timing model claims, so more than 10 tokens come.)
    assert 0 < r.generated_tokens < 1500 and r.text
    assert "killed at the deadline" in r.message


def test_skip_next_still_lets_such_an_answer_finish_late(tiny):
    from timebill.request import Outcome, Request

    r = served(tiny, 1500).generate(Request(PROMPT, budget=0.5, max_new_tokens=1500, policy="skip_next"))
    assert r.plan.useful_fits and not r.plan.expected_fits
    assert r.outcome is Outcome.COMPLETED and r.generated_tokens == 1500 and not r.deadline_met


def test_infeasible_at_once_when_not_even_the_useful_minimum_fits(tiny):
    from timebill.request import Outcome, Request

    r = served(tiny, 200).generate(Request(PROMPT, budget=0.2, max_new_tokens=200))  # 4 tokens fit, 8 are useful
    assert r.outcome is Outcome.INFEASIBLE and r.generated_tokens == 0
    assert "not even 8 tokens fit" in r.message
    assert r.plan.tokens_that_fit == 4
    # With a smaller useful minimum the same goal runs (killed at the deadline, or done before it on a
    # quiet machine: the tiny model is much faster than this timing model claims).
    r = served(tiny, 200, min_useful_tokens=4).generate(Request(PROMPT, budget=0.2, max_new_tokens=200))
    assert r.outcome in (Outcome.KILLED, Outcome.COMPLETED) and r.generated_tokens > 0


def test_the_configured_planner_and_useful_minimum_reach_the_estimator(tiny, tmp_path):
    from conftest import slow_time_model
    from timebill.config import load_config
    from timebill.runtime import build_estimator

    assert load_config()["planner"] == "score" and load_config()["min_useful_tokens"] == 8  # the shipped YAML
    path = slow_time_model().save(tmp_path / "tm.yaml")
    cfg = load_config(overrides={"time_model": str(path), "length_predictor": "constant", "planner": "paper",
                                 "min_useful_tokens": 3})
    est = build_estimator(cfg, loaded=tiny, progress=False)
    assert est.planner == "paper" and est.min_useful_tokens == 3
    with pytest.raises(ValueError, match="`planner`"):
        build_estimator({**cfg, "planner": "greedy"}, loaded=tiny, progress=False)


def test_a_goals_max_eviction_ratio_caps_the_budget_planner(tiny):
    from timebill.estimator import Estimator
    from timebill.length_predictor import ConstantLengthPredictor
    from timebill.request import Request

    # A model whose decode steps are mostly cache reads: eviction buys a lot here.
    est = Estimator(tiny, TimeModel(a=0.0, b=0.0, c=0.01, p=1e-4, q=1e-3), ConstantLengthPredictor(100))

    def eviction_ratio(budget, cap=None):
        return est.estimate(Request(PROMPT, budget=budget, max_new_tokens=100, max_eviction_ratio=cap)).plan.eviction_ratio

    assert eviction_ratio(2.0) == 0.0                        # fits without eviction
    # The smallest ratio that fits is within the goal's cap (the measured predictor latency moves it a hair).
    assert eviction_ratio(1.7, 0.3) == pytest.approx(eviction_ratio(1.7), abs=1e-3) and 0.0 < eviction_ratio(1.7, 0.3) <= 0.3
    assert eviction_ratio(1.2) > 0.3 and eviction_ratio(1.2, 0.3) == 0.0  # only more than the goal allows would fit: none


def test_the_budget_planner_does_not_evict_where_the_press_costs_more_than_it_saves():
    from timebill.time_model import TimeModel

    cheap = TimeModel(a=1e-7, b=1.3e-3, c=0.01, p=2.8e-6, q=7.1e-3)
    costly = TimeModel(a=1e-7, b=1.3e-3, c=0.01, p=2.8e-6, q=7.1e-3, r=0.0, s=0.2)   # more than 0.95 saves
    budget = cheap.end_to_end(700, 50, 0.0) - 0.02                                      # just too tight
    assert plan_eviction(cheap, 700, 50, 64, budget, planner="budget").eviction_ratio > 0
    plan = plan_eviction(costly, 700, 50, 64, budget, planner="budget")
    assert plan.eviction_ratio == 0.0 and not plan.expected_fits
    # where eviction does pay, the ratio chosen covers its overhead too
    mid = TimeModel(a=1e-7, b=1.3e-3, c=0.01, p=2.8e-6, q=7.1e-3, r=0.0, s=0.03)
    budget = mid.end_to_end(700, 50, 0.0) - 0.02
    plan = plan_eviction(mid, 700, 50, 64, budget, planner="budget")
    assert plan.eviction_ratio > 0 and mid.end_to_end(700, 50, plan.eviction_ratio) <= budget
