"""The paper's experiment on this machine: completion rate and average score against the budget.

  python -m timebill.evaluation --preset small            # a few prompts, two budgets: minutes
  python -m timebill.evaluation --preset full --out docs/eval

How it runs (and what is replayed):
* Every job is generated to completion once per (prompt, eviction ratio) with the serving engine
  (greedy, chat template) and its real end-to-end time is recorded; the record is cached on disk
  (resumable). Fixed-ratio methods are replayed from these records against every budget.
* TimeBill plans its ratio live, per (prompt, budget), with the trained RLP (calibrated bound) and
  the machine's timing model corrected online, as served, by the recorded runs of the prompts
  before: `timebill` is the default (`planner: budget`, `length_control: true`),
  `timebill_budget` the same planner without length control, `timebill_paper` the paper's closed
  form (`planner: paper`). The generation at the chosen ratio (and, under length control, of the
  prompt with its word limit) is the record for it (recorded when first needed), and the job's
  time is the predictors' measured latency plus the record's time. QASPER's goals, yes/no
  questions, say `min_useful_tokens: 1`. A job whose plan says nothing useful fits is answered
  INFEASIBLE, as served with the default `reject_infeasible: true`: not completed, scored as
  empty, and it occupies no time.
* Kill: a job completes iff its time <= budget; a killed job scores as empty. Skip-Next: jobs are
  released one per period = budget; an overrunning job finishes (late: not completed, scores as
  empty) and the jobs released while it runs are skipped.
* Data: NarrativeQA and QASPER yes/no (long contexts), and everyday questions (TruthfulQA's short
  questions); every set's `eval` half only (timebill.evaluation.datasets.half_of: the `train`
  halves are the length predictor's; everyday at budgets of 0.5-10 s).
* A live check re-runs a subset under real Kill (deadline enforced by the engine) and reports how
  often the live outcome agrees with the replayed one.
* The paper's k is swept at one tight budget (replayed the same way).
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import sys
import time
from dataclasses import dataclass
from statistics import median
from typing import Callable

import numpy as np

from ..engine import BudgetedEngine
from ..estimator import Estimator
from ..length_control import system_prompt_of
from ..length_predictor import ConstantLengthPredictor
from ..profiler import mape
from ..request import Outcome, Request
from ..time_model import OnlineCalibration, kept_positions
from . import compare, datasets, metrics, schedule

FIXED = (0.0, 0.25, 0.5, 0.75, 0.95)
K_SWEEP = (1.0, 2.0, 3.0, 5.0, 8.0)


@dataclass
class Task:
    name: str
    load: Callable[[int], list]
    system: str
    question_suffix: str
    max_new_tokens: int
    context_cap: int                         # context tokens kept (QASPER papers are long)
    score_name: str
    score: Callable[[str, "datasets.Item"], float]
    budgets: tuple[float, ...] = ()          # fixed budgets (s); empty: chosen from the no-eviction times
    min_useful_tokens: int = 0               # what the task's goals say is worth starting (0 = the default)

    def request(self, prompt: str, budget: float, **kw) -> Request:
        return Request(prompt, budget=budget, system_prompt=self.system, max_new_tokens=self.max_new_tokens,
                       min_useful_tokens=self.min_useful_tokens, **kw)

    def prompt(self, item, tokenizer) -> str:
        if not item.context:
            return item.question + self.question_suffix
        ids = tokenizer(item.context, add_special_tokens=False)["input_ids"]
        context = item.context if len(ids) <= self.context_cap else tokenizer.decode(ids[: self.context_cap])
        return f"{context}\n\nQuestion: {item.question}{self.question_suffix}"


TASKS = {
    "narrativeqa": Task(
        "narrativeqa", datasets.narrativeqa, "Answer the question about the story in one short sentence.", "",
        max_new_tokens=64, context_cap=1536, score_name="rouge_l",
        score=lambda pred, it: metrics.best(metrics.rouge_l, pred, list(it.references))),
    "qasper": Task(
        "qasper", datasets.qasper_yesno, "Answer the question about the paper with yes or no.",
        "\nAnswer yes or no.", max_new_tokens=32, context_cap=1536, score_name="accuracy",
        score=lambda pred, it: metrics.yes_no_accuracy(pred, it.references[0]),
        # A yes/no question's goal says so: one token is a useful answer (a goal field, min_useful_tokens).
        min_useful_tokens=1),
    # What a robot's user asks: a short question, no system prompt, the answer as long as the model
    # makes it (up to 128 tokens, ~1.2 s on the llamacpp backend), at budgets from 0.5 to 10 s
    # (from 1 s on, no eviction completes them nearly all).
    "everyday": Task(
        "everyday", datasets.everyday, "", "", max_new_tokens=128, context_cap=0, score_name="rouge_l",
        score=lambda pred, it: metrics.best(metrics.rouge_l, pred, list(it.references)),
        budgets=(0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 10.0)),
}

PRESETS = {
    "small": {"narrativeqa": 3, "qasper": 2, "everyday": 4, "context_cap": 768, "budgets": 2, "confirm": 2},
    "medium": {"narrativeqa": 12, "qasper": 8, "everyday": 12, "context_cap": 1024, "budgets": 6, "confirm": 2},
    "full": {"narrativeqa": 40, "qasper": 30, "everyday": 30, "context_cap": 1536, "budgets": 7, "confirm": 6},
}


def alpha_key(alpha: float) -> str:
    return f"{alpha:.4f}"


class Recorder:
    """Runs each (item, ratio) once to completion and caches the record as a JSON line."""

    def __init__(self, engine: BudgetedEngine, path: pathlib.Path):
        self.engine = engine
        self.path = path
        self.records: dict[tuple[str, str], dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.records[(rec["item"], rec["alpha_key"])] = rec

    def get(self, item_id: str, prompt: str, system: str, alpha: float, max_new: int, variant: str = "") -> dict:
        """``variant`` names a prompt other than the task's own for this item (length control)."""
        key = (item_id, alpha_key(alpha) + variant)
        if key not in self.records:
            r = self.engine.generate(Request(prompt, budget=3600.0, system_prompt=system, max_new_tokens=max_new,
                                             policy="skip_next", fixed_alpha=float(alpha_key(alpha))))
            rec = {"item": item_id, "alpha_key": key[1], "variant": variant, "alpha": r.alpha, "text": r.text, "total": r.total_time,
                   "prefill": r.prefill_time, "tokens": r.generated_tokens, "prompt_tokens": r.prompt_tokens,
                   "stop": r.stop_reason, "cached": r.cached_tokens, "steps": [round(t, 6) for t in r.step_times]}
            with self.path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            self.records[key] = rec
        return self.records[key]


