"""Completion estimates: tokenize, predict the length, plan the eviction ratio. Nothing is generated.

Used before every generation (by the engine) and for planners' what-if questions (by the
predictor node), so both always give the same answer for the same request.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .length_predictor import ConstantLengthPredictor, LengthEstimate, LengthPredictor
from .planner import (DEFAULT_ALPHA_MAX, DEFAULT_MIN_USEFUL_TOKENS, DEFAULT_PLANNER, Plan, check_planner_settings,
                      plan_eviction)
from .presses import DEFAULT_PRESS, press_applies, press_class
from .request import InvalidRequest, Request, check_request
from .time_model import OnlineCalibration, TimeModel


@dataclass(frozen=True)
class Estimate:
    prompt_ids: list
    length: LengthEstimate
    plan: Plan
    predictor_latency: float  # measured seconds of this estimate's length prediction


class Estimator:
    def __init__(
        self,
        loaded,
        time_model: TimeModel | OnlineCalibration,
        length_predictor: LengthPredictor | None = None,
        default_max_new_tokens: int = 256,
        alpha_max: float = DEFAULT_ALPHA_MAX,
        press: str = DEFAULT_PRESS,
        worst_case_quantile: float = 0.5,
        planner: str = DEFAULT_PLANNER,
        min_useful_tokens: int = DEFAULT_MIN_USEFUL_TOKENS,
    ):
        self.loaded = loaded
        self.calibration = time_model if isinstance(time_model, OnlineCalibration) else OnlineCalibration(time_model)
        self.length_predictor = length_predictor or ConstantLengthPredictor()
        self.default_max_new_tokens = int(default_max_new_tokens)
        self.alpha_max = float(alpha_max)
        # The timing model's quantile that plans the worst case: 0.5 is the paper (its median
        # correction), higher keeps a margin for timing noise (see OnlineCalibration.model_at).
        if not 0.5 <= worst_case_quantile < 1.0:
            raise ValueError(f"worst_case_quantile must be in [0.5, 1), got {worst_case_quantile}")
        self.worst_case_quantile = float(worst_case_quantile)
        check_planner_settings(planner, min_useful_tokens)  # at start-up, not at the first goal
        self.planner = planner
        self.min_useful_tokens = int(min_useful_tokens)
        press_class(press)  # fail at start-up, not at the first goal
        self.press = press

    @property
    def time_model(self) -> TimeModel:
        return self.calibration.model

    def max_new_tokens(self, req: Request) -> int:
        return int(req.max_new_tokens) or self.default_max_new_tokens

    def alpha_ceiling(self, req: Request) -> float:
        a = req.max_eviction_ratio
        return self.alpha_max if a is None or a < 0 else float(a)

    def encode(self, req: Request) -> list:
        """Validate the request and return its prompt token ids."""
        check_request(req)
        return self._fits_context(req, self.loaded.encode_chat(req.prompt, req.system_prompt, raw=req.raw))

    def tokenized(self, req: Request, ids) -> list:
        """Validate the request and prompt ids tokenized elsewhere (the generation node hands its ids
        to the predictor node): what ``encode`` checks, plus the vocabulary, so that no sender can
        make the model index out of its embedding table."""
        check_request(req)
        ids = [int(i) for i in ids]
        vocab = int(self.loaded.model.config.vocab_size)
        bad = next((i for i in ids if not 0 <= i < vocab), None)
        if bad is not None:
            raise InvalidRequest(f"prompt token id {bad} is outside the model's vocabulary of {vocab}: send the ids "
                                 f"of this model's tokenizer, or none (the prompt is then tokenized here)")
        return self._fits_context(req, ids)

    def _fits_context(self, req: Request, ids: list) -> list:
        room = self.loaded.max_context - self.max_new_tokens(req)
        if len(ids) > room:
            raise InvalidRequest(
                f"the prompt is {len(ids)} tokens; with max_new_tokens {self.max_new_tokens(req)} the model's "
                f"context of {self.loaded.max_context} leaves room for {max(room, 0)}"
            )
        return ids

    def estimate(self, req: Request, already_elapsed: float = 0.0, prompt_ids: list | None = None,
                 length: LengthEstimate | None = None) -> Estimate:
        """Plan ``req`` with ``already_elapsed`` seconds of its budget gone (e.g. queueing).

        ``length``: a prediction already made for this request (e.g. by the predictor node when
        the goal was accepted); it is then not predicted again inside the budget.
        """
        ids = prompt_ids if prompt_ids is not None else self.encode(req)
        max_new = self.max_new_tokens(req)
        t0 = time.perf_counter()
        if length is None:
            length = self.length_predictor.predict(ids, max_new)
        latency = time.perf_counter() - t0
        length = LengthEstimate(expected=max(1, min(length.expected, max_new)), bound=max(1, min(length.bound, max_new)))
        plan = plan_eviction(
            self.time_model, len(ids), length.expected, length.bound, float(req.budget) - already_elapsed,
            alpha_max=self.alpha_ceiling(req), predictor_time=latency,
            press_applies=press_applies(len(ids)), fixed_alpha=req.fixed_alpha,
            worst_tm=self.calibration.model_at(self.worst_case_quantile),
            planner=self.planner, min_useful_tokens=self.min_useful_tokens, max_new_tokens=max_new,
        )
        return Estimate(prompt_ids=ids, length=length, plan=plan, predictor_latency=latency)

