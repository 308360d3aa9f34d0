"""The predicted length distribution: what a planner reads from it, and how a running answer updates it."""
import math

import pytest

from timebill.length_distribution import LengthDistribution, completion_odds, running_odds
from timebill.time_model import TimeModel

# Half the answers end within 16 tokens, a fifth in 17-32, a fifth in 33-48, a tenth run to 64.
D = LengthDistribution.of([16, 32, 48, 64], [5, 2, 2, 1])
TM = TimeModel(a=0.0, b=1e-3, c=0.05, p=1e-5, q=0.01)


def test_probabilities_are_uniform_inside_a_bucket():
    assert D.p_at_most(16) == pytest.approx(0.5)
    assert D.p_at_most(24) == pytest.approx(0.6)
    assert D.p_at_most(0) == 0.0 and D.p_at_most(64) == pytest.approx(1.0)


def test_quantiles_invert_the_cdf():
    assert D.quantile(0.5) == 16
    assert D.quantile(0.9) == 48
    for q in (0.1, 0.3, 0.55, 0.75, 0.95):
        assert D.p_at_most(D.quantile(q)) >= q - 1e-9


def test_a_token_limit_moves_the_longer_answers_onto_the_limit():
    c = D.capped(40)
    assert c.p_at_most(32) == pytest.approx(0.7)
    assert c.p_at_most(39) == pytest.approx(0.7 + 0.2 * 7 / 16)
    assert c.p_at_most(40) == pytest.approx(1.0)
    assert D.capped(100) == D


def test_an_answer_still_running_rules_out_shorter_lengths():
    g = D.given_at_least(20)
    assert g.p_at_most(19) == 0.0
    # P(20 <= N <= 32) / P(N >= 20) = (0.2 * 13/16) / (0.2 * 13/16 + 0.3)
    assert g.p_at_most(32) == pytest.approx(0.1625 / 0.4625)
    assert D.given_at_least(0) == D


def test_a_point_prediction_is_a_certain_length():
    d = LengthDistribution.point(10)
    assert d.p_at_most(9) == 0.0 and d.p_at_most(10) == 1.0


@pytest.mark.parametrize("ends,probs", [([], []), ([16, 8], [0.5, 0.5]), ([16], [math.nan]), ([16, 32], [0.0, 0.0])])
def test_a_malformed_distribution_is_refused(ends, probs):
    with pytest.raises(ValueError):
        LengthDistribution(tuple(ends), tuple(probs))


def test_completion_odds_read_the_distribution_at_the_tokens_that_fit():
    def e2e(n):
        return 0.1 + 0.01 * n

    odds = completion_odds(e2e, D, tokens_that_fit=32, limit=64)
    assert odds.probability == pytest.approx(0.7)
    assert odds.p90_time == pytest.approx(e2e(48))
    assert e2e(1) < odds.expected_time < e2e(64)
    assert completion_odds(e2e, D, tokens_that_fit=64, limit=64).probability == pytest.approx(1.0)


def test_a_running_answer_that_passed_its_deadline_cannot_complete():
    late = running_odds(TM, 100, 0.0, D, generated=20, elapsed=5.0, budget=1.0, limit=64)
    assert late.probability == 0.0
    early = running_odds(TM, 100, 0.0, D, generated=20, elapsed=0.2, budget=10.0, limit=64)
    assert early.probability == pytest.approx(1.0)
    assert early.expected_time > 0.2


def test_the_estimator_plans_with_the_odds(tiny):
    """A constant predictor gives a point: certain to complete when it fits, certain not when it does not."""
    from timebill.estimator import Estimator
    from timebill.length_predictor import ConstantLengthPredictor
    from timebill.request import Request

    est = Estimator(tiny, TM, ConstantLengthPredictor(expected=32))
    roomy = est.estimate(Request(prompt="Is the door open?", budget=30.0, max_new_tokens=64)).plan
    assert roomy.completion_probability == 1.0
    assert roomy.expected_time == pytest.approx(roomy.predicted_total, rel=0.05)
    n = len(est.encode(Request(prompt="Is the door open?", budget=1.0)))
    tight = est.estimate(Request(prompt="Is the door open?", budget=TM.end_to_end(n, 8) + 0.001, max_new_tokens=64,
                                 length_control=False, min_useful_tokens=1)).plan
    assert tight.tokens_that_fit == 8 and tight.completion_probability == 0.0


# Three in ten answers stop within 16 tokens; the rest loop on to 368-384.
STOPS_OR_LOOPS = LengthDistribution.of([16, 368, 384], [0.3, 0.0, 0.7])


def test_the_point_of_least_relative_error_weighs_each_length_by_its_time():
    def e2e(n):
        return 0.1 + 0.01 * n

    # weights 0.3 / e2e(8.5) and 0.7 / e2e(376.5): the short answers hold most of them
    assert STOPS_OR_LOOPS.least_relative_error(e2e) == 9
    assert STOPS_OR_LOOPS.median() > 368
    # with every length taking the same time it is the median; with times that cannot weigh, too
    assert D.least_relative_error(lambda n: 1.0) == D.median() == 16
    assert STOPS_OR_LOOPS.least_relative_error(lambda n: 0.0) == STOPS_OR_LOOPS.median()


def test_the_estimate_names_the_point_of_least_relative_error_only_where_the_median_fits(tiny):
    """Where the median answer fits, the point a planner is told is the length whose time is off by
    least, relative to the real time; where it does not, the median, so that "fits" keeps its meaning."""
    from timebill.estimator import Estimator
    from timebill.length_predictor import LengthEstimate
    from timebill.request import Request

    class StopsOrLoops:
        name = "stops-or-loops"

        def predict(self, prompt_ids, max_new_tokens):
            return LengthEstimate(STOPS_OR_LOOPS.median(), 384, STOPS_OR_LOOPS)

    est = Estimator(tiny, TM, StopsOrLoops())
    req = Request(prompt="Is the door open?", budget=60.0, max_new_tokens=384, length_control=False)
    n = len(est.encode(req))
    roomy = est.estimate(req).plan
    assert roomy.predicted_tokens < 16 and roomy.completion_probability == 1.0
    assert roomy.predicted_total == pytest.approx(TM.end_to_end(n, roomy.predicted_tokens), abs=0.01)
    # 100 tokens fit: the short answers complete, the loops do not; the median does not fit
    tight = est.estimate(Request(**{**req.__dict__, "budget": TM.end_to_end(n, 100)})).plan
    assert tight.predicted_tokens == STOPS_OR_LOOPS.median() and tight.predicted_total > tight.budget
    assert tight.completion_probability == pytest.approx(0.3)