def observe_record(calibration: OnlineCalibration, rec: dict) -> None:
    """Teach the online calibration one recorded job, as the engine does after serving it.
    (Records made before step times were kept teach nothing.)"""
    if rec.get("steps") and rec["tokens"]:
        calibration.observe(rec["prompt_tokens"], rec["prefill"], rec["cached"], rec["steps"])


def planned_record(recorder: Recorder, item_id: str, prompt: str, est, max_new: int) -> dict:
    """The recorded run of what ``est`` planned: its ratio and its request's prompt (with length
    control's word limit, a variant of the item's prompt recorded on its own)."""
    words = est.request.answer_words
    return recorder.get(item_id, prompt, system_prompt_of(est.request), est.plan.alpha, max_new,
                        variant=f"/w{words}" if words else "")


def timebill_time(estimate, rec: dict) -> float:
    """A replayed TimeBill job's end-to-end time: its own measured length-prediction latency (both
    predictions under length control; they run inside the budget) plus the recorded run of its plan."""
    return estimate.predictor_latency + rec["total"]


def choose_budgets(durations: list[float], count: int) -> list[float]:
    """From where no eviction completes almost nothing to where it completes almost everything."""
    qs = np.linspace(0.05, 0.95, count) if count > 2 else np.array([0.3, 0.7])
    return sorted({round(float(np.quantile(durations, q)), 1) for q in qs})


