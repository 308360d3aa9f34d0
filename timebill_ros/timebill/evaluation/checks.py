"""Two checks beside the replayed table: the paper's k swept at one tight budget, and a subset
re-run live under real Kill to see how often the replay agrees with it."""
from __future__ import annotations

import numpy as np

from ..engine import BudgetedEngine
from ..estimator import Estimator
from ..request import Outcome
from . import schedule
from .methods import K_SWEEP
from .records import RATIO
from .served_order import replay_as_served


def k_sweep(planner: Estimator, items, prompts, task, budget: float, recorder, states=None) -> list[dict]:
    """TimeBill with the paper's bound k * N_hat for several k, at one budget, under Kill."""
    from tqdm import tqdm

    rlp, k_was = planner.length_predictor, planner.length_predictor.k
    rows = []
    bar = tqdm(total=len(items) * len(K_SWEEP), desc=f"{task.name}: k sweep at {budget:.1f} s", dynamic_ncols=True)
    try:
        for k in K_SWEEP:
            rlp.k = k
            totals, texts, ratios, bounds = [], [], [], []
            for it in items:
                served = replay_as_served(planner, recorder, states, it.id, prompts[it.id], task.request(prompts[it.id], budget))
                totals.append(float("inf") if served.infeasible else served.total)
                texts.append(served.rec["text"])
                ratios.append(served.rec[RATIO])
                bounds.append(served.est.length.predicted_tokens_bound)
                bar.update(1)
            done = [o.completed for o in schedule.kill(totals, budget)]
            scores = [task.score(text, it) if ok else 0.0 for text, it, ok in zip(texts, items, done)]
            rows.append({"k": k, "budget": budget, "completion_rate": float(np.mean(done)), "avg_score": float(np.mean(scores)),
                         "mean_alpha": float(np.mean(ratios)), "mean_bound": float(np.mean(bounds))})
    finally:
        rlp.k = k_was
        bar.close()
    return rows


def live_check(engine, planner, items, prompts, task, budgets, recorder, states=None) -> dict:
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
                    served = replay_as_served(planner, recorder, states, it.id, prompts[it.id], req)
                    replay_done = not served.infeasible and served.total <= b
                    live = timebill.generate(req)
                else:
                    req.fixed_eviction_ratio = 0.0 if kind == "none" else 0.5
                    rec = recorder.get(it.id, prompts[it.id], task.system, req.fixed_eviction_ratio, task.max_new_tokens)
                    replay_done = rec["total"] <= b
                    live = engine.generate(req)
                live_done = live.outcome is Outcome.COMPLETED and live.deadline_met
                agree += live_done == replay_done
                total += 1
    return {"jobs": total, "agreement": agree / total, "budgets": check_budgets}
