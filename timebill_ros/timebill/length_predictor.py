"""The length-prediction seam: anything with ``predict(prompt_ids) -> LengthEstimate``.

The fine-grained response-length predictor (RLP, ``timebill.rlp``) plugs in here. Until a
trained one is available, ``ConstantLengthPredictor`` is a plain guess that needs no training:
a fixed expected length and the hard cap as the upper bound. It knows nothing about the prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from .length_distribution import LengthDistribution


@dataclass(frozen=True)
class LengthEstimate:
    # the names CompletionEstimate and the action result give them
    predicted_tokens: int        # the point prediction of the answer's tokens
    predicted_tokens_bound: int  # upper bound used for the worst case (the paper's N_W)
    distribution: LengthDistribution | None = None  # the predictor's distribution, when it has one

    def dist(self) -> LengthDistribution:
        """The distribution, or all mass at ``predicted_tokens`` for a predictor that gives only a point."""
        return self.distribution or LengthDistribution.point(self.predicted_tokens)


class LengthPredictor(Protocol):
    # The estimator measures each prediction's time itself and counts it in the budget. A predictor
    # that runs model layers says so (``runs_model = True``): it is then called on the compute thread.
    name: str

    def predict(self, prompt_ids: Sequence[int], max_new_tokens: int) -> LengthEstimate: ...

    # Optional: a predictor that reads a hidden state of the model names it (``state_layer``, the
    # layer it follows), predicts from it (``from_state``) and says for which prompt lengths the
    # served prefill's state is the one it reads (``reads_states_of(prompt_tokens)``); the engine
    # then takes that state from the job's own prefill (timebill/deferred_press.py) and does not
    # call ``predict``.


@dataclass
class ConstantLengthPredictor:
    """Not the RLP: always predicts ``expected`` tokens, bounded by the job's max_new_tokens."""

    expected: int = 64
    name: str = "constant"

    def predict(self, prompt_ids: Sequence[int], max_new_tokens: int) -> LengthEstimate:
        return LengthEstimate(predicted_tokens=min(self.expected, max_new_tokens), predicted_tokens_bound=max_new_tokens)
