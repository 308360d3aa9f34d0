"""Evicting after the prefill: the same positions the press keeps inside it, and the states a
length predictor reads, with the ratio chosen in between."""
import pytest
import torch

from timebill.backends import make_backend
from timebill.deferred_press import DeferredPress, pool
from timebill.presses import make_press
from timebill.rlp.model import layer_features
from timebill.time_model import kept_positions
from conftest import slow_time_model

PROMPT = "The robot moves to the kitchen and picks up the red cup. " * 6
SCORER_PRESSES = ["snapkv", "streamingllm", "knorm", "expected_attention", "tova"]


def cache_after(backend, ids, press):
    backend.prefill(ids, press)
    return [(layer.keys.clone(), layer.values.clone()) for layer in backend.cache.layers]


@pytest.mark.parametrize("press", SCORER_PRESSES)
def test_evicting_after_the_prefill_keeps_exactly_what_the_press_keeps_inside_it(tiny, press):
    ids = tiny.encode_chat(PROMPT)
    backend = make_backend("torch", tiny)
    inside = cache_after(backend, ids, make_press(press, 0.5, len(ids)))
    deferred = DeferredPress(press, len(ids), state_layer=1, decide=lambda state: 0.5)
    after = cache_after(backend, ids, deferred)
    assert deferred.ratio == 0.5
    assert len(after) == len(inside)
    for (k1, v1), (k2, v2) in zip(inside, after):
        assert k2.shape == k1.shape and k1.shape[2] < len(ids)
        assert torch.equal(k1, k2) and torch.equal(v1, v2)


def test_the_ratio_is_chosen_from_the_prompt_states_the_prefill_computed(tiny):
    ids = tiny.encode_chat(PROMPT)
    seen = []

    def decide(state):
        seen.append(state)
        return 0.25

    backend = make_backend("torch", tiny)
    backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=1, decide=decide))
    assert len(seen) == 1
    assert torch.allclose(seen[0], layer_features(tiny.model, ids, [1], len(ids))[1], atol=1e-5)
    assert backend.cached() == kept_positions(len(ids), 0.25)


def test_the_last_layer_is_read_after_the_final_norm(tiny):
    ids = tiny.encode_chat(PROMPT)
    seen = []
    backend = make_backend("torch", tiny)
    last = tiny.num_layers
    backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=last, decide=lambda s: seen.append(s) or 0.0))
    with torch.inference_mode():
        h = tiny.model.model(torch.tensor([ids])).last_hidden_state[0]
    assert torch.allclose(seen[0], pool(h), atol=1e-5)
    assert backend.cached() == len(ids)  # ratio 0: nothing evicted


def test_a_ratio_outside_its_range_and_a_layer_the_model_lacks_are_refused(tiny):
    ids = tiny.encode_chat(PROMPT)
    backend = make_backend("torch", tiny)
    with pytest.raises(ValueError, match="outside"):
        backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=1, decide=lambda s: 1.0))
    with pytest.raises(ValueError, match="no hidden state after layer 9"):
        backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=9, decide=lambda s: 0.0))


def test_llama_cpp_decodes_from_the_cache_evicted_after_the_prefill(embedded, fast_backend):
    ids = embedded.encode_chat(PROMPT)
    fast_backend.prefill(ids, make_press("snapkv", 0.5, len(ids)))
    inside = fast_backend.decode_one(ids[-1], len(ids)).clone()
    fast_backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=embedded.num_layers, decide=lambda s: 0.5))
    assert fast_backend.cached() == kept_positions(len(ids), 0.5)
    after = fast_backend.decode_one(ids[-1], len(ids))
    assert torch.allclose(inside, after, atol=1e-3)


# --- the engine: the length predicted from the job's own prefill -------------------------------

SHORT, LONG = "Hello", "What is the capital of France?"


@pytest.fixture(scope="module")
def tiny_rlp(tiny, tmp_path_factory):
    """An RLP head on the tiny model that tells a greeting (16 tokens) from a question (208)."""
    import numpy as np

    from timebill.rlp.model import HeadConfig, train_head
    from timebill.rlp.predictor import RLPPredictor

    ids = [tiny.encode_chat(t) for t in [SHORT, LONG, "Quick brown foxes", "A time budget"] * 10]
    feats = torch.stack([layer_features(tiny.model, i, [1], 512)[1] for i in ids])
    y = np.array([10, 200, 40, 90] * 10)
    cfg = HeadConfig(kind="classifier", width=16, max_tokens=256, layers=1, hidden=16, max_input_tokens=512,
                     model_name=tiny.name, model_hidden=tiny.model.config.hidden_size, bound_factor=1.5)
    head, _ = train_head(cfg, feats, y, feats, y, epochs=80, patience=80)
    path = tmp_path_factory.mktemp("head") / "h.pt"
    head.save(path)
    return RLPPredictor(tiny, path)


def rlp_engine(tiny, tm, predictor, in_prefill=True, **kw):
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator

    engine = BudgetedEngine(Estimator(tiny, tm, predictor, **kw), learn_online=False, backend="torch",
                            predict_in_prefill=in_prefill)
    engine.warm_up()
    return engine


