"""The expected-score planner: the ratio whose answer is expected to score best by the deadline."""
import pytest

from timebill.retention import CONSERVATIVE, Retention, RetentionCurve, request_kind
from timebill.score_planner import COMPARED, NOISE, candidate_ratios, choose


def odds(table: dict):
    return lambda a: table[a]


def test_the_highest_expected_score_runs_not_the_likeliest_nor_the_mildest():
    p = {0.0: 0.3, 0.5: 0.6, 0.95: 0.95}
    r = {0.0: 1.0, 0.5: 0.9, 0.95: 0.1}
    c = choose(sorted(p), odds(p), odds(r))
    assert c.eviction_ratio == 0.5
    assert c.expected_score == pytest.approx(0.54) and c.completion_probability == 0.6 and c.quality == 0.9


def test_a_job_that_fits_only_at_the_largest_ratio_still_runs_there_to_complete():
    p = {0.0: 0.0, 0.5: 0.05, 0.95: 0.9}
    r = {0.0: 1.0, 0.5: 0.95, 0.95: 0.15}
    assert choose(sorted(p), odds(p), odds(r)).eviction_ratio == 0.95


def test_among_near_ties_the_likelier_to_complete_then_the_one_that_evicts_less():
    likelier = {0.0: 0.90, 0.25: 0.93}
    assert choose(sorted(likelier), odds(likelier), odds({0.0: 1.0, 0.25: 0.98})).eviction_ratio == 0.25
    same = {0.0: 1.0, 0.25: 1.0}
    assert choose(sorted(same), odds(same), odds({0.0: 1.0, 0.25: 1.0 - NOISE / 2})).eviction_ratio == 0.0


def test_under_skip_next_a_late_answer_costs_the_next_goal_so_completion_weighs_more():
    p = {0.0: 0.6, 0.95: 0.95}
    r = {0.0: 1.0, 0.95: 0.55}
    assert choose(sorted(p), odds(p), odds(r)).eviction_ratio == 0.0
    assert choose(sorted(p), odds(p), odds(r), skip_next=True).eviction_ratio == 0.95


def test_candidates_are_no_eviction_every_compared_ratio_the_ceiling_and_the_closed_forms_on_the_grid():
    assert candidate_ratios(0.0, [0.3]) == [0.0]
    assert candidate_ratios(0.95, [0.612, float("inf"), -1.0]) == [0.0, 0.25, 0.5, 0.65, 0.75, 0.95]
    assert candidate_ratios(0.6, [0.9]) == [0.0, 0.25, 0.5, 0.6]  # every candidate within a goal's cap
    assert set(COMPARED) <= set(candidate_ratios(0.95))


def test_retention_interpolates_its_curve_per_kind_and_falls_back_to_the_conservative_line():
    ret = Retention({"long": RetentionCurve((0.0, 0.5, 1.0), (1.0, 0.8, 0.0))})
    assert ret.at(0.0, "long") == 1.0 and ret.at(0.25, "long") == pytest.approx(0.9)
    assert ret.at(0.75, "long") == pytest.approx(0.4)
    assert ret.at(0.5, "choice") == pytest.approx(0.5) == CONSERVATIVE.at(0.5, "short")


def test_a_request_is_read_as_a_choice_a_short_question_or_a_long_context():
    assert request_kind(2000, min_useful_tokens=1) == "choice"
    assert request_kind(40, choices=True) == "choice"
    assert request_kind(40) == "short" and request_kind(1500) == "long" and request_kind(1500, 8) == "long"


