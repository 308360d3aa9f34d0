"""Completion estimates: tokenize, predict the length, plan the eviction ratio. Nothing is generated.

Used before every generation (by the engine) and for planners' what-if questions (by the
predictor node), so both always give the same answer for the same request.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from . import compute_thread
from .answer_format import FormatLengths
from .calibration import OnlineCalibration
from .length_distribution import completion_odds
from .length_control import DEFAULT_LENGTH_CONTROL, TOKENS_PER_WORD, system_prompt_of, word_limit
from .length_predictor import ConstantLengthPredictor, LengthEstimate, LengthPredictor
from .planner import (DEFAULT_MAX_EVICTION_RATIO, DEFAULT_MIN_USEFUL_TOKENS, DEFAULT_PLANNER, Plan, check_planner_settings,
                      optimal_eviction_ratio, plan_eviction, tokens_that_fit)
from .presses import DEFAULT_PRESS, press_applies, press_class
from .request import InvalidRequest, Policy, Request, check_request
from .retention import CONSERVATIVE, Retention, request_kind
from . import score_planner
from .time_model import TimeModel


SPEED_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)  # equally likely speeds the completion probability averages over


@dataclass(frozen=True)
class Estimate:
    prompt_ids: list
    length: LengthEstimate
    plan: Plan
    predictor_latency: float  # measured seconds of this estimate's length predictions
    request: Request          # the request as it is to run: with the word limit length control chose, if any
    time_model: TimeModel     # what the plan's times come from (with the prefill, where it has run)

    @property
    def planned_at(self) -> float:
        """Seconds of the budget gone when this was planned (queueing, a prefill of another prompt):
        the plan's times count from then."""
        return float(self.request.budget) - self.plan.budget


