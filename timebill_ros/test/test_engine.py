"""Budgeted generation: streaming, stopping, deadlines, presses, bad input.

Tests of the decoding loop run on both serving paths (``served``): the torch backend on the tiny
test model, and the llamacpp backend (the default for GGUF models) on the real embedded model.
"""
import dataclasses
import math
import statistics
import threading
import time
from typing import NamedTuple

import pytest

from conftest import slow_time_model
from timebill.engine import BudgetedEngine
from timebill.estimator import Estimator
from timebill.presses import UnknownPressError
from timebill.request import InvalidRequest, Outcome, Request
from timebill.time_model import kept_positions

PROMPT = "The robot moves to the kitchen and picks up the red cup. " * 6


class Served(NamedTuple):
    model: object
    time_model: object
    backend: object


@pytest.fixture(params=["torch", "llamacpp"])
def served(request, tiny, tiny_time_model):
    """A model with its timing model and serving path: tiny on torch, or embedded on llama.cpp."""
    if request.param == "torch":
        return Served(tiny, tiny_time_model, "torch")
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: scripts/setup.sh builds it")
    return Served(*(request.getfixturevalue(f) for f in ("embedded", "embedded_fast_time_model", "fast_backend")))


def engine_for(model, tm, backend="torch", **kw):
    reject = kw.pop("reject_infeasible", True)
    engine = BudgetedEngine(Estimator(model, tm, **kw), reject_infeasible=reject, learn_online=False, backend=backend)
    engine.warm_up()  # as build_engine does: first passes after loading are slow
    return engine


def test_tokens_stream_in_order_and_concatenate_to_the_result(served):
    events = []
    r = engine_for(*served).generate(Request(PROMPT, budget=30, max_new_tokens=40), on_token=events.append)
    assert r.outcome is Outcome.COMPLETED and r.deadline_met and r.message == ""
    assert [e.index for e in events] == list(range(r.generated_tokens))
    assert "".join(e.text for e in events) == r.text
    assert [e.elapsed for e in events] == sorted(e.elapsed for e in events)
    assert r.generated_tokens == 40 and r.stop_reason == "max_tokens"
    assert len(r.step_times) == 39  # the first token comes from the prefill
    assert r.prompt_tokens == len(served.model.encode_chat(PROMPT))



def test_a_callback_that_reads_the_text_now_and_then_gets_the_text_of_the_tokens_between(served):
    # Detokenizing is most of what a token costs a callback, so the text is made only when read:
    # the generation node reads it when a feedback message leaves. What it reads adds up to the
    # answer all the same.
    pieces = []

    def every_fifth(ev):
        if ev.index % 5 == 4:
            pieces.append(ev.text)
            assert ev.text == pieces[-1]  # read again: the same text, not taken twice

    r = engine_for(*served).generate(Request(PROMPT, budget=30, max_new_tokens=23), on_token=every_fifth)
    assert r.generated_tokens == 23 and len(pieces) == 4
    assert r.text.startswith("".join(pieces)) and len("".join(pieces)) > len(r.text) // 2

def test_the_result_says_what_the_time_model_predicts_for_the_length_really_generated(tiny, tiny_time_model):
    # With the constant predictor's 40 tokens and a cap of 40, the answer is the predicted length:
    # the time model's figure for it is the plan's own prediction.
    from timebill.length_predictor import ConstantLengthPredictor

    engine = engine_for(tiny, tiny_time_model, length_predictor=ConstantLengthPredictor(expected=40))
    r = engine.generate(Request(PROMPT, budget=30, max_new_tokens=40))
    assert r.stop_reason == "max_tokens" and r.generated_tokens == 40
    assert r.time_given_length == pytest.approx(r.planned_at + r.plan.predicted_total)
    assert 0 <= r.planned_at < 0.1  # no queueing: planned at once
    shorter = engine.generate(Request(PROMPT, budget=30, max_new_tokens=10))
    assert 0 < shorter.time_given_length < r.time_given_length