def test_a_retention_file_round_trips_and_a_bad_one_names_the_file_and_the_fix(tmp_path):
    ret = Retention({"choice": RetentionCurve((0.0, 0.95), (1.0, 0.97), 40)})
    path = ret.save(tmp_path / "r.yaml", "m", "snapkv", "test")
    back = Retention.load(path)
    assert back.at(0.95, "choice") == pytest.approx(0.97) and back.source == str(path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("curves: {long: {ratios: [0, 0.5], quality: [1.0, 1.7]}}")
    with pytest.raises(ValueError, match=r"bad.yaml is not usable.*\[0, 1\].*timebill retention"):
        Retention.load(bad)
    with pytest.raises(ValueError, match="missing.yaml.*timebill retention"):
        Retention.load(tmp_path / "missing.yaml")
    bad.write_text("curves: {medium: {ratios: [0, 0.5], quality: [1.0, 0.7]}}")
    with pytest.raises(ValueError, match="unknown kinds"):
        Retention.load(bad)


def test_the_embedded_model_ships_its_measured_curves_and_auto_finds_them(tmp_path):
    from timebill.models import EMBEDDED_NAME
    from timebill.retention import load_retention, shipped_path

    assert shipped_path(EMBEDDED_NAME, "snapkv").is_file()
    said = []
    ret = load_retention("auto", EMBEDDED_NAME, "snapkv", cache_dir=tmp_path, say=said.append)
    assert set(ret.curves) == {"choice", "short", "long"} and not said
    other = load_retention("auto", "some-other-model", "snapkv", cache_dir=tmp_path, say=said.append)
    assert other is CONSERVATIVE and "timebill retention" in said[0]


# --- through the estimator -------------------------------------------------------------------------
LONG = " ".join(f"The robot checked shelf {i} in the warehouse and found nothing unusual there." for i in range(20))


def test_the_estimator_plans_the_best_expected_score_and_no_fixed_ratio_is_expected_to_do_better(tiny):
    from timebill.estimator import Estimator
    from timebill.length_predictor import ConstantLengthPredictor
    from timebill.request import Request
    from timebill.time_model import TimeModel

    tm = TimeModel(a=1e-7, b=1e-3, c=0.02, p=5e-5, q=0.01)
    ret = Retention({"long": RetentionCurve((0.0, 0.5, 0.75, 0.95), (1.0, 0.95, 0.8, 0.1))})
    est = Estimator(tiny, tm, ConstantLengthPredictor(expected=100), retention=ret)  # planner: score, the default
    req = Request(LONG, budget=60.0, max_new_tokens=128)
    n = len(est.encode(req))
    assert n >= 600
    # a budget in which the 100-token answer fits at about 0.6, not below
    budget = tm.end_to_end(n, 100, 0.6) + 1e-3
    plan = est.estimate(Request(LONG, budget=budget, max_new_tokens=128, length_control=False)).plan
    assert 0.5 < plan.eviction_ratio <= 0.75 and plan.completion_probability == pytest.approx(1.0)
    assert plan.expected_quality == pytest.approx(ret.at(plan.eviction_ratio, "long"))
    for fixed in (0.0, *COMPARED):
        other = est.estimate(Request(LONG, budget=budget, max_new_tokens=128, fixed_eviction_ratio=fixed,
                                     length_control=False)).plan
        assert plan.expected_score >= other.completion_probability * other.expected_quality - NOISE
    # with time to spare nothing is evicted
    assert est.estimate(Request(LONG, budget=600.0, max_new_tokens=128)).plan.eviction_ratio == 0.0


def test_a_measured_curve_is_made_non_increasing_without_carrying_one_noisy_point_along():
    from timebill.evaluation.retention import monotone

    assert monotone([1.0, 0.87, 0.976, 0.907, 0.119]) == pytest.approx([1.0, 0.923, 0.923, 0.907, 0.119])
    assert monotone([1.0, 1.05, 0.9, 0.95, -0.1]) == pytest.approx([1.0, 1.0, 0.925, 0.925, 0.0])


def test_a_configured_fixed_ratio_turns_the_planner_off_for_every_goal_and_a_bad_one_is_refused(tiny, tmp_path):
    from conftest import slow_time_model
    from timebill.config import load_config
    from timebill.request import Request
    from timebill.runtime import build_estimator

    path = slow_time_model().save(tmp_path / "tm.yaml")
    cfg = load_config(overrides={"time_model": str(path), "length_predictor": "constant", "fixed_eviction_ratio": 0.5})
    est = build_estimator(cfg, loaded=tiny, progress=False)
    plan = est.estimate(Request(LONG, budget=600.0, max_new_tokens=16)).plan
    assert plan.eviction_ratio == 0.5 and plan.answer_words == 0
    assert build_estimator({**cfg, "fixed_eviction_ratio": -1.0}, loaded=tiny, progress=False).fixed_eviction_ratio is None
    with pytest.raises(ValueError, match="fixed_eviction_ratio must be in"):
        build_estimator({**cfg, "fixed_eviction_ratio": 1.5}, loaded=tiny, progress=False)