def test_the_engine_predicts_from_its_own_prefill_and_no_predictor_time_enters_the_budget(tiny, tiny_time_model, tiny_rlp):
    from timebill.request import Request

    own_pass = rlp_engine(tiny, tiny_time_model, tiny_rlp, in_prefill=False)
    in_prefill = rlp_engine(tiny, tiny_time_model, tiny_rlp)
    assert in_prefill.predicts_in_prefill and not own_pass.predicts_in_prefill
    plans, own_plans = [], []
    for prompt, expected in ((SHORT, 16), (LONG, 208)):
        a = own_pass.generate(Request(prompt, budget=30, max_new_tokens=256, length_control=False), on_plan=own_plans.append)
        b = in_prefill.generate(Request(prompt, budget=30, max_new_tokens=256, length_control=False), on_plan=plans.append)
        # The same distribution, so the same median. Both answers fit, so each names the point of
        # least relative error (estimator._reported_point) at or below that median; the two points
        # may differ, as the own pass's time (whatever the machine's load made it) enters its weights.
        assert own_plans[-1].length.distribution.probs == pytest.approx(plans[-1].length.distribution.probs, abs=1e-4)
        median = plans[-1].length.dist().capped(256).median()
        assert own_plans[-1].length.dist().capped(256).median() == median
        assert a.plan.predicted_tokens <= median and b.plan.predicted_tokens <= min(median, expected)
        assert a.predictor_time > 0 and a.plan.predictor_time > 0
        assert b.predictor_time == 0 and b.plan.predictor_time == 0
        assert plans[-1].plan is b.plan  # the plan is published once it is made
        assert b.plan.completion_probability == pytest.approx(a.plan.completion_probability, abs=0.05)


def test_a_plan_made_inside_the_prefill_times_that_prefill_as_it_ran(tiny, tiny_time_model, tiny_rlp):
    from timebill.request import Request

    req = Request(LONG, budget=30, max_new_tokens=16, length_control=False)
    inside = rlp_engine(tiny, tiny_time_model, tiny_rlp).generate(req)
    assert 0 < inside.forward_time <= inside.prefill_time
    # nothing served yet, so no share of the prefill after the plan is known: the forward pass is the prefill
    assert inside.plan.predicted_prefill == pytest.approx(inside.forward_time)
    ran = tiny_time_model.with_prefill(inside.prompt_tokens, inside.forward_time)
    assert inside.time_given_length == pytest.approx(
        inside.planned_at + ran.end_to_end(inside.prompt_tokens, inside.timed_tokens, inside.eviction_ratio))
    # planned before its prefill (its own predictor pass), a job can only model it
    before = rlp_engine(tiny, tiny_time_model, tiny_rlp, in_prefill=False).generate(req)
    assert before.forward_time == 0
    assert before.plan.predicted_prefill == pytest.approx(tiny_time_model.prefill(before.prompt_tokens))


def test_the_ratio_planned_after_the_prefill_is_the_one_applied(tiny, tiny_rlp):
    # A timing model where the cache length matters, and a budget the 208 predicted tokens fit
    # only with eviction.
    from timebill.request import Request
    from timebill.time_model import TimeModel

    tm = TimeModel(a=0.0, b=0.0, c=0.01, p=1e-5, q=0.001)
    prompt = LONG + " " + PROMPT * 3
    engine = rlp_engine(tiny, tm, tiny_rlp, planner="budget")
    n = len(tiny.encode_chat(prompt))
    predicted = tiny_rlp.predict(tiny.encode_chat(prompt), 256).predicted_tokens
    budget = tm.end_to_end(n, predicted, 0.5)
    r = engine.generate(Request(prompt, budget=budget, max_new_tokens=256, length_control=False))
    assert r.plan.eviction_ratio > 0 and r.plan.predicted_tokens == min(predicted, 256)
    assert r.cached_tokens == kept_positions(n, r.plan.eviction_ratio)


def test_a_prompt_longer_than_the_heads_input_bound_is_predicted_by_its_own_pass_as_trained(tiny, tiny_time_model, tiny_rlp):
    from timebill.request import Request

    bound = tiny_rlp.head.cfg.max_input_tokens
    engine = rlp_engine(tiny, tiny_time_model, tiny_rlp)
    long_prompt = PROMPT * 8
    assert len(tiny.encode_chat(long_prompt)) > bound
    r = engine.generate(Request(long_prompt, budget=30, max_new_tokens=4, length_control=False))
    assert r.predictor_time > 0  # its own pass, over the prompt's two ends
    short = engine.generate(Request(PROMPT, budget=30, max_new_tokens=4, length_control=False))
    assert short.predictor_time == 0


