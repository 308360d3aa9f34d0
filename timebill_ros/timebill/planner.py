"""Eviction planner: the smallest KV-cache eviction ratio whose worst case fits the budget.

TimeBill minimises alpha subject to  t_predict + t_prefill(N_x) + sum_{i=1}^{N_W-1} t_dec((1-alpha)N_x + i - 1) <= T.
Because t_dec is linear, the sum is linear in alpha and

    alpha* = 1 - (T - t_prefill - t_predict) / (p N_x (N_W - 1)) + (N_W - 2) / (2 N_x) + q / (p N_x)

clamped to [0, alpha_max] (see shared notes: the paper's middle term has a stray p).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .time_model import TimeModel, kept_positions

DEFAULT_ALPHA_MAX = 0.95


@dataclass(frozen=True)
class Plan:
    """What the planner decided for one job, and the times it predicts at that ratio."""

    alpha: float
    feasible: bool              # the modelled worst case fits the budget at ``alpha``
    expected_fits: bool         # the modelled expected case fits at ``alpha``
    reason: str                 # why not feasible; empty when feasible
    budget: float               # seconds available to this job when it was planned
    prompt_tokens: int
    predicted_tokens: int
    predicted_tokens_bound: int
    predictor_time: float
    predicted_prefill: float
    predicted_total: float      # predictor + prefill + decode of predicted_tokens
    predicted_worst_case: float  # predictor + prefill + decode of predicted_tokens_bound

    @property
    def cached_tokens(self) -> int:
        return kept_positions(self.prompt_tokens, self.alpha)


def optimal_alpha(tm: TimeModel, prompt_tokens: int, bound_tokens: int, budget: float, predictor_time: float = 0.0) -> float:
    """Unclamped alpha* of the closed form (may be < 0 or > 1; +inf when nothing fits)."""
    slack = budget - predictor_time - tm.prefill(prompt_tokens)
    if bound_tokens <= 1:
        return 0.0 if slack >= 0 else math.inf  # the first token comes with the prefill
    if tm.p <= 0:
        # Decode time does not depend on the cache: eviction cannot help or hurt.
        return 0.0 if slack >= tm.decode(prompt_tokens, bound_tokens) else math.inf
    n, nw = float(prompt_tokens), float(bound_tokens)
    return 1.0 - slack / (tm.p * n * (nw - 1)) + (nw - 2) / (2 * n) + tm.q / (tm.p * n)


def plan_eviction(
    tm: TimeModel,
    prompt_tokens: int,
    predicted_tokens: int,
    bound_tokens: int,
    budget: float,
    alpha_max: float = DEFAULT_ALPHA_MAX,
    predictor_time: float = 0.0,
    press_applies: bool = True,
    fixed_alpha: float | None = None,
    worst_tm: TimeModel | None = None,
) -> Plan:
    """Choose alpha for one job (or take ``fixed_alpha``, for baselines) and predict its times.

    ``press_applies`` is False when the prompt is too short to compress: alpha is then 0.
    ``worst_tm``: a slower timing model for the worst case (a margin for timing noise, e.g.
    OnlineCalibration.model_at(0.9)); alpha is chosen so that the worst case fits under it,
    and the expected time is still predicted with ``tm``.
    """
    wt = worst_tm or tm
    if not 0.0 <= alpha_max < 1.0:
        raise ValueError(f"alpha_max must be in [0, 1), got {alpha_max}")
    ceiling = (alpha_max if fixed_alpha is None else fixed_alpha) if press_applies else 0.0
    if fixed_alpha is None:
        alpha = min(max(optimal_alpha(wt, prompt_tokens, bound_tokens, budget, predictor_time), 0.0), ceiling)
    else:
        alpha = ceiling
    prefill = tm.prefill(prompt_tokens)
    worst = predictor_time + wt.end_to_end(prompt_tokens, bound_tokens, alpha)
    # The closed form is continuous; kvpress keeps whole positions (rounding up what is kept),
    # which can cost one position: then evict one position more.
    if worst > budget and alpha < ceiling:
        alpha = min(ceiling, alpha + 1.0 / prompt_tokens)
        worst = predictor_time + wt.end_to_end(prompt_tokens, bound_tokens, alpha)
    total = predictor_time + tm.end_to_end(prompt_tokens, predicted_tokens, alpha)
    feasible = worst <= budget
    reason = ""
    if predictor_time + prefill > budget:
        reason = (f"prefill alone exceeds the budget: predictor {predictor_time:.3f} s + prefill of "
                  f"{prompt_tokens} tokens {prefill:.3f} s > {budget:.3f} s")
    elif not feasible:
        reason = (f"the length bound is too long: {bound_tokens} tokens need {worst:.3f} s even at "
                  f"eviction ratio {alpha:.2f} > budget {budget:.3f} s")
    return Plan(
        alpha=alpha, feasible=feasible, expected_fits=total <= budget, reason=reason, budget=budget,
        prompt_tokens=prompt_tokens, predicted_tokens=predicted_tokens, predicted_tokens_bound=bound_tokens,
        predictor_time=predictor_time, predicted_prefill=prefill, predicted_total=total, predicted_worst_case=worst,
    )
