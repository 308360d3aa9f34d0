"""A TimeBill job replayed over the records in the order the engine serves it.

With ``predict_in_prefill: true`` (the default) the engine does not run the length predictor
before the job: the head reads the hidden state of the job's own prefill, the plan is made then
and the ratio is applied after it (``BudgetedEngine._run_predicting_in_prefill``). No predictor
pass enters the budget; when length control asks for a word limit, the prompt as sent has been
prefilled for nothing, the limited prompt is prefilled next, and if the limit is not the better
plan the prompt as sent runs again. ``replay_as_served`` follows those steps with the records'
measured prefill and run times, so a replayed job costs what the served one does.

With ``predict_in_prefill: false`` the predictor runs its own pass first (``Estimator.estimate``)
and the job's time is that pass's measured latency plus its record's time.

The head's state for a prompt is computed once (``PromptStates``), by the head's own pass: the
same numbers the served prefill hands it (tests/test_deferred_press.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .. import compute_thread
from ..estimator import Estimate, Estimator
from ..length_control import system_prompt_of
from ..length_predictor import LengthEstimate
from .records import RATIO, Recorder, planned_record


class PromptStates:
    """Each prompt's pooled state after the head's layer, computed once for every plan of it."""

    def __init__(self):
        self._states: dict[tuple, object] = {}

    def length(self, predictor, ids, max_new: int) -> tuple[LengthEstimate, float]:
        """The head's estimate from the prompt's state, and the seconds the head itself took."""
        key = (predictor.state_layer, tuple(ids))
        if key not in self._states:
            self._states[key] = compute_thread.run(predictor.state, ids)
        t0 = time.perf_counter()
        length = predictor.from_state(self._states[key], max_new)
        return length, time.perf_counter() - t0


@dataclass
class Replayed:
    est: Estimate        # the plan the job ran with (or was refused by)
    rec: dict            # the record of what ran (for a refused job: of its plan, for the statistics)
    total: float         # seconds from acceptance to the job's end (refused: had it run, for the timing statistics)
    infeasible: bool     # answered INFEASIBLE: it completes nothing and the replay gives it no time

    def job(self, item_id: str) -> dict:
        e, rec = self.est, self.rec
        return {"item": item_id, "eviction_ratio": rec[RATIO], "total": self.total, "text": rec["text"],
                "predicted_total": e.planned_at + e.plan.predicted_total,
                "predicted_worst": e.planned_at + e.plan.predicted_worst_case, "feasible": e.plan.feasible,
                "infeasible": self.infeasible, "tokens_that_fit": e.plan.tokens_that_fit,
                "predicted_tokens": e.length.predicted_tokens, "bound": e.length.predicted_tokens_bound,
                "tokens": rec["tokens"], "words": e.request.answer_words,
                "completion_probability": e.plan.completion_probability, "expected_quality": e.plan.expected_quality,
                # the plan's timing model given the answer's real length: the timing error apart from the length's
                "predicted_given_length": e.planned_at + e.plan.predictor_time
                + e.time_model.end_to_end(e.plan.prompt_tokens, max(1, rec["tokens"]), rec[RATIO])}


def replay_as_served(estimator: Estimator, recorder: Recorder, states: PromptStates | None, item_id: str,
                     prompt: str, req) -> Replayed:
    """``req`` planned and run as the engine serves it; ``states`` None: the predictor's own pass."""
    ids = estimator.encode(req)
    predictor = estimator.length_predictor
    if states is None or not predictor.reads_states_of(len(ids)):
        e = estimator.estimate(req, prompt_ids=ids)
        rec = planned_record(recorder, item_id, prompt, e, estimator.max_new_tokens(req))
        return Replayed(e, rec, e.predictor_latency + rec["total"], not e.plan.useful_fits)
    max_new = estimator.max_new_tokens(req)

    def record(e: Estimate) -> dict:
        return planned_record(recorder, item_id, prompt, e, max_new)

    def plan(r, elapsed, ids, length=None) -> Estimate:
        return estimator.estimate(r, elapsed, prompt_ids=ids, length=length or LengthEstimate(max_new, max_new),
                                  control_length=False)

    length, head = states.length(predictor, ids, max_new)
    first = plan(req, 0.0, ids, length)
    # Before the prefill, only whether a useful answer can fit at all (the plan for the longest answer).
    if not plan(req, 0.0, ids).plan.useful_fits:
        rec = record(first)
        return Replayed(first, rec, head + rec["total"], True)
    # the prompt as sent has been prefilled; a word limit now costs a prefill of its own
    spent = head + recorder.get(item_id, prompt, system_prompt_of(req), 0.0, max_new)["prefill"]
    limited = estimator.limit_after_prefill(req, first, spent)
    if limited is None:
        rec = record(first)
        return Replayed(first, rec, head + rec["total"], False)
    limited, limited_ids = limited.request, limited.prompt_ids
    if not plan(limited, spent, limited_ids).plan.useful_fits:
        rec = record(first)
        return Replayed(first, rec, spent + rec["total"], True)
    limited_length, head = states.length(predictor, limited_ids, max_new)
    second = plan(limited, spent, limited_ids, limited_length)
    rec = record(second)
    if estimator.better(first, second) is not first:
        return Replayed(second, rec, spent + head + rec["total"], False)
    spent += head + rec["prefill"]  # the limited prompt, prefilled for nothing
    again = plan(req, spent, ids, length)
    rec = record(again)
    return Replayed(again, rec, spent + rec["total"], not again.plan.useful_fits)


def served_states(cfg: dict, predictor) -> PromptStates | None:
    """States to plan from when the configuration predicts in the prefill and the predictor reads
    states (the RLP); None: the predictor's own pass, as the engine then runs it."""
    in_prefill = bool(cfg.get("predict_in_prefill", True)) and getattr(predictor, "state_layer", None) is not None
    return PromptStates() if in_prefill else None