def task_budgets(task: Task, durations: list[float], count: int) -> list[float]:
    """The task's own budgets (thinned to ``count``, keeping both ends), else chosen from the times."""
    if not task.budgets:
        return choose_budgets(durations, count)
    picks = np.linspace(0, len(task.budgets) - 1, min(max(count, 2), len(task.budgets)))
    return sorted({task.budgets[int(round(i))] for i in picks})


def replay_outcomes(replay, jobs: list[dict], budget: float) -> list:
    """Replay ``jobs`` under a strategy; a job answered INFEASIBLE completes nothing and takes no time."""
    outcomes = replay([0.0 if j.get("infeasible") else j["total"] for j in jobs], budget)
    return [schedule.Replayed(completed=False, delivered=o.delivered, skipped=o.skipped) if j.get("infeasible") else o
            for j, o in zip(jobs, outcomes)]


def run(preset: str, out: pathlib.Path, budgets_arg: list[float] | None, tasks: list[str], threads: int, cfg_path=None) -> dict:
    from tqdm import tqdm

    from ..config import load_config
    from ..models import load_model
    from ..rlp.predictor import RLPPredictor
    from ..runtime import configured_press, load_or_profile_time_model

    p = PRESETS[preset]
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(cfg_path)
    loaded = load_model(cfg.get("model") or "embedded", cfg.get("cache_dir") or None, threads=threads)
    tm = load_or_profile_time_model(cfg, loaded, say=lambda m: print(f"[eval] {m}", flush=True))
    press = configured_press(cfg)
    recorder_engine = BudgetedEngine(Estimator(loaded, tm, ConstantLengthPredictor(), press=press),
                                     reject_infeasible=False, learn_online=False)
    recorder_engine.warm_up()
    # As served, TimeBill plans with the profiled model corrected online by the jobs already run:
    # here, before planning prompt i, the calibration has seen the recorded runs of prompts < i.
    calibration = OnlineCalibration(tm)
    calibrated_rlp = RLPPredictor(loaded, bound="calibrated")
    # As configured by default otherwise (calibrated bound, alpha_max 0.95, median speed):
    # `timebill` is the default (budget planner, length control), the others leave one part out.
    planners = {
        "timebill": Estimator(loaded, calibration, calibrated_rlp, press=press, planner="budget", length_control=True),
        "timebill_budget": Estimator(loaded, calibration, calibrated_rlp, press=press, planner="budget",
                                     length_control=False),
        "timebill_paper": Estimator(loaded, calibration, calibrated_rlp, press=press, planner="paper", length_control=False),
    }
    # The paper's k sweep: its planner with its bound k x predicted length.
    k_planner = Estimator(loaded, calibration, RLPPredictor(loaded, bound="paper", k=5.0), press=press, planner="paper",
                          length_control=False)
    report = {"preset": preset, "model": loaded.name, "machine": platform.node(), "threads": threads,
              "date": time.strftime("%Y-%m-%d %H:%M"), "tasks": {}}
    for tname in tasks:
        task = TASKS[tname]
        if task.context_cap:  # tasks without contexts have none to cap
            task.context_cap = p["context_cap"]
        items = task.load(p[tname])
        recorder = Recorder(recorder_engine, out / f"records-{tname}-{preset}.jsonl")
        prompts = {it.id: task.prompt(it, loaded.tokenizer) for it in items}
        # 1. fixed ratios (and no eviction), recorded once each
        bar = tqdm(total=len(items) * len(FIXED), desc=f"{tname}: fixed ratios", dynamic_ncols=True)
        for it in items:
            for a in FIXED:
                recorder.get(it.id, prompts[it.id], task.system, a, task.max_new_tokens)
                bar.update(1)
        bar.close()
        none_durations = [recorder.records[(it.id, alpha_key(0.0))]["total"] for it in items]
        budgets = budgets_arg or task_budgets(task, none_durations, p["budgets"])
        # 2. TimeBill: plan live per (item, budget), generate at that ratio (recorded once per ratio)
        tb_jobs = {m: {b: [] for b in budgets} for m in planners}
        bar = tqdm(total=len(items) * len(budgets) * len(planners), desc=f"{tname}: TimeBill", dynamic_ncols=True)
        for i, it in enumerate(items):
            if i > 0:
                for a in FIXED:
                    observe_record(calibration, recorder.records[(items[i - 1].id, alpha_key(a))])
            for m, est in planners.items():
                for b in budgets:
                    e = est.estimate(task.request(prompts[it.id], b))
                    rec = planned_record(recorder, it.id, prompts[it.id], e, task.max_new_tokens)
                    tb_jobs[m][b].append({"item": it.id, "alpha": rec["alpha"], "total": timebill_time(e, rec),
                                          "text": rec["text"], "predicted_total": e.plan.predicted_total,
                                          "predicted_worst": e.plan.predicted_worst_case, "feasible": e.plan.feasible,
                                          "infeasible": not e.plan.useful_fits, "tokens_that_fit": e.plan.tokens_that_fit,
                                          "predicted_tokens": e.length.expected, "bound": e.length.bound,
                                          "tokens": rec["tokens"], "words": e.request.answer_words})
                    bar.update(1)
        bar.close()
        # 3. scores, fidelity, replay under both strategies
        ref_text = {it.id: recorder.records[(it.id, alpha_key(0.0))]["text"] for it in items}
        by_id = {it.id: it for it in items}

        def score_job(j):
            return task.score(j["text"], by_id[j["item"]])

        methods = {}
        for a in FIXED:
            name = "none" if a == 0 else f"fixed_{a:.2f}"
            methods[name] = {b: [{"item": it.id, "total": recorder.records[(it.id, alpha_key(a))]["total"],
                                  "text": recorder.records[(it.id, alpha_key(a))]["text"], "alpha": a} for it in items]
                             for b in budgets}
        methods.update(tb_jobs)
        table = []
        for strategy, replay in (("kill", schedule.kill), ("skip_next", schedule.skip_next)):
            for m, per_budget in methods.items():
                for b in budgets:
                    jobs = per_budget[b]
                    outcomes = replay_outcomes(replay, jobs, b)
                    scores = [score_job(j) if o.completed else 0.0 for j, o in zip(jobs, outcomes)]
                    table.append({"strategy": strategy, "method": m, "budget": b,
                                  "completion_rate": float(np.mean([o.completed for o in outcomes])),
                                  "avg_score": float(np.mean(scores)),
                                  "skipped": int(sum(o.skipped for o in outcomes)),
                                  "infeasible": int(sum(bool(j.get("infeasible")) for j in jobs)),
                                  "mean_alpha": float(np.mean([j["alpha"] for j in jobs]))})
        fixed_names = [m for m in methods if m == "none" or m.startswith("fixed_")]
        versus = []
        bar = tqdm(total=2 * len(budgets), desc=f"{tname}: timebill vs the best fixed ratio (bootstrap)", dynamic_ncols=True)
        for strategy, replay in (("kill", schedule.kill), ("skip_next", schedule.skip_next)):
            for b in budgets:
                cmp = compare.versus_best_fixed({m: methods[m][b] for m in ["timebill", *fixed_names]}, "timebill",
                                                fixed_names, replay, b, score_job)
                gain = compare.versus_best_fixed({m: methods[m][b] for m in ("timebill", "timebill_budget")},
                                                 "timebill", ["timebill_budget"], replay, b, score_job)
                versus.append({"strategy": strategy, "budget": b, **cmp, "length_control_gain": gain})
                bar.update(1)
        bar.close()
        fidelity = {}
        for m, per_budget in methods.items():
            vals = [metrics.rouge_l(j["text"], ref_text[j["item"]]) for b in budgets for j in per_budget[b]]
            fidelity[m] = float(np.mean(vals))
        quality_uncapped = {m: float(np.mean([score_job(j) for b in budgets for j in pb[b]]))
                            for m, pb in methods.items()}
        tm_acc = {}
        for m in planners:
            jobs = [j for b in budgets for j in tb_jobs[m][b]]
            tm_acc[m] = {"jobs": len(jobs),
                         "mape_pct": mape([j["predicted_total"] for j in jobs], [j["total"] for j in jobs]),
                         "over_worst_case": float(np.mean([j["total"] > j["predicted_worst"] for j in jobs])),
                         "length_mae": float(np.mean([abs(j["predicted_tokens"] - j["tokens"]) for j in jobs])),
                         "mean_predicted_tokens": float(np.mean([j["predicted_tokens"] for j in jobs])),
                         "mean_bound": float(np.mean([j["bound"] for j in jobs])),
                         "mean_tokens": float(np.mean([j["tokens"] for j in jobs])),
                         "bound_covers": float(np.mean([j["tokens"] <= j["bound"] for j in jobs])),
                         "alpha_counts": alpha_counts([j["alpha"] for j in jobs], planners[m].alpha_max),
                         "infeasible": infeasible_counts(tb_jobs[m], none_durations_by_id(recorder, items)),
                         "points": [[j["predicted_total"], j["total"]] for j in jobs]}
        timing = timing_of_records([recorder.records[(it.id, alpha_key(a))] for it in items for a in FIXED], tm,
                                   task.max_new_tokens)
        # 4. the paper's k at one tight budget (the calibration as it stands after the last prompt's planning)
        sweep = k_sweep(k_planner, items, prompts, task, budgets[min(1, len(budgets) - 1)], recorder)
        # 5. live check of the replay under real Kill
        confirm = live_check(recorder_engine, planners["timebill"], items[: p["confirm"]], prompts, task, budgets, recorder)
        report["tasks"][tname] = {"items": len(items), "context_cap": task.context_cap, "max_new_tokens": task.max_new_tokens,
                                  "score": task.score_name, "budgets": budgets, "table": table, "fidelity_rouge_l": fidelity,
                                  "score_without_deadline": quality_uncapped, "versus_best_fixed": versus, "time_model": tm_acc, "live_check": confirm,
                                  "k_sweep": sweep, "timing": timing, "calibration": {"prefill_scale": calibration.prefill_scale,
                                                                    "decode_scale": calibration.decode_scale},
                                  "no_eviction_time_median": float(median(none_durations))}
        print_task(tname, report["tasks"][tname])
    (out / f"results-{preset}.json").write_text(json.dumps(report, indent=1))
    plot(report, out, preset)
    return report


