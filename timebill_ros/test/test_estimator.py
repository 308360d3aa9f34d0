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
    assert (a.prompt_tokens, a.alpha, a.predicted_tokens, a.tokens_that_fit) == \
           (b.prompt_tokens, b.alpha, b.predicted_tokens, b.tokens_that_fit)


def test_ids_outside_the_vocabulary_or_the_context_are_refused_with_the_reason(tiny):
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