class Estimator:
    def __init__(
        self,
        loaded,
        time_model: TimeModel | OnlineCalibration,
        length_predictor: LengthPredictor | None = None,
        default_max_new_tokens: int = 256,
        max_eviction_ratio: float = DEFAULT_MAX_EVICTION_RATIO,
        press: str = DEFAULT_PRESS,
        worst_case_quantile: float = 0.5,
        planner: str = DEFAULT_PLANNER,
        min_useful_tokens: int = DEFAULT_MIN_USEFUL_TOKENS,
        length_control: bool = DEFAULT_LENGTH_CONTROL,
        retention: Retention = CONSERVATIVE,
        fixed_eviction_ratio: float | None = None,
    ):
        self.loaded = loaded
        self.calibration = time_model if isinstance(time_model, OnlineCalibration) else OnlineCalibration(time_model)
        self.length_predictor = length_predictor or ConstantLengthPredictor()
        self.default_max_new_tokens = int(default_max_new_tokens)
        self.max_eviction_ratio = float(max_eviction_ratio)
        # The timing model's quantile that plans the worst case: 0.5 is the paper (its median
        # correction), higher keeps a margin for timing noise (see OnlineCalibration.model_at).
        if not 0.5 <= worst_case_quantile < 1.0:
            raise ValueError(f"worst_case_quantile must be in [0.5, 1), got {worst_case_quantile}")
        self.worst_case_quantile = float(worst_case_quantile)
        check_planner_settings(planner, min_useful_tokens)  # at start-up, not at the first goal
        self.planner = planner
        self.min_useful_tokens = int(min_useful_tokens)
        self.length_control = bool(length_control)
        self.retention = retention  # the score planner's quality of a complete answer per ratio
        # Every goal at this ratio, the planner off: the baseline an operator compares the planner with.
        if fixed_eviction_ratio is not None and not 0.0 <= fixed_eviction_ratio < 1.0:
            raise ValueError(f"fixed_eviction_ratio must be in [0, 1), or negative for the planner, got {fixed_eviction_ratio}")
        self.fixed_eviction_ratio = fixed_eviction_ratio
        press_class(press)  # fail at start-up, not at the first goal
        self.press = press
        self.format_lengths = FormatLengths()  # the engine tells it each formatted answer's length

    @property
    def time_model(self) -> TimeModel:
        return self.calibration.model

    def max_new_tokens(self, req: Request) -> int:
        return int(req.max_new_tokens) or self.default_max_new_tokens

    def fixed_ratio(self, req: Request) -> float | None:
        """The ratio ``req`` runs at without planning (its own, else the configured one), or None."""
        return req.fixed_eviction_ratio if req.fixed_eviction_ratio is not None else self.fixed_eviction_ratio

    def max_eviction_ratio_for(self, req: Request) -> float:
        a = req.max_eviction_ratio
        return self.max_eviction_ratio if a is None or a < 0 else float(a)

    def encode(self, req: Request) -> list:
        """Validate the request and return its prompt token ids."""
        check_request(req)
        return self._fits_context(req, self.loaded.encode_chat(req.prompt, system_prompt_of(req), raw=req.raw))

    def tokenized(self, req: Request, ids) -> list:
        """Validate the request and prompt ids tokenized elsewhere (the generation node hands its ids
        to the predictor node): what ``encode`` checks, plus the vocabulary, so that no sender can
        make the model index out of its embedding table."""
        check_request(req)
        ids = [int(i) for i in ids]
        if not ids:
            raise InvalidRequest("the prompt ids are empty: send the ids of the prompt, or none (the prompt is then "
                                 "tokenized here)")
        vocab = int(self.loaded.model.config.vocab_size)
        bad = next((i for i in ids if not 0 <= i < vocab), None)
        if bad is not None:
            raise InvalidRequest(f"prompt token id {bad} is outside the model's vocabulary of {vocab}: send the ids "
                                 f"of this model's tokenizer, or none (the prompt is then tokenized here)")
        return self._fits_context(req, ids)

    def limited_to(self, req: Request, words: int, ids) -> tuple[Request, list]:
        """``req`` with the word limit an estimate made elsewhere chose, and that prompt's ids as
        tokenized there (checked like any ids from another node: the limited prompt is not
        tokenized again inside the budget)."""
        limited = dataclasses.replace(req, answer_words=int(words))
        return limited, self.tokenized(limited, ids)

    def _fits_context(self, req: Request, ids: list) -> list:
        room = self.loaded.max_context - self.max_new_tokens(req)
        if len(ids) > room:
            raise InvalidRequest(
                f"the prompt is {len(ids)} tokens; with max_new_tokens {self.max_new_tokens(req)} the model's "
                f"context of {self.loaded.max_context} leaves room for {max(room, 0)}"
            )
        return ids

    def estimate(self, req: Request, already_elapsed: float = 0.0, prompt_ids: list | None = None,
                 length: LengthEstimate | None = None, control_length: bool = True,
                 prefill_seconds: float | None = None) -> Estimate:
        """Plan ``req`` with ``already_elapsed`` seconds of its budget gone (e.g. queueing).

        ``prompt_ids``: ``req`` already tokenized by ``encode``. ``length``: a prediction already
        made for these ids (e.g. by the predictor node when the goal was accepted); it is then not
        predicted again inside the budget. ``prefill_seconds``: what this prompt's prefill takes,
        where it is being planned inside it (``BudgetedEngine``, ``predict_in_prefill``); the plan
        times it so instead of modelling it. When the budget holds fewer tokens than the expected
        answer and length control is on, the request is planned again with a word limit
        (``timebill.length_control``): the Estimate then carries the limited request, its ids and
        its second prediction, and both predictions' time. ``control_length=False`` plans ``req``
        as it is (a verdict that must not run the predictor).
        """
        est = self._plan(req, already_elapsed, prompt_ids, length, prefill_seconds)
        limited = self.limited_request(req, est) if control_length else None
        if limited is None:
            return est
        try:
            second = self._plan(limited, already_elapsed + est.predictor_latency, None, None)
        except InvalidRequest:  # the instruction pushed the prompt past the context
            return est
        return self.better(est, second)

    def format_length(self, req: Request) -> LengthEstimate | None:
        """The answer's length as its format tells it (timebill/answer_format.py), or None where
        the length predictor is to predict it (free text; a grammar seen for the first time)."""
        fmt = req.answer_format
        if fmt is None:
            return None
        return fmt.length(self.loaded, self.max_new_tokens(req), self.format_lengths.typical(fmt))

    def limited_request(self, req: Request, est: Estimate) -> Request | None:
        """``req`` with the word limit length control asks for, or None (see ``_word_limit``)."""
        words = self._word_limit(req, est)
        return None if words is None else dataclasses.replace(req, answer_words=words)

    def limit_after_prefill(self, req: Request, est: Estimate, elapsed: float) -> Estimate | None:
        """The word limit to ask for once ``est`` has been planned from the prompt's own prefill
        (``predict_in_prefill``): the limited request's plan with the answer kept to the limit
        (its ``request`` and ``prompt_ids`` are what to prefill next), or None: run the prompt as
        sent on that prefill. The limited prompt needs a prefill of its own after the ``elapsed``
        seconds already gone, so the limit is asked for only when, even with the answer kept to it
        (the most a limit can give), that is more likely to complete than the prompt as sent; when
        the limit chosen for the time after the first prefill does not, a shorter one chosen for
        the time after the second is tried. (On a 1,500-token context a second prefill costs more
        than any limit saves: docs/RESULTS.md, issue 20.)"""
        limited = self.limited_request(req, est)
        if limited is None:
            return None
        first = self._kept_to_limit(limited, est, elapsed)
        if first is None or self._pays(first, est):
            return first
        # The limit was chosen for the time the first prefill left; the limited prompt's own
        # prefill takes about as long again: a shorter limit may fit what is left after it.
        words = word_limit(first.plan.tokens_that_fit, est.length.predicted_tokens)
        if words is None or words >= limited.answer_words:
            return None
        shorter = self._kept_to_limit(dataclasses.replace(req, answer_words=words), est, elapsed)
        return shorter if shorter is not None and self._pays(shorter, est) else None

    def _kept_to_limit(self, limited: Request, est: Estimate, elapsed: float) -> Estimate | None:
        """The plan of ``limited`` (a word limit asked for after ``est``'s prefill) prefilled after
        ``elapsed`` seconds, with the answer kept to its limit; None when the instruction pushes the
        prompt past the context."""
        try:
            ids = self.encode(limited)
        except InvalidRequest:
            return None
        kept = max(1, min(est.length.predicted_tokens, math.ceil(limited.answer_words * TOKENS_PER_WORD)))
        return self._plan(limited, elapsed, ids, LengthEstimate(kept, kept))

    @staticmethod
    def _pays(limited: Estimate, est: Estimate) -> bool:
        return limited.plan.useful_fits and limited.plan.completion_probability > est.plan.completion_probability

    @staticmethod
    def better(est: Estimate, limited: Estimate) -> Estimate:
        """The estimate to run: the limited prompt's, unless it makes the job infeasible (the
        instruction lengthens the prompt) or is predicted less likely to complete (the model would
        not keep to the limit)."""
        if not limited.plan.useful_fits or limited.plan.completion_probability < est.plan.completion_probability:
            return est
        return dataclasses.replace(limited, predictor_latency=est.predictor_latency + limited.predictor_latency)

    def _word_limit(self, req: Request, est: Estimate) -> int | None:
        """The word limit length control asks for, or None (off, already limited, a raw prompt
        without a system prompt to carry it, a baseline's fixed ratio, an answer format, nothing useful fits, or the
        answer is more likely to complete than not: the predicted distribution's median fits)."""
        on = self.length_control if req.length_control is None else bool(req.length_control)
        if not on or req.answer_words or req.raw or self.fixed_ratio(req) is not None or not est.plan.useful_fits or \
                req.answer_format is not None:  # the format bounds the answer; a word limit could contradict it
            return None
        if est.plan.completion_probability >= 0.5:
            return None
        return word_limit(est.plan.tokens_that_fit, est.length.predicted_tokens)

    def _reported_point(self, length: LengthEstimate, plan, end_to_end, max_new: int):
        """The length and the plan with the point a planner is told: where the median answer fits,
        the length of least expected relative error (``LengthDistribution.least_relative_error``),
        which is below the median where lengths spread; elsewhere the median. Through the nodes,
        on held-out goals, the median's estimates of completed goals were off by 44 % on average,
        most of it short answers of prompts that may also run long (docs/RLP.md). Kept to the
        median where it does not fit, so that the estimate says "fits" exactly when the median
        answer does (a lower point there would promise answers the budget mostly cuts), and where
        the score or budget planner evicts, since it chose the ratio for the median."""
        if length.distribution is None or not plan.expected_fits or (plan.eviction_ratio > 0 and self.planner != "paper"):
            return length, plan
        point = min(length.predicted_tokens, length.dist().capped(max_new).least_relative_error(end_to_end))
        if point >= length.predicted_tokens:
            return length, plan
        return (dataclasses.replace(length, predicted_tokens=point),
                dataclasses.replace(plan, predicted_tokens=point, predicted_total=end_to_end(point)))

    def _plan(self, req: Request, already_elapsed: float, prompt_ids: list | None, length: LengthEstimate | None,
              prefill_seconds: float | None = None) -> Estimate:
        ids = prompt_ids if prompt_ids is not None else self.encode(req)

        def timed(tm: TimeModel) -> TimeModel:
            # every speed the plan weighs has this prefill as it ran, where it has
            return tm if prefill_seconds is None else tm.with_prefill(len(ids), prefill_seconds)

        tm = timed(self.time_model)
        max_new = self.max_new_tokens(req)
        fmt = req.answer_format
        latency = 0.0  # a length made elsewhere costs this job's budget nothing here
        if length is None:
            length = self.format_length(req)
        if length is None:
            t0 = time.perf_counter()
            predict = self.length_predictor.predict
            # model layers run on the compute thread (timebill/compute_thread.py); arithmetic here
            length = compute_thread.run(predict, ids, max_new) if getattr(self.length_predictor, "runs_model", False) \
                else predict(ids, max_new)
            latency = time.perf_counter() - t0
        if fmt is not None:
            length = fmt.bounded(self.loaded, max_new, length)
        length = LengthEstimate(predicted_tokens=max(1, min(length.predicted_tokens, max_new)),
                                predicted_tokens_bound=max(1, min(length.predicted_tokens_bound, max_new)),
                                distribution=length.distribution)
        budget = float(req.budget) - already_elapsed
        ceiling = self.max_eviction_ratio_for(req) if press_applies(len(ids)) else 0.0
        # The speed is uncertain too: the tokens that fit at five quantiles of the recent jobs'
        # measured/predicted speed (all the median until the calibration has seen enough jobs).
        speeds = [timed(self.calibration.model_at(q)) if q != 0.5 else tm for q in SPEED_QUANTILES]

        def fits_at(ratio: float) -> list[int]:
            return [tokens_that_fit(m, len(ids), ratio, budget, latency, max_new) for m in speeds]

        kind = request_kind(len(ids), int(req.min_useful_tokens), bool(req.choices))
        chosen = None
        if self.planner == "score" and self.fixed_ratio(req) is None:
            dist = length.dist().capped(max_new)
            paper = optimal_eviction_ratio(tm, len(ids), length.predicted_tokens_bound, budget,
                                           latency + tm.evict_overhead(len(ids), 1.0))
            chosen = score_planner.choose(
                score_planner.candidate_ratios(ceiling, [paper]),
                probability=lambda a: sum(dist.p_at_most(f) for f in fits_at(a)) / len(speeds),
                quality=lambda a: self.retention.at(a, kind),
                skip_next=Policy.parse(req.policy) == Policy.SKIP_NEXT)
        plan = plan_eviction(
            tm, len(ids), length.predicted_tokens, length.predicted_tokens_bound, budget,
            max_eviction_ratio=self.max_eviction_ratio_for(req), predictor_time=latency,
            press_applies=press_applies(len(ids)), fixed_eviction_ratio=self.fixed_ratio(req),
            worst_tm=timed(self.calibration.model_at(self.worst_case_quantile)),
            planner=self.planner, min_useful_tokens=int(req.min_useful_tokens) or (
                fmt.min_tokens(self.loaded, max_new) if fmt is not None else self.min_useful_tokens),
            max_new_tokens=max_new, verdict_tm=timed(self.calibration.for_refusals),
            chosen_ratio=None if chosen is None else chosen.eviction_ratio,
        )

        def end_to_end(n):
            return latency + tm.end_to_end(len(ids), n, plan.eviction_ratio)

        odds = completion_odds(end_to_end, length.dist(), fits_at(plan.eviction_ratio), max_new)
        quality = self.retention.at(plan.eviction_ratio, kind)
        length, plan = self._reported_point(length, plan, end_to_end, max_new)
        plan = dataclasses.replace(plan, answer_words=int(req.answer_words or 0), completion_probability=odds.probability,
                                   expected_time=odds.expected_time, p90_time=odds.p90_time, expected_quality=quality,
                                   expected_score=chosen.expected_score if chosen is not None else odds.probability * quality)
        return Estimate(prompt_ids=ids, length=length, plan=plan, predictor_latency=latency, request=req, time_model=tm)