def timing_of_records(records: list[dict], tm, max_new_tokens: int) -> dict:
    """How well the profiled timing model (no online correction) predicts the recorded runs, given
    their real lengths; and how much time eviction can buy at all on this machine."""
    ratios = [r["total"] / tm.end_to_end(r["prompt_tokens"], r["tokens"], r["alpha"]) for r in records]
    n = int(median(r["prompt_tokens"] for r in records))
    full = tm.end_to_end(n, max_new_tokens, 0.0)
    saved = tm.decode(n, max_new_tokens) - tm.decode(kept_positions(n, 0.95), max_new_tokens)
    return {"runs": len(records), "ratio_median": float(median(ratios)), "ratio_p90": float(np.percentile(ratios, 90)),
            "median_prompt_tokens": n, "full_time_s": full, "saved_at_0.95_s": saved}


def none_durations_by_id(recorder: Recorder, items) -> dict:
    return {it.id: recorder.records[(it.id, alpha_key(0.0))]["total"] for it in items}


def infeasible_counts(jobs_by_budget: dict, none_time: dict) -> dict:
    """Per budget: jobs answered INFEASIBLE, and how many of them no eviction would have completed
    (the issue's criterion: none should be)."""
    out = {}
    for b, jobs in jobs_by_budget.items():
        refused = [j for j in jobs if j.get("infeasible")]
        out[b] = {"infeasible": len(refused), "of_which_no_eviction_completes": sum(none_time[j["item"]] <= b for j in refused)}
    return out


