"""Estimator: one tokenization per request, wherever it was made."""
import pytest

from timebill.estimator import Estimator
from timebill.request import InvalidRequest, Request
from timebill.time_model import TimeModel

TM = TimeModel(a=1e-7, b=1e-3, c=0.02, p=5e-6, q=0.01)


def test_ids_tokenized_elsewhere_plan_exactly_like_the_estimators_own(tiny):
    est = Estimator(tiny, TM)
    req = Request("Where is the red cup usually kept in a kitchen?", budget=5.0, max_new_tokens=16)
    own = est.encode(req)
    assert est.tokenized(req, own) == own
    a, b = est.estimate(req, prompt_ids=est.tokenized(req, own)).plan, est.estimate(req, prompt_ids=own).plan
    # (predictor_time differs: it is measured per call)
    assert (a.prompt_tokens, a.eviction_ratio, a.predicted_tokens, a.tokens_that_fit) == \
           (b.prompt_tokens, b.eviction_ratio, b.predicted_tokens, b.tokens_that_fit)


def test_ids_outside_the_vocabulary_or_the_context_or_none_at_all_are_refused_with_the_reason(tiny):
    est = Estimator(tiny, TM)
    req = Request("x", budget=5.0, max_new_tokens=16)
    vocab = tiny.model.config.vocab_size
    with pytest.raises(InvalidRequest, match=f"token id {vocab} is outside the model's vocabulary of {vocab}"):
        est.tokenized(req, [1, vocab])
    with pytest.raises(InvalidRequest, match="outside the model's vocabulary"):
        est.tokenized(req, [-1])
    with pytest.raises(InvalidRequest, match="leaves room for"):
        est.tokenized(req, [1] * tiny.max_context)
    with pytest.raises(InvalidRequest, match="empty"):
        est.tokenized(Request(" ", budget=5.0), [1, 2])
    with pytest.raises(InvalidRequest, match="prompt ids are empty"):
        est.tokenized(req, [])


# --- length control (issue 11, part 4) ------------------------------------------------------------
def test_length_control_asks_for_a_word_limit_only_when_the_expected_answer_does_not_fit():
    from timebill.length_control import WORD_LIMITS, instructed, word_limit

    assert word_limit(64, 64) is None and word_limit(100, 64) is None
    assert word_limit(30, 64) == 20 and word_limit(14, 64) == 10 and word_limit(2, 64) == WORD_LIMITS[0]
    assert instructed("", 10) == "Answer in at most 10 words."
    assert instructed("Answer yes or no.", 5) == "Answer yes or no. Answer in at most 5 words."


def _tight(tiny, est, req, tokens):
    """A budget in which about ``tokens`` answer tokens fit ``req`` without eviction."""
    return est.time_model.end_to_end(len(est.encode(req)), tokens, 0.0)


def test_a_budget_too_short_for_the_expected_answer_plans_the_prompt_with_a_word_limit(tiny):
    from timebill.length_control import instructed
    from timebill.length_predictor import ConstantLengthPredictor

    est = Estimator(tiny, TM, ConstantLengthPredictor(expected=100))
    req = Request("Where is the red cup usually kept?", budget=60.0, system_prompt="You are a robot.", max_new_tokens=128)
    loose = est.estimate(req)
    assert loose.request is req and loose.plan.answer_words == 0
    tight = est.estimate(Request(**{**req.__dict__, "budget": _tight(tiny, est, req, 20)}))
    words = tight.plan.answer_words
    assert words in (5, 10) and tight.request.answer_words == words
    # The ids, the length and the plan are the limited prompt's: what the engine runs.
    assert tight.prompt_ids == tiny.encode_chat(req.prompt, instructed("You are a robot.", words))
    assert tight.plan.prompt_tokens == len(tight.prompt_ids) > len(loose.prompt_ids)
    assert tight.plan.useful_fits
    # Planning the limited request again does not limit it twice.
    again = est.estimate(tight.request, prompt_ids=tight.prompt_ids)
    assert again.request is tight.request and again.prompt_ids == tight.prompt_ids
    assert again.plan.answer_words == words   # the plan of a limited request says so, wherever it was limited


def test_length_control_is_off_where_the_goal_the_config_or_a_baseline_says_so(tiny):
    from timebill.length_predictor import ConstantLengthPredictor

    on = Estimator(tiny, TM, ConstantLengthPredictor(expected=100))
    off = Estimator(tiny, TM, ConstantLengthPredictor(expected=100), length_control=False)
    base = Request("Where is the red cup usually kept?", budget=1.0, max_new_tokens=128)
    budget = _tight(tiny, on, base, 20)

    def words(est, **kw):
        return est.estimate(Request(**{**base.__dict__, "budget": budget, **kw})).plan.answer_words

    assert words(on) > 0
    assert words(on, length_control=False) == 0          # the goal turns it off
    assert words(off) == 0 and words(off, length_control=True) > 0   # the config's default, the goal's choice
    assert words(on, fixed_eviction_ratio=0.5) == 0               # a baseline runs its prompt as given
    assert words(on, raw=True) == 0                      # no chat template: no system prompt to carry it
    req = Request(**{**base.__dict__, "budget": budget})
    assert on.estimate(req, control_length=False).plan.answer_words == 0   # a verdict that must not predict


def test_a_goal_that_says_one_token_is_useful_is_not_refused_where_eight_do_not_fit(tiny):
    from timebill.length_predictor import ConstantLengthPredictor

    est = Estimator(tiny, TM, ConstantLengthPredictor(expected=30), min_useful_tokens=8, length_control=False)
    base = Request("Is the door open? Answer yes or no.", budget=1.0, max_new_tokens=32)
    budget = _tight(tiny, est, base, 3)                  # 3 tokens fit at most without eviction
    default = est.estimate(Request(**{**base.__dict__, "budget": budget, "fixed_eviction_ratio": 0.0})).plan
    yes_no = est.estimate(Request(**{**base.__dict__, "budget": budget, "fixed_eviction_ratio": 0.0, "min_useful_tokens": 1})).plan
    assert not default.useful_fits and "not even 8 tokens fit" in default.reason
    assert yes_no.useful_fits and 1 <= yes_no.tokens_that_fit < 8
    with pytest.raises(InvalidRequest, match="min_useful_tokens must be >= 0"):
        est.estimate(Request(**{**base.__dict__, "min_useful_tokens": -1}))