def test_stops_at_end_of_turn(served):
    # Declare the token the model emits third as end-of-turn: greedy decoding is deterministic.
    model, tm, backend = served
    tokens = []
    engine_for(*served).generate(Request(PROMPT, budget=30, max_new_tokens=5), on_token=lambda ev: tokens.append(ev.token_id))
    stopper = dataclasses.replace(model, eos_token_ids=[tokens[2]])
    r = engine_for(stopper, tm, backend).generate(Request(PROMPT, budget=30, max_new_tokens=50))
    assert r.stop_reason == "eos" and r.outcome is Outcome.COMPLETED
    assert r.generated_tokens == tokens.index(tokens[2])  # stops at its first appearance


def test_kill_never_starts_a_step_the_time_model_says_would_end_after_the_deadline(served):
    # Claims 50 ms a step; the tiny model takes ~1 ms, llama.cpp ~10 ms on the embedded model.
    tm = slow_time_model(step=0.05, prefill=0.01)
    budget = 0.4 if served.backend == "torch" else 1.0  # the embedded model's real prefill takes ~0.1 s
    # More tokens than fit in the budget at any real speed (the tiny model makes ~1,400 a second).
    # The prompt as sent: length control would ask the embedded model for an answer short enough
    # to end before the deadline (this timing model claims it is 5x slower than it is).
    r = engine_for(served.model, tm, served.backend, reject_infeasible=False).generate(
        Request(PROMPT, budget=budget, max_new_tokens=1900, length_control=False))
    assert r.outcome is Outcome.KILLED and r.stop_reason == "deadline"
    assert r.deadline_met and r.total_time <= budget
    assert 0 < r.generated_tokens < 1900 and r.text
    # It went on while one more modelled step fitted, and stopped because the next would have crossed
    # the deadline. The decision is taken after the last token is emitted (a few microseconds
    # later), so it is bracketed by the previous token's time and the result's time.
    assert r.token_times[-2] + 0.05 <= budget
    assert r.total_time + 0.05 > budget
    assert "killed at the deadline" in r.message


def test_skip_next_policy_lets_the_job_finish_late(served):
    tm = slow_time_model(step=0.05)
    r = engine_for(served.model, tm, served.backend, reject_infeasible=False).generate(
        Request(PROMPT, budget=0.02, max_new_tokens=60, policy="skip_next"))
    assert r.outcome is Outcome.COMPLETED and r.generated_tokens == 60
    assert not r.deadline_met and "after the deadline" in r.message


def test_cancel_stops_before_the_next_step_and_keeps_the_partial_text(served):
    cancel = threading.Event()
    seen = []

    def on_token(ev):
        seen.append(ev)
        if len(seen) == 3:
            cancel.set()

    r = engine_for(*served).generate(Request(PROMPT, budget=30, max_new_tokens=100), on_token=on_token, cancel=cancel)
    assert r.outcome is Outcome.CANCELED and r.generated_tokens == 3
    assert r.text == "".join(e.text for e in seen)


def test_infeasible_budget_is_answered_without_generating(tiny):
    tm = slow_time_model(step=0.05, prefill=2.0)
    r = engine_for(tiny, tm).generate(Request(PROMPT, budget=1.0, max_new_tokens=10))
    assert r.outcome is Outcome.INFEASIBLE and r.generated_tokens == 0
    assert "prefill alone exceeds the budget" in r.message


@pytest.mark.parametrize("press", ["snapkv", "streamingllm", "knorm", "expected_attention", "tova", "SnapKVPress"])
def test_every_cpu_press_evicts_the_planned_share_of_the_prompt(served, press):
    eng = engine_for(*served, press=press)
    r = eng.generate(Request(PROMPT, budget=30, max_new_tokens=8, fixed_eviction_ratio=0.5))
    assert r.outcome is Outcome.COMPLETED and r.generated_tokens == 8
    assert r.cached_tokens == kept_positions(r.prompt_tokens, 0.5)


def test_prompts_shorter_than_the_press_window_run_uncompressed(served):
    r = engine_for(*served).generate(Request("hi", budget=30, max_new_tokens=4, raw=True, fixed_eviction_ratio=0.5))
    assert r.outcome is Outcome.COMPLETED and r.eviction_ratio == 0.0 and r.cached_tokens == r.prompt_tokens


