"""The paper's experiment on this machine: completion rate and average score against the budget.

  python -m timebill.evaluation --preset small            # a few prompts, two budgets: minutes
  python -m timebill.evaluation --preset full --out docs/eval

How it runs (and what is replayed):
* Every job is generated to completion once per (prompt, eviction ratio) with the serving engine
  (greedy, chat template) and its real end-to-end time is recorded; the record is cached on disk
  (resumable). No eviction's times choose the budgets (a probe run per prompt not yet recorded),
  then prompt by prompt its fixed ratios (no eviction included) and TimeBill's plans are recorded
  one after the other: a prompt's prefill is
  computed and timed once for all its ratios (the ratio only changes what is evicted after it:
  timebill/evaluation/prefill_once.py), and a drift in the machine's speed falls on all of a
  prompt's methods alike. Fixed-ratio methods are replayed from these records against every budget.
* TimeBill plans its ratio live, per (prompt, budget), with the trained RLP (calibrated bound) and
  the machine's timing model corrected online, as served, by the recorded runs of the prompts
  before (the methods and how they are built: timebill/evaluation/methods.py, through
  timebill/runtime.py as the nodes build theirs). Each job is replayed in the order the engine
  serves it (timebill/evaluation/served_order.py): with `predict_in_prefill: true` the length is
  read from the prompt's own prefill, so no predictor pass enters the budget, and a word limit
  asked for by length control costs the prefills the engine spends on it. The generation at the
  chosen ratio (and, under length control, of the prompt with its word limit) is the record for it
  (recorded when first needed). QASPER's goals, yes/no questions, say `min_useful_tokens: 1`. A job
  whose plan says nothing useful fits is answered INFEASIBLE, as served with the default
  `reject_infeasible: true`: not completed, scored as empty, and it occupies no time.
* Kill: a job completes iff its time <= budget; a killed job scores as empty. Skip-Next: jobs are
  released one per period = budget; an overrunning job finishes (late: not completed, scores as
  empty) and the jobs released while it runs are skipped.
* Data: NarrativeQA and QASPER yes/no (long contexts), and everyday questions (TruthfulQA's short
  questions); every set's `eval` half only (timebill.evaluation.datasets.half_of: the `train`
  halves are the length predictor's; everyday at budgets of 0.5-10 s).
* A live check re-runs a subset under real Kill (deadline enforced by the engine) and reports how
  often the live outcome agrees with the replayed one.
* The paper's k is swept at one tight budget (replayed the same way).
* The bar (issue 20, timebill/evaluation/bar.py): per data set, strategy and budget, whether the
  default method (`default_method` in the results) meets it, with the differences, their 95 %
  intervals and half-widths; printed, in `results-<preset>.json` under each task's `bar`, and as
  Markdown in `bar-<preset>.md` beside it.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import sys
import time
from statistics import median

import numpy as np

from . import bar, metrics, schedule
from .accuracy import completion_calibration, none_durations_by_id, planner_accuracy, timing_of_records
from .budgets import task_budgets
from .checks import k_sweep, live_check
from .methods import DEFAULT, FIXED, PLANNERS, Methods, build_methods
from .records import Recorder, observe_record, ratio_key
from .report import plot, plot_bar, plot_reliability, print_task
from .served_order import replay_as_served
from .tasks import PRESETS, TASKS, Task

STRATEGIES = (("kill", schedule.kill), ("skip_next", schedule.skip_next))


def run(preset: str, out: pathlib.Path, budgets_arg: list[float] | None, tasks: list[str], threads: int, cfg_path=None) -> dict:
    from ..config import load_config
    from ..runtime import load_configured_model

    out.mkdir(parents=True, exist_ok=True)
    cfg = {**load_config(cfg_path), "threads": threads}
    loaded = load_configured_model(cfg)
    methods = build_methods(cfg, loaded, say=lambda m: print(f"[eval] {m}", flush=True))
    report = {"preset": preset, "model": loaded.name, "machine": platform.node(), "threads": threads,
              "date": time.strftime("%Y-%m-%d %H:%M"), "default_method": DEFAULT,
              "default_method_settings": PLANNERS[DEFAULT], "bar_rule": bar.RULES, "tasks": {}}
    for tname in tasks:
        report["tasks"][tname] = evaluate_task(TASKS[tname], PRESETS[preset], methods, loaded.tokenizer,
                                               out / f"records-{tname}-{preset}.jsonl", budgets_arg)
        print_task(tname, report["tasks"][tname])
    (out / f"results-{preset}.json").write_text(json.dumps(report, indent=1))
    (out / f"bar-{preset}.md").write_text(bar.markdown(report))
    print(f"\n=== the bar, every data set: {bar.summary([c for t in report['tasks'].values() for c in t['bar']])}\n"
          f"(written to {out / f'bar-{preset}.md'})")
    plot(report, out, preset)
    plot_bar(report, out, preset)
    plot_reliability(report, out, preset)
    return report


def evaluate_task(task: Task, p: dict, methods: Methods, tokenizer, records_path: pathlib.Path,
                  budgets_arg: list[float] | None) -> dict:
    """One task at preset ``p``: record, plan, replay under both strategies, compare, check."""
    if task.context_cap:  # tasks without contexts have none to cap
        task.context_cap = p["context_cap"]
    items = task.load(p[task.name])
    recorder = Recorder(methods.recorder, records_path)
    prompts = {it.id: task.prompt(it, tokenizer) for it in items}
    # 1. no eviction's times, which choose the budgets
    none_durations = no_eviction_times(recorder, items, prompts, task)
    budgets = budgets_arg or task_budgets(task, none_durations, p["budgets"])
    # 2. prompt by prompt, its fixed ratios, then TimeBill planned live per budget and generated at
    # that ratio (each record made once)
    tb_jobs = record_and_plan(methods, recorder, items, prompts, task, budgets)
    # 3. scores, fidelity, replay under both strategies
    by_id = {it.id: it for it in items}

    ref_text = {it.id: recorder.records[(it.id, ratio_key(0.0))]["text"] for it in items}

    def reference_score(j):
        return task.score(j["text"], by_id[j["item"]])

    def score_job(j):
        return metrics.rouge_l(j["text"], ref_text[j["item"]]) if task.scored_against_own_answer else reference_score(j)

    fixed = fixed_jobs(recorder, items, budgets)
    by_strategy = {strategy: {**fixed, **tb_jobs[strategy]} for strategy, _ in STRATEGIES}
    jobs, killed = by_strategy["kill"], tb_jobs["kill"]  # what is judged apart from a schedule: Kill's plans
    none_time = none_durations_by_id(recorder, items)
    table = replay_table(by_strategy, budgets, score_job)
    if task.scored_against_own_answer:  # the references' score as a second column
        for row, ref in zip(table, replay_table(by_strategy, budgets, reference_score)):
            row["avg_reference_score"] = ref["avg_score"]
    result = {"items": len(items), "context_cap": task.context_cap, "max_new_tokens": task.max_new_tokens,
              "score": f"{task.score_name} vs the model's own answer" if task.scored_against_own_answer else task.score_name,
              "budgets": budgets, "table": table,
              "fidelity_rouge_l": {m: float(np.mean([metrics.rouge_l(j["text"], ref_text[j["item"]])
                                                     for b in budgets for j in per_budget[b]]))
                                   for m, per_budget in jobs.items()},
              "score_without_deadline": {m: float(np.mean([score_job(j) for b in budgets for j in pb[b]]))
                                         for m, pb in jobs.items()},
              **compare_cells(by_strategy, list(fixed), budgets, score_job, ref_text, task.name, task.scored_against_own_answer),
              "time_model": {m: planner_accuracy(killed[m], est.max_eviction_ratio, none_time)
                             for m, est in methods.planners.items()},
              "odds": {m: completion_calibration(killed[m]) for m in methods.planners}}
    timing = timing_of_records([recorder.records[(it.id, ratio_key(a))] for it in items for a in FIXED],
                               methods.time_model, task.max_new_tokens)
    # 4. the paper's k at one tight budget (the calibration as it stands after the last prompt's planning)
    sweep = k_sweep(methods.k_planner, items, prompts, task, budgets[min(1, len(budgets) - 1)], recorder, methods.states)
    # 5. live check of the replay under real Kill
    confirm = live_check(methods.recorder, methods.planners[DEFAULT], items[: p["confirm"]], prompts, task,
                         budgets, recorder, methods.states)
    return {**result, "live_check": confirm, "k_sweep": sweep, "timing": timing,
            "calibration": {"prefill_scale": methods.calibration.prefill_scale,
                            "decode_scale": methods.calibration.decode_scale},
            "no_eviction_time_median": float(median(none_durations))}


def no_eviction_times(recorder: Recorder, items, prompts: dict, task: Task) -> list[float]:
    """Each prompt's time without eviction: its record where it has one, else a probe run (recorded
    as the variant "/budgets"), so that the record proper is made beside the prompt's other
    ratios (``record_and_plan``)."""
    from tqdm import tqdm

    times = []
    for it in tqdm(items, desc=f"{task.name}: no eviction (the budgets)", dynamic_ncols=True):
        rec = recorder.records.get((it.id, ratio_key(0.0))) or \
            recorder.get(it.id, prompts[it.id], task.system, 0.0, task.max_new_tokens, variant="/budgets")
        times.append(rec["total"])
    return times


def record_and_plan(methods: Methods, recorder: Recorder, items, prompts: dict, task: Task, budgets) -> dict:
    """Record each prompt's fixed ratios, then plan it: strategy -> method -> budget -> its jobs, in
    item order, each planned (with the strategy's overrun policy) and timed as the engine serves it
    (served_order.py). A prompt's records
    are made one after the other, so they share its prefill (prefill_once.py) and a drift in the
    machine's speed (seen here: every step 1.4x slower for ten minutes) falls on all its methods
    alike, as the comparison, paired by prompt, needs. Before planning item i the calibration has
    seen the recorded runs of the items before it, as a node has seen the jobs it served."""
    from tqdm import tqdm

    planners = methods.planners
    tb_jobs = {strategy: {m: {b: [] for b in budgets} for m in planners} for strategy, _ in STRATEGIES}
    progress = tqdm(total=len(items) * (len(FIXED) + len(budgets) * len(planners)),
                    desc=f"{task.name}: fixed ratios and TimeBill", dynamic_ncols=True)
    for i, it in enumerate(items):
        for a in FIXED:
            recorder.get(it.id, prompts[it.id], task.system, a, task.max_new_tokens)
            progress.update(1)
        if i > 0:
            for a in FIXED:
                observe_record(methods.calibration, recorder.records[(items[i - 1].id, ratio_key(a))])
        for m, est in planners.items():
            for b in budgets:
                for strategy, _ in STRATEGIES:
                    # a goal carries its overrun policy, and the score planner weighs it; the others plan alike
                    if strategy != "kill" and est.planner != "score":
                        tb_jobs[strategy][m][b].append(tb_jobs["kill"][m][b][-1])
                        continue
                    req = task.request(prompts[it.id], b, policy=strategy)
                    served = replay_as_served(est, recorder, methods.states, it.id, prompts[it.id], req)
                    tb_jobs[strategy][m][b].append(served.job(it.id))
                progress.update(1)
    progress.close()
    return tb_jobs


def fixed_jobs(recorder: Recorder, items, budgets) -> dict:
    """"none" and "fixed_<ratio>" -> budget -> their recorded jobs (the same at every budget)."""
    out = {}
    for a in FIXED:
        name = "none" if a == 0 else f"fixed_{a:.2f}"
        out[name] = {b: [{"item": it.id, "total": recorder.records[(it.id, ratio_key(a))]["total"],
                          "text": recorder.records[(it.id, ratio_key(a))]["text"], "eviction_ratio": a} for it in items]
                     for b in budgets}
    return out


def replay_table(by_strategy: dict, budgets, score_job) -> list[dict]:
    """Completion rate, average score, skipped and refused jobs, mean ratio: per strategy, method and
    budget (``by_strategy``: strategy -> method -> budget -> jobs)."""
    table = []
    for strategy, replay in STRATEGIES:
        for m, per_budget in by_strategy[strategy].items():
            for b in budgets:
                jobs = per_budget[b]
                outcomes = schedule.replay_outcomes(replay, jobs, b)
                scores = [score_job(j) if o.completed else 0.0 for j, o in zip(jobs, outcomes)]
                table.append({"strategy": strategy, "method": m, "budget": b,
                              "completion_rate": float(np.mean([o.completed for o in outcomes])),
                              "avg_score": float(np.mean(scores)),
                              "skipped": int(sum(o.skipped for o in outcomes)),
                              "infeasible": int(sum(bool(j.get("infeasible")) for j in jobs)),
                              "mean_alpha": float(np.mean([j["eviction_ratio"] for j in jobs]))})
    return table


def compare_cells(by_strategy: dict, fixed_names: list[str], budgets, score_job, own_answer: dict, task_name: str,
                  faithful_completion: bool = False) -> dict:
    """Per strategy and budget, from one paired bootstrap: the default against the best fixed ratio
    (``versus_best_fixed``), the default minus the budget planner (``timebill_budget``), and the
    bar's judgement (``bar``, see bar.py; ``faithful_completion`` for sets scored against the
    model's own answer)."""
    from tqdm import tqdm

    rows, cells = [], []
    progress = tqdm(total=2 * len(budgets), desc=f"{task_name}: the bar (bootstrap)", dynamic_ncols=True)
    for strategy, replay in STRATEGIES:
        jobs_by_method = by_strategy[strategy]
        for b in budgets:
            cell, cmp = bar.judge_cell({m: jobs_by_method[m][b] for m in [DEFAULT, "timebill_budget", *fixed_names]},
                                       DEFAULT, fixed_names, replay, b, score_job, own_answer,
                                       also={"budget_planner": ["timebill_budget"]}, faithful_completion=faithful_completion)
            rows.append({"strategy": strategy, "budget": b, **cmp["best_fixed"], "versus_budget_planner": cmp["budget_planner"]})
            cells.append({"strategy": strategy, "budget": b, **cell,
                          "planner_view": planner_view(jobs_by_method[DEFAULT][b], jobs_by_method["none"][b], replay, b, score_job)})
            progress.update(1)
    progress.close()
    return {"versus_best_fixed": rows, "bar": cells}


def planner_view(jobs: list[dict], none_jobs: list[dict], replay, budget: float, score_job) -> dict:
    """What the default planner expected of a cell against what happened, to say which of its two
    inputs was wrong where it loses: the odds (mean completion probability against the completion
    rate) or the retention (mean expected quality of the completed answers against their score
    over no eviction's answers to the same prompts, unhurried)."""
    done = [o.completed for o in schedule.replay_outcomes(replay, jobs, budget)]
    kept = [(j, n) for j, n, ok in zip(jobs, none_jobs, done) if ok]
    base = sum(score_job(n) for _, n in kept)
    return {"predicted_completion": float(np.mean([j["completion_probability"] for j in jobs])),
            "completion": float(np.mean(done)),
            "predicted_quality": float(np.mean([j["expected_quality"] for j, _ in kept])) if kept else None,
            "quality": float(sum(score_job(j) for j, _ in kept) / base) if kept and base > 0 else None,
            "mean_ratio": float(np.mean([j["eviction_ratio"] for j in jobs]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m timebill.evaluation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--out", default="docs/eval")
    ap.add_argument("--budgets", help="comma-separated seconds (default: chosen from the no-eviction times)")
    ap.add_argument("--tasks", default="narrativeqa,qasper,everyday")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config")
    ap.add_argument("--plot-only", metavar="RESULTS_JSON", help="draw the figures of a finished run's results-*.json "
                    "again (into its folder) and exit")
    args = ap.parse_args(argv)
    if args.plot_only:
        path = pathlib.Path(args.plot_only)
        report = json.loads(path.read_text())
        plot(report, path.parent, report["preset"])
        plot_bar(report, path.parent, report["preset"])
        plot_reliability(report, path.parent, report["preset"])
        return 0
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
