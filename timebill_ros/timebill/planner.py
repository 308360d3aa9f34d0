"""Eviction planner: which KV-cache eviction ratio a job runs at, and whether anything useful fits.

Three planners (config ``planner``):

* ``score`` (the default, ``timebill.score_planner``): the ratio whose answer is expected to score
  best by the deadline, from the odds of finishing at each candidate ratio and the quality a
  complete answer keeps there (``timebill.retention``). The estimator chooses it (it holds the
  length distribution and the speeds) and hands it to ``plan_eviction`` as ``chosen_ratio``.
* ``paper`` (TimeBill as published): the smallest eviction ratio (the paper's α) whose *worst
  case* fits,

      α* = 1 - (T - t_prefill - t_predict) / (p N_x (N_W - 1)) + (N_W - 2) / (2 N_x) + q / (p N_x)

  clamped to [0, max_eviction_ratio] (see shared notes: the paper's middle term has a stray p);
  when even max_eviction_ratio does not fit, max_eviction_ratio.
* ``budget``: evict only where eviction changes the predicted outcome of the
  *expected* answer. On a CPU eviction saves a small share of each decoding step (docs/RESULTS.md:
  0.3 s of a 5.8 s answer at 95 %), so the paper's fallback to max_eviction_ratio when the worst
  case cannot fit destroys the context for almost no time. Here the ratio is 0 when the expected
  answer fits without eviction, 0 when no allowed ratio makes it fit, 0 when the most eviction
  allowed saves less than ``MIN_EVICTION_GAIN`` of its time (short prompts), and otherwise the
  smallest ratio at which the expected answer fits. Within the budgets where eviction can matter,
  the ratio never rises with the budget.

Both planners give the same early verdict (``Plan.useful_fits``): whether at least
``min_useful_tokens`` tokens of the answer (or the whole expected answer, if shorter) fit without
eviction or at the largest allowed ratio. Only when they do not is a job answered INFEASIBLE
without generating.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .time_model import TimeModel, kept_positions

DEFAULT_MAX_EVICTION_RATIO = 0.95
PLANNERS = ("score", "budget", "paper")
DEFAULT_PLANNER = "score"
DEFAULT_MIN_USEFUL_TOKENS = 8
# The budget planner evicts only when the largest allowed ratio would save at least this share of
# the expected answer's time: below it the saving is far inside the timing noise (measured/predicted
# p90 1.14-1.17, docs/RESULTS.md), and eviction's damage to the answer is not. A 46-token prompt
# saves ~0.4 % at 0.95 on this CPU; a 900-token one ~5 %.
MIN_EVICTION_GAIN = 0.01


def check_planner_settings(planner: str, min_useful_tokens: int) -> None:
    """Refuse a planner name or a useful minimum that the configuration cannot mean."""
    if planner not in PLANNERS:
        raise ValueError(f"unknown planner '{planner}' (config key `planner`): use one of {', '.join(PLANNERS)}")
    if int(min_useful_tokens) < 1:
        raise ValueError(f"min_useful_tokens must be at least 1 (config key `min_useful_tokens`), got {min_useful_tokens}")


@dataclass(frozen=True)
class Plan:
    """What the planner decided for one job, and the times it predicts at that ratio."""

    eviction_ratio: float
    feasible: bool              # the modelled worst case fits the budget at ``eviction_ratio``
    expected_fits: bool         # the modelled expected case fits at ``eviction_ratio``
    reason: str                 # why not feasible (or nothing useful fits); empty when feasible
    budget: float               # seconds available to this job when it was planned
    prompt_tokens: int
    predicted_tokens: int
    predicted_tokens_bound: int
    predictor_time: float
    predicted_prefill: float
    predicted_total: float      # predictor + prefill + decode of predicted_tokens
    predicted_worst_case: float  # predictor + prefill + decode of predicted_tokens_bound
    tokens_that_fit: int = 0    # answer tokens the expected speed fits in the budget at ``eviction_ratio`` (<= the job's token limit)
    useful_fits: bool = True    # a useful answer fits without eviction or at the largest allowed ratio; False: INFEASIBLE
    answer_words: int = 0       # > 0: length control asked the model for at most this many words
    # From the predicted length distribution (``timebill.length_distribution``), at ``eviction_ratio``:
    completion_probability: float = 1.0  # P(the whole answer is ready by the deadline)
    expected_time: float = 0.0           # expected end-to-end seconds (predictor + prefill + decode)
    p90_time: float = 0.0                # their 90th percentile
    expected_quality: float = 1.0        # a complete answer's quality at ``eviction_ratio``, relative to no eviction
    expected_score: float = 1.0          # what the score planner maximised (completion_probability x expected_quality under Kill)

    @property
    def cached_tokens(self) -> int:
        return kept_positions(self.prompt_tokens, self.eviction_ratio)


def optimal_eviction_ratio(tm: TimeModel, prompt_tokens: int, bound_tokens: int, budget: float, predictor_time: float = 0.0) -> float:
    """Unclamped α* of the closed form (may be < 0 or > 1; +inf when nothing fits)."""
    slack = budget - predictor_time - tm.prefill(prompt_tokens)
    if bound_tokens <= 1:
        return 0.0 if slack >= 0 else math.inf  # the first token comes with the prefill
    if tm.p <= 0:
        # Decode time does not depend on the cache: eviction cannot help or hurt.
        return 0.0 if slack >= tm.decode(prompt_tokens, bound_tokens) else math.inf
    n, nw = float(prompt_tokens), float(bound_tokens)
    return 1.0 - slack / (tm.p * n * (nw - 1)) + (nw - 2) / (2 * n) + tm.q / (tm.p * n)


def tokens_that_fit(tm: TimeModel, prompt_tokens: int, eviction_ratio: float, budget: float, predictor_time: float,
                    limit: int) -> int:
    """The most answer tokens (at most ``limit``) whose modelled end-to-end time fits the budget;
    0 when not even the prefill (which brings the first token) fits."""
    def fits(n_tokens: int) -> bool:
        return predictor_time + tm.end_to_end(prompt_tokens, n_tokens, eviction_ratio) <= budget

    if limit < 1 or not fits(1):
        return 0
    lo, hi = 1, int(limit)  # fits(lo) holds; find the largest such count by bisection
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _smallest_fitting_ratio(tm: TimeModel, prompt_tokens: int, tokens: int, budget: float, predictor_time: float,
                            ceiling: float) -> float:
    """The closed form for ``tokens``, clamped to [0, ceiling], on kvpress's grid of whole positions.
    Any eviction pays the press's overhead (``TimeModel.evict_overhead``), so the ratio is solved
    with that overhead taken from the budget."""
    overhead = tm.evict_overhead(prompt_tokens, 1.0)
    eviction_ratio = min(max(optimal_eviction_ratio(tm, prompt_tokens, tokens, budget, predictor_time + overhead), 0.0), ceiling)
    # The closed form is continuous; kvpress keeps whole positions (rounding up what is kept),
    # which can cost one position: then evict one position more.
    if predictor_time + tm.end_to_end(prompt_tokens, tokens, eviction_ratio) > budget and eviction_ratio < ceiling:
        eviction_ratio = min(ceiling, eviction_ratio + 1.0 / prompt_tokens)
    return eviction_ratio


def budget_eviction_ratio(tm: TimeModel, prompt_tokens: int, expected_tokens: int, budget: float, predictor_time: float,
                 ceiling: float) -> float:
    """The budget planner's ratio: the smallest that makes the expected answer fit, where eviction
    changes that at all and saves a share of the time worth its damage; else 0."""
    if ceiling <= 0.0:
        return 0.0
    without = predictor_time + tm.end_to_end(prompt_tokens, expected_tokens, 0.0)
    at_ceiling = predictor_time + tm.end_to_end(prompt_tokens, expected_tokens, ceiling)
    if without <= budget or at_ceiling > budget:
        return 0.0  # it fits without eviction, or no allowed ratio makes it fit
    if without - at_ceiling < MIN_EVICTION_GAIN * without:
        return 0.0
    return _smallest_fitting_ratio(tm, prompt_tokens, expected_tokens, budget, predictor_time, ceiling)


def plan_eviction(
    tm: TimeModel,
    prompt_tokens: int,
    predicted_tokens: int,
    bound_tokens: int,
    budget: float,
    max_eviction_ratio: float = DEFAULT_MAX_EVICTION_RATIO,
    predictor_time: float = 0.0,
    press_applies: bool = True,
    fixed_eviction_ratio: float | None = None,
    worst_tm: TimeModel | None = None,
    planner: str = "paper",
    min_useful_tokens: int = DEFAULT_MIN_USEFUL_TOKENS,
    max_new_tokens: int | None = None,
    verdict_tm: TimeModel | None = None,
    chosen_ratio: float | None = None,
) -> Plan:
    """Choose the eviction ratio for one job (or take ``fixed_eviction_ratio``, for baselines) and predict its times.

    ``press_applies`` is False when the prompt is too short to compress: the ratio is then 0.
    ``worst_tm``: a slower timing model to plan with (a margin for timing noise, e.g.
    OnlineCalibration.model_at(0.9)): the paper planner makes its worst case fit under it, the
    budget planner its expected answer; expected times are still predicted with ``tm``.
    ``max_new_tokens``: the job's token limit (default: the bound), the most ``tokens_that_fit`` says.
    ``verdict_tm``: the model the early "no" (``useful_fits``) is judged with (default ``tm``); the
    engine passes one no slower than the profile, so that a slowdown the calibration saw once
    cannot refuse every later goal and so never be measured again.
    ``chosen_ratio``: the ratio the ``score`` planner chose (required with it), at most the ceiling.
    """
    wt = worst_tm or tm
    if not 0.0 <= max_eviction_ratio < 1.0:
        raise ValueError(f"max_eviction_ratio must be in [0, 1), got {max_eviction_ratio}")
    check_planner_settings(planner, min_useful_tokens)
    ceiling = (max_eviction_ratio if fixed_eviction_ratio is None else fixed_eviction_ratio) if press_applies else 0.0
    if fixed_eviction_ratio is not None:
        eviction_ratio = ceiling
    elif planner == "score":
        if chosen_ratio is None:
            raise ValueError("the score planner's ratio is chosen by Estimator (timebill.score_planner): pass chosen_ratio")
        eviction_ratio = min(max(float(chosen_ratio), 0.0), ceiling)
    elif planner == "budget":
        eviction_ratio = budget_eviction_ratio(wt, prompt_tokens, predicted_tokens, budget, predictor_time, ceiling)
    else:
        eviction_ratio = _smallest_fitting_ratio(wt, prompt_tokens, bound_tokens, budget, predictor_time, ceiling)
    prefill = tm.prefill(prompt_tokens)
    worst = predictor_time + wt.end_to_end(prompt_tokens, bound_tokens, eviction_ratio)
    total = predictor_time + tm.end_to_end(prompt_tokens, predicted_tokens, eviction_ratio)
    feasible = worst <= budget
    limit = bound_tokens if max_new_tokens is None else max_new_tokens
    fit = tokens_that_fit(tm, prompt_tokens, eviction_ratio, budget, predictor_time, limit)
    # The early "no": judged at the most favourable allowed ratio, so that it does not depend on
    # which planner chose the ratio. That is no eviction or the largest ratio: any eviction pays the
    # press's prefill overhead once, so for a short answer evicting nothing can fit more.
    useful = min(min_useful_tokens, predicted_tokens, limit)
    vt = verdict_tm or tm
    fits = {a: fit if a == eviction_ratio and vt is tm else tokens_that_fit(vt, prompt_tokens, a, budget, predictor_time, limit)
            for a in (0.0, ceiling)}
    best_ratio = max(fits, key=lambda a: (fits[a], -a))  # on a tie, the ratio that evicts less
    useful_fits = fits[best_ratio] >= useful
    reason = ""
    if predictor_time + vt.prefill(prompt_tokens) > budget:
        reason = (f"prefill alone exceeds the budget: predictor {predictor_time:.3f} s + prefill of "
                  f"{prompt_tokens} tokens {vt.prefill(prompt_tokens):.3f} s > {budget:.3f} s")
    elif not useful_fits:
        need = predictor_time + vt.end_to_end(prompt_tokens, useful, best_ratio)
        reason = (f"not even {useful} tokens fit: they need {need:.3f} s at eviction ratio {best_ratio:.2f} "
                  f"> budget {budget:.3f} s")
    elif not feasible:
        reason = (f"the length bound is too long: {bound_tokens} tokens need {worst:.3f} s at "
                  f"eviction ratio {eviction_ratio:.2f}{' (the largest allowed)' if eviction_ratio == ceiling else ''} "
                  f"> budget {budget:.3f} s")
    return Plan(
        eviction_ratio=eviction_ratio, feasible=feasible, expected_fits=total <= budget, reason=reason, budget=budget,
        prompt_tokens=prompt_tokens, predicted_tokens=predicted_tokens, predicted_tokens_bound=bound_tokens,
        predictor_time=predictor_time, predicted_prefill=prefill, predicted_total=total, predicted_worst_case=worst,
        tokens_that_fit=fit, useful_fits=useful_fits,
    )