def test_planner_chooses_eviction_to_fit_a_tight_budget(tiny):
    # A model where the cache length matters: 1 ms per 100 cached positions.
    from timebill.time_model import TimeModel

    tm = TimeModel(a=0.0, b=0.0, c=0.01, p=1e-5, q=0.001)
    eng = engine_for(tiny, tm, default_max_new_tokens=64)
    n = len(tiny.encode_chat(PROMPT * 4))
    budget = tm.end_to_end(n, 64, 0.5) + 0.01
    est = eng.estimator.estimate(Request(PROMPT * 4, budget=budget))
    assert 0.3 < est.plan.eviction_ratio < 0.6 and est.plan.feasible


def test_a_job_whose_expected_answer_does_not_fit_runs_the_prompt_with_a_word_limit(served):
    # Issue 11, part 4: the engine plans the job again with "Answer in at most W words." and runs
    # that prompt; the result's plan says which limit was asked.
    from timebill.length_control import WORD_LIMITS, instructed
    from timebill.length_predictor import ConstantLengthPredictor

    question = "Where is the red cup usually kept in a kitchen?"
    eng = engine_for(*served, length_predictor=ConstantLengthPredictor(expected=100))
    n = len(served.model.encode_chat(question))
    budget = eng.estimator.time_model.end_to_end(n, 30, 0.0)      # about 30 of the 100 expected tokens fit
    r = eng.generate(Request(question, budget=budget, max_new_tokens=128, policy="skip_next"))
    words = r.plan.answer_words
    assert words in WORD_LIMITS and r.outcome is Outcome.COMPLETED
    assert r.prompt_tokens == len(served.model.encode_chat(question, instructed("", words)))
    unlimited = eng.generate(Request(question, budget=budget, max_new_tokens=128, policy="skip_next", length_control=False))
    assert unlimited.plan.answer_words == 0 and unlimited.prompt_tokens == n


def test_sampling_is_reproducible_with_a_seed(served):
    eng = engine_for(*served)
    a = eng.generate(Request(PROMPT, budget=30, max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7))
    b = eng.generate(Request(PROMPT, budget=30, max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7))
    assert a.text == b.text


@pytest.mark.parametrize("req,match", [
    (Request("", budget=1), "prompt is empty"),
    (Request("   \n", budget=1), "prompt is empty"),
    (Request("hi", budget=0), "positive finite"),
    (Request("hi", budget=-2), "positive finite"),
    (Request("hi", budget=math.nan), "positive finite"),
    (Request("hi", budget=math.inf), "positive finite"),
    (Request("hi", budget="soon"), "number of seconds"),
    (Request("hi", budget=1, policy="explode"), "unknown overrun policy"),
    (Request("hi", budget=1, max_eviction_ratio=1.5), "max_eviction_ratio"),
    (Request("hi", budget=1, top_p=0), "top_p"),
])
def test_bad_requests_raise_clear_errors(tiny, tiny_time_model, req, match):
    with pytest.raises(InvalidRequest, match=match):
        engine_for(tiny, tiny_time_model).generate(req)


def test_a_prompt_longer_than_the_context_is_rejected(tiny, tiny_time_model):
    with pytest.raises(InvalidRequest, match="context of 2048"):
        engine_for(tiny, tiny_time_model).generate(Request("cup " * 3000, budget=10))


def test_an_unknown_press_is_refused_at_construction(tiny, tiny_time_model):
    with pytest.raises(UnknownPressError, match="unknown press 'squeeze'"):
        Estimator(tiny, tiny_time_model, press="squeeze")


def test_a_worst_case_quantile_outside_its_range_is_refused_at_construction(tiny, tiny_time_model):
    for q in (0.3, 1.0, math.nan):
        with pytest.raises(ValueError, match="worst_case_quantile"):
            Estimator(tiny, tiny_time_model, worst_case_quantile=q)