def alpha_counts(alphas: list[float], alpha_max: float) -> dict:
    """How often the planner kept everything, evicted the most it may, or chose a ratio between."""
    top = [a >= alpha_max - 1e-9 for a in alphas]
    return {"none": sum(a == 0 for a in alphas), "alpha_max": sum(top),
            "between": sum(0 < a and not t for a, t in zip(alphas, top))}


def k_sweep(planner: Estimator, items, prompts, task, budget: float, recorder) -> list[dict]:
    """TimeBill with the paper's bound k * N_hat for several k, at one budget, under Kill."""
    from tqdm import tqdm

    rlp, k_was = planner.length_predictor, planner.length_predictor.k
    rows = []
    bar = tqdm(total=len(items) * len(K_SWEEP), desc=f"{task.name}: k sweep at {budget:.1f} s", dynamic_ncols=True)
    try:
        for k in K_SWEEP:
            rlp.k = k
            totals, texts, alphas, bounds = [], [], [], []
            for it in items:
                e = planner.estimate(task.request(prompts[it.id], budget))
                rec = planned_record(recorder, it.id, prompts[it.id], e, task.max_new_tokens)
                totals.append(timebill_time(e, rec))
                texts.append(rec["text"])
                alphas.append(e.plan.alpha)
                bounds.append(e.length.bound)
                bar.update(1)
            done = [o.completed for o in schedule.kill(totals, budget)]
            scores = [task.score(text, it) if ok else 0.0 for text, it, ok in zip(texts, items, done)]
            rows.append({"k": k, "budget": budget, "completion_rate": float(np.mean(done)), "avg_score": float(np.mean(scores)),
                         "mean_alpha": float(np.mean(alphas)), "mean_bound": float(np.mean(bounds))})
    finally:
        rlp.k = k_was
        bar.close()
    return rows