def test_a_word_limit_chosen_after_the_prefill_runs_the_limited_prompt(tiny, tiny_rlp):
    from timebill.length_control import instructed
    from timebill.request import Outcome, Request

    # 35 of the 208 expected tokens fit: a 20-word limit (26 tokens) leaves 9 steps (0.45 s) for the
    # real time of the first prefill, which the plan after it counts (limit_after_prefill)
    engine = rlp_engine(tiny, slow_time_model(step=0.05), tiny_rlp)
    n = len(tiny.encode_chat(LONG))
    r = engine.generate(Request(LONG, budget=0.01 + 35 * 0.05, max_new_tokens=256, policy="skip_next"))
    assert r.plan.answer_words > 0 and r.outcome is Outcome.COMPLETED
    assert r.prompt_tokens == len(tiny.encode_chat(LONG, instructed("", r.plan.answer_words))) != n


def test_after_the_prefill_a_word_limit_is_asked_for_only_when_it_pays_for_a_prefill_of_its_own(tiny, tiny_rlp):
    from timebill.estimator import Estimator
    from timebill.request import Request

    planner = Estimator(tiny, slow_time_model(step=0.01, prefill=0.2), tiny_rlp)
    req = Request(LONG, budget=0.2 + 40 * 0.01, max_new_tokens=256)    # 40 of the 208 expected tokens fit
    ids = planner.encode(req)
    first = planner.estimate(req, 0.0, prompt_ids=ids, length=tiny_rlp.predict(ids, 256), control_length=False)
    assert planner.limited_request(req, first) is not None
    assert planner.limit_after_prefill(req, first, elapsed=0.0).request.answer_words == 20
    # After a 0.2 s prefill, another one for the limited prompt leaves room for 20 tokens: less than
    # the 20-word limit's 26, so the limit is chosen again for that room.
    assert planner.limit_after_prefill(req, first, elapsed=0.2).request.answer_words == 10
    # After 0.35 s there is room for 5 tokens: not even the shortest limit's answer fits.
    assert planner.limit_after_prefill(req, first, elapsed=0.35) is None


# --- the evaluation: records share a prompt's prefill, jobs replay the served order -------------

def test_records_of_one_prompt_share_its_prefill_and_each_is_charged_its_time(embedded, fast_backend,
                                                                              embedded_fast_time_model, tmp_path):
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator
    from timebill.evaluation.records import Recorder
    from timebill.request import Request

    engine = BudgetedEngine(Estimator(embedded, embedded_fast_time_model), reject_infeasible=False, learn_online=False,
                            backend=fast_backend)
    served = engine.generate(Request(PROMPT, budget=3600.0, max_new_tokens=24, policy="skip_next", fixed_eviction_ratio=0.5))
    recorder = Recorder(engine, tmp_path / "records.jsonl")
    whole = recorder.get("p", PROMPT, "", 0.0, 24)
    half = recorder.get("p", PROMPT, "", 0.5, 24)
    assert not whole["prefill_reused"] and half["prefill_reused"]
    assert half["cached"] == served.cached_tokens < whole["cached"] and half["text"] == served.text
    assert half["total"] >= half["prefill"] >= recorder.prefills.reused_seconds > 0  # the prefill it did not run again
    assert engine.backend is fast_backend  # live jobs (the evaluation's live check) prefill for themselves


def test_a_replayed_job_reads_its_length_from_the_prefill_and_pays_for_a_declined_word_limit(tiny, tiny_time_model,
                                                                                            tiny_rlp, tmp_path):
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator
    from timebill.evaluation.records import Recorder, ratio_key
    from timebill.evaluation.served_order import PromptStates, replay_as_served
    from timebill.request import Request

    recorder = Recorder(BudgetedEngine(Estimator(tiny, tiny_time_model), reject_infeasible=False, learn_online=False,
                                       backend="torch"), tmp_path / "records.jsonl")
    planner = Estimator(tiny, slow_time_model(), tiny_rlp, planner="budget")    # 208 tokens expected: 10 s
    loose = replay_as_served(planner, recorder, PromptStates(), "q", LONG, Request(LONG, budget=60.0, max_new_tokens=256))
    # the head's distribution, read from the prefill (its point 208; the point of least relative error told at this budget)
    assert loose.est.length.distribution is not None and loose.est.length.predicted_tokens <= 208
    assert loose.est.predictor_latency == 0 and not loose.infeasible
    assert loose.rec is recorder.records[("q", ratio_key(0.0))]
    assert loose.total == pytest.approx(loose.rec["total"], abs=0.01)         # no predictor pass in the budget
    own_pass = replay_as_served(planner, recorder, None, "q", LONG, Request(LONG, budget=60.0, max_new_tokens=256))
    assert own_pass.est.predictor_latency > 0 and own_pass.total > own_pass.rec["total"]
    tight = replay_as_served(planner, recorder, PromptStates(), "q", LONG, Request(LONG, budget=3.0, max_new_tokens=256))
    prefilled_for_nothing = recorder.records[("q", ratio_key(0.0))]["prefill"]
    assert tight.total >= prefilled_for_nothing + tight.rec["total"]          # the word limit's first prefill
    assert tight.est.planned_at >= prefilled_for_nothing                      # planned for the time left after it