def test_a_timing_margin_plans_the_worst_case_with_the_slow_tail_of_served_jobs(tiny):
    from timebill.calibration import OnlineCalibration
    from timebill.time_model import TimeModel

    tm = TimeModel(a=0.0, b=1e-4, c=0.0, p=1e-6, q=0.01)
    cal = OnlineCalibration(tm)
    for k in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.5, 1.5, 1.5):  # 3 slow jobs in 10
        cal.observe(100, k * tm.prefill(100), 100, [k * tm.decode_step(100 + i) for i in range(10)])
    req = Request(PROMPT, budget=30, max_new_tokens=40)
    median = Estimator(tiny, cal).estimate(req).plan
    margin = Estimator(tiny, cal, worst_case_quantile=0.9).estimate(req).plan
    extra = margin.predicted_worst_case - margin.predictor_time
    assert extra == pytest.approx(1.5 * (median.predicted_worst_case - median.predictor_time), rel=1e-6)
    assert margin.predicted_total - margin.predictor_time == pytest.approx(
        median.predicted_total - median.predictor_time, rel=1e-6)


def test_lateness_under_kill_is_small_over_many_runs(tiny, tiny_time_model):
    # Real timing model of the tiny model; budgets that cut the answer short.
    eng = engine_for(tiny, tiny_time_model, reject_infeasible=False)
    late = []
    for budget in (0.02, 0.04, 0.06, 0.08) * 3:
        r = eng.generate(Request(PROMPT, budget=budget, max_new_tokens=1500))
        late.append(r.total_time - budget)
        assert r.outcome in (Outcome.KILLED, Outcome.COMPLETED)
    # On a shared machine a step can take longer than modelled; it must stay a fraction of a step budget.
    assert sorted(late)[len(late) // 2] <= 0.005


def test_a_slowdown_the_calibration_saw_once_does_not_refuse_every_later_goal(tiny, tiny_time_model):
    # A load measured at 50x (another process took the CPU) and gone since: judged at that speed,
    # every goal would be INFEASIBLE, none would run, and nothing would ever show the load is over.
    # Refusals believe a slowdown of at most 2x (OnlineCalibration.for_refusals); the plan and its
    # odds keep the calibration.
    engine = BudgetedEngine(Estimator(tiny, tiny_time_model), learn_online=True, backend="torch")
    engine.warm_up()
    engine.estimator.calibration.seed([50.0] * 4, [50.0] * 4)
    n = len(tiny.encode_chat(PROMPT))
    slow = engine.estimator.calibration.model
    # Room for a few decoding steps at the calibrated speed (Kill still never starts a step it
    # says would end late), not for the 8 tokens a useful answer needs.
    budget = tiny_time_model.prefill(n) + 4 * slow.decode_step(n)
    assert slow.end_to_end(n, 8, 0.0) > budget
    r = engine.generate(Request(PROMPT, budget=budget, max_new_tokens=16, policy="kill"))
    assert r.outcome is not Outcome.INFEASIBLE and r.generated_tokens > 1
    for _ in range(6):
        engine.generate(Request(PROMPT, budget=budget, max_new_tokens=16, policy="kill"))
    assert engine.estimator.calibration.decode_scale < 50  # the real speed is being learnt again


def test_the_calibration_learns_the_speed_served_callbacks_included(tiny, tiny_time_model):
    # A caller whose token callback takes time (the node publishes feedback from it) gets its tokens
    # that much slower than the bare decoding steps; the plan must count that time too.
    engine = BudgetedEngine(Estimator(tiny, tiny_time_model, default_max_new_tokens=12), learn_online=True,
                            backend="torch", loop_window=0)
    engine.warm_up()
    callback = max(0.02, 10 * tiny_time_model.decode_step(len(tiny.encode_chat(PROMPT))))
    for _ in range(3):
        r = engine.generate(Request(PROMPT, budget=60.0, policy="skip_next", fixed_eviction_ratio=0.0),
                            on_token=lambda e: time.sleep(callback))
    assert r.generated_tokens > 4 and len(r.token_intervals) == len(r.step_times)
    assert statistics.median(r.token_intervals) - statistics.median(r.step_times) >= 0.9 * callback
    assert engine.estimator.calibration.decode_scale > 5