def live_check(engine, planner, items, prompts, task, budgets, recorder) -> dict:
    """Re-run a subset live under real Kill (the engine enforces the deadline; TimeBill plans with
    the RLP in the loop) and compare each outcome with the replayed one."""
    if not items:
        return {"jobs": 0}
    check_budgets = [budgets[len(budgets) // 3], budgets[(2 * len(budgets)) // 3]] if len(budgets) > 2 else budgets
    timebill = BudgetedEngine(planner, learn_online=False)  # reject_infeasible as served by default
    agree = total = 0
    for it in items:
        for b in check_budgets:
            for kind in ("none", "fixed_0.50", "timebill"):
                req = task.request(prompts[it.id], b, policy="kill")
                if kind == "timebill":
                    est = planner.estimate(req)
                    rec = planned_record(recorder, it.id, prompts[it.id], est, task.max_new_tokens)
                    replay_done = est.plan.useful_fits and timebill_time(est, rec) <= b
                    live = timebill.generate(req)
                else:
                    req.fixed_alpha = 0.0 if kind == "none" else 0.5
                    rec = recorder.get(it.id, prompts[it.id], task.system, req.fixed_alpha, task.max_new_tokens)
                    replay_done = rec["total"] <= b
                    live = engine.generate(req)
                live_done = live.outcome is Outcome.COMPLETED and live.deadline_met
                agree += live_done == replay_done
                total += 1
    return {"jobs": total, "agreement": agree / total, "budgets": check_budgets}


def print_task(name: str, t: dict) -> None:
    context = f"context cap {t['context_cap']} tokens" if t["context_cap"] else "no context"
    print(f"\n=== {name}: {t['items']} prompts, {context}, max {t['max_new_tokens']} new tokens, "
          f"no-eviction median time {t['no_eviction_time_median']:.2f} s")
    for strategy in ("kill", "skip_next"):
        print(f"-- {strategy}: completion rate / average {t['score']} per budget (s)")
        print(f"{'method':>14} " + " ".join(f"{b:>11.1f}" for b in t["budgets"]))
        methods = sorted({r["method"] for r in t["table"]}, key=list(dict.fromkeys(r["method"] for r in t["table"])).index)
        for m in methods:
            cells = []
            for b in t["budgets"]:
                r = next(x for x in t["table"] if x["strategy"] == strategy and x["method"] == m and x["budget"] == b)
                cells.append(f"{r['completion_rate']:.2f}/{r['avg_score']:.3f}")
            print(f"{m:>14} " + " ".join(f"{c:>11}" for c in cells))
    print_versus(t.get("versus_best_fixed", []))
    print("fidelity (ROUGE-L vs the uncompressed answer): " + ", ".join(f"{m} {v:.3f}" for m, v in t["fidelity_rouge_l"].items()))
    for m, acc in t["time_model"].items():
        print(f"time model, {m}: MAPE {acc['mape_pct']:.1f} % over {acc['jobs']} jobs; measured > predicted worst case "
              f"in {100 * acc['over_worst_case']:.1f} %; length MAE {acc['length_mae']:.1f} tokens")
    tg = t["timing"]
    print(f"timing model on the {tg['runs']} recorded runs (their real lengths): measured/predicted median "
          f"{tg['ratio_median']:.3f}, p90 {tg['ratio_p90']:.3f}; at the median prompt ({tg['median_prompt_tokens']} tokens) "
          f"a {t['max_new_tokens']}-token answer takes {tg['full_time_s']:.2f} s and evicting 95 % of the cache saves "
          f"{tg['saved_at_0.95_s']:.2f} s of it")
    cal = t["calibration"]
    print(f"online calibration after the run: prefill x{cal['prefill_scale']:.3f}, decode x{cal['decode_scale']:.3f}")
    for m, acc in t["time_model"].items():
        c = acc["alpha_counts"]
        print(f"{m}: predicted length {acc['mean_predicted_tokens']:.1f} (bound {acc['mean_bound']:.1f}) vs generated "
              f"{acc['mean_tokens']:.1f} tokens on average, bound covers {100 * acc['bound_covers']:.0f} %; "
              f"alpha = 0 in {c['none']}, = alpha_max in {c['alpha_max']}, between in {c['between']} jobs")
        refused = acc["infeasible"]
        print(f"{m}: INFEASIBLE (nothing useful fits) per budget: " + ", ".join(
            f"{float(b):g} s: {r['infeasible']} ({r['of_which_no_eviction_completes']} that no eviction completes)"
            for b, r in refused.items()))
    if t["k_sweep"]:
        print(f"k sweep (paper bound, Kill, budget {t['k_sweep'][0]['budget']:.1f} s): " + ", ".join(
            f"k={r['k']:g}: {r['completion_rate']:.2f}/{r['avg_score']:.3f} (alpha {r['mean_alpha']:.2f})" for r in t["k_sweep"]))
    lc = t["live_check"]
    if lc.get("jobs"):
        print(f"live Kill check: {lc['jobs']} jobs, replay agrees with live in {100 * lc['agreement']:.0f} %")


def print_versus(rows: list[dict]) -> None:
    """timebill minus the best fixed ratio per cell, with its 95 % bootstrap interval over prompts."""
    if not rows:
        return

    def interval(c: dict) -> str:
        return f"{c['difference']:+.3f} [{c['interval_95'][0]:+.3f}, {c['interval_95'][1]:+.3f}]"

    print("-- timebill minus the best fixed ratio (completion rate; average score), 95 % bootstrap interval over prompts")
    for r in rows:
        cells = []
        for k in ("completion_rate", "avg_score"):
            c = r[k]
            mark = {"at_least": "", "within_variation": " (within)", "worse": " WORSE"}[c["verdict"]]
            cells.append(interval(c) + mark)
        print(f"{r['strategy']:>9} {r['budget']:>5.2f} s: " + "; ".join(cells))
    worse = sum(r[k]["verdict"] == "worse" for r in rows for k in ("completion_rate", "avg_score"))
    print(f"cells where timebill is worse beyond the interval: {worse} of {2 * len(rows)}")
    print("-- what length control adds: timebill minus timebill_budget (completion rate; average score), 95 % bootstrap interval")
    for r in rows:
        c = r.get("length_control_gain")
        if c:
            print(f"{r['strategy']:>9} {r['budget']:>5.2f} s: " + "; ".join(interval(c[k]) for k in ("completion_rate", "avg_score")))


def plot(report: dict, out: pathlib.Path, preset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report["tasks"])
    fig, axes = plt.subplots(len(tasks) * 2, 2, figsize=(11, 4.2 * len(tasks) * 2), squeeze=False)
    for ti, tname in enumerate(tasks):
        t = report["tasks"][tname]
        for si, strategy in enumerate(("kill", "skip_next")):
            rows = [r for r in t["table"] if r["strategy"] == strategy]
            for m in dict.fromkeys(r["method"] for r in rows):
                rs = [r for r in rows if r["method"] == m]
                style = "-o" if m.startswith("timebill") else "--."
                axes[ti * 2 + si][0].plot([r["budget"] for r in rs], [r["completion_rate"] for r in rs], style, label=m)
                axes[ti * 2 + si][1].plot([r["budget"] for r in rs], [r["avg_score"] for r in rs], style, label=m)
            axes[ti * 2 + si][0].set_title(f"{tname}, {strategy}: completion rate")
            axes[ti * 2 + si][1].set_title(f"{tname}, {strategy}: average {t['score']}")
            for ax in axes[ti * 2 + si]:
                ax.set_xlabel("time budget (s)")
                ax.grid(alpha=0.3)
            axes[ti * 2 + si][1].legend(fontsize=7)
    fig.suptitle(f"TimeBill on {report['model']}, CPU ({report['threads']} threads), preset {preset}")
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # leave the suptitle its own band above the top panels
    fig.savefig(out / f"completion_score-{preset}.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    for tname in tasks:
        for m, acc in report["tasks"][tname]["time_model"].items():
            pts = np.array(acc["points"])
            if len(pts):
                ax.scatter(pts[:, 1], pts[:, 0], s=10, label=f"{tname} {m}")
    lim = ax.get_xlim()[1]
    ax.plot([0, lim], [0, lim], "k--", lw=1)
    ax.set_xlabel("measured end-to-end time (s)")
    ax.set_ylabel("predicted (expected) time (s)")
    ax.legend(fontsize=7)
    ax.set_title("TimeBill: predicted vs measured time")
    fig.tight_layout()
    fig.savefig(out / f"predicted_vs_measured-{preset}.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for tname in tasks:
        rows = report["tasks"][tname]["k_sweep"]
        label = f"{tname} ({rows[0]['budget']:.1f} s)" if rows else tname
        axes[0].plot([r["k"] for r in rows], [r["completion_rate"] for r in rows], "-o", label=label)
        axes[1].plot([r["k"] for r in rows], [r["avg_score"] for r in rows], "-o", label=label)
    axes[0].set_title("completion rate vs k (Kill)")
    axes[1].set_title("average score vs k (Kill)")
    for ax in axes:
        ax.set_xlabel("k (worst case = k x predicted length)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"k_sweep-{preset}.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m timebill.evaluation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--out", default="docs/eval")
    ap.add_argument("--budgets", help="comma-separated seconds (default: chosen from the no-eviction times)")
    ap.add_argument("--tasks", default="narrativeqa,qasper,everyday")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config")
    args = ap.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")] if args.budgets else None
    if budgets is not None and not all(math.isfinite(b) and b > 0 for b in budgets):
        print("budgets must be positive numbers of seconds", file=sys.stderr)
        return 2
    try:
        run(args.preset, pathlib.Path(args.out), budgets, args.tasks.split(","), args.threads, args.config)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
