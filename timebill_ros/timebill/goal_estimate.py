"""What one goal is told about its completion: the one estimate type every message is made from.

A core ``Estimate`` (estimator.py) is what the engine plans with: the prompt's ids, the length
prediction, the ``Plan``, the request as it is to run. A goal is told less, and the same whatever
made its estimate (the predictor node, the generation node's own estimator while the predictor is
gone, the engine's own prefill or the answer's format): a ``GoalEstimate``. The ROS layer only
translates it (timebill_ros/convert.py: to and from ``CompletionEstimate``, the
``EstimateCompletion`` response, the action result and ``JobReport``), so the TimeBill arithmetic
of a running goal, re-estimated from the tokens it has generated, lives here with the type, not
in the translation.

Times count from when the estimate was made (``predicted_total`` of a goal estimated after it
queued counts from then, not from acceptance); a message that counts from acceptance adds the
offset when it is translated.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .length_distribution import LengthDistribution, running_odds
from .length_predictor import LengthEstimate
from .time_model import kept_positions


@dataclass
class GoalEstimate:
    """One goal's estimate, from any source; times count from when it was made."""

    source: str                 # "predictor", "local", "prefill" or "format" (CompletionEstimate.source)
    prompt_tokens: int
    predicted_tokens: int
    predicted_tokens_bound: int
    eviction_ratio: float
    predicted_prefill: float
    predicted_total: float
    predicted_worst_case: float
    feasible: bool
    reason: str
    tokens_that_fit: int = 0    # answer tokens the budget holds at ``eviction_ratio`` (the planner's figure)
    latency: float = 0.0
    answer_words: int = 0       # > 0: length control's word limit; the estimate is for that prompt
    limited_ids: tuple = ()     # with answer_words: that prompt's ids, tokenized where the limit was chosen
    completion_probability: float = 1.0  # P(the answer is ready by the deadline)
    expected_time: float = 0.0  # expected end-to-end seconds over the length distribution
    p90_time: float = 0.0       # their 90th percentile
    distribution: LengthDistribution | None = None  # the predicted length distribution (None: a point)
    answer_format: str = ""     # the answer format bounding the length ("" free text; timebill/answer_format.py)

    def length(self) -> LengthEstimate:
        """The length prediction, to plan with again without predicting again."""
        return LengthEstimate(predicted_tokens=self.predicted_tokens, predicted_tokens_bound=self.predicted_tokens_bound,
                              distribution=self.distribution)

    @classmethod
    def of_estimate(cls, est, source: str) -> "GoalEstimate":
        """From a core ``Estimate`` (estimator.py), made by ``source``."""
        p = est.plan
        return cls(source=source, prompt_tokens=p.prompt_tokens, predicted_tokens=est.length.predicted_tokens,
                   predicted_tokens_bound=est.length.predicted_tokens_bound, eviction_ratio=p.eviction_ratio,
                   predicted_prefill=p.predicted_prefill,
                   predicted_total=p.predicted_total, predicted_worst_case=p.predicted_worst_case,
                   feasible=p.feasible, reason=p.reason, tokens_that_fit=p.tokens_that_fit,
                   latency=est.predictor_latency, answer_words=p.answer_words,
                   # the limited prompt's ids travel with the estimate: a goal is tokenized once
                   limited_ids=tuple(est.prompt_ids) if p.answer_words else (),
                   completion_probability=p.completion_probability, expected_time=p.expected_time,
                   p90_time=p.p90_time, distribution=est.length.distribution,
                   answer_format=est.request.answer_format.kind if est.request.answer_format is not None else "")

    # --- a running goal ---------------------------------------------------------------------------
    def remaining(self, tm, generated: int) -> tuple[float, float]:
        """Predicted decoding seconds left after ``generated`` tokens under ``tm`` (a TimeModel):
        (expected, worst case).

        Past the expected length the bound is all that is left to predict with. The cache the
        steps left see is the one the job decodes with: the prompt's kept positions after eviction
        plus the tokens so far.
        """
        kv = kept_positions(self.prompt_tokens, self.eviction_ratio) + max(generated - 1, 0)
        point, bound = self.predicted_tokens, self.predicted_tokens_bound
        left = point - generated if generated < point else bound - generated
        return tm.decode(kv, max(left, 0) + 1), tm.decode(kv, max(bound - generated, 0) + 1)

    def running(self, tm, generated: int, elapsed: float, budget: float, limit: int) -> "GoalEstimate":
        """This estimate of a goal re-made after ``generated`` tokens, ``elapsed`` seconds after its
        acceptance (``budget``: its time budget, ``limit``: its token limit); times count from now.

        The length distribution is conditioned on an answer at least ``generated`` tokens long
        (length_distribution.running_odds), so the completion probability and the expected and
        p90 times say what is left of this answer, not what was predicted before it started. It
        is infeasible, with the reason, once the worst case left no longer fits the time left.
        Everything else (the length predicted, the ratio, the word limit and its ids) stays: the
        job keeps running with them.
        """
        left, worst = self.remaining(tm, generated)
        feasible = elapsed + worst <= budget
        reason = "" if feasible else (f"{self.predicted_tokens_bound - generated} more tokens in the worst case need {worst:.3f} s; "
                                      f"{max(budget - elapsed, 0):.3f} s left")
        odds = running_odds(tm, self.prompt_tokens, self.eviction_ratio, self.length().dist(), generated, elapsed,
                            budget, limit)
        return replace(self, predicted_total=left, predicted_worst_case=worst, feasible=feasible, reason=reason,
                       completion_probability=odds.probability, expected_time=odds.expected_time - elapsed,
                       p90_time=odds.p90_time - elapsed)
