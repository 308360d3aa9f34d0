"""``RLPPredictor``: the trained response-length predictor behind the engine's seam.

``predict(prompt_ids, max_new_tokens)`` runs the first L layers of the target model on the
(bounded) prompt, the trained head, and returns ``LengthEstimate(expected, bound)``:
expected = the upper edge of the predicted bucket; bound = the calibrated bound
min(ceil(q * expected), cap) by default, or the paper's min(k * expected, cap) with ``bound="paper"``.
When the predicted bucket is the top one (the response reached the label cap), the bound is the
job's ``max_new_tokens``: the head cannot tell how far past the cap it would go.
"""
from __future__ import annotations

import importlib.resources
import pathlib
from typing import Sequence

from ..length_distribution import LengthDistribution
from ..length_predictor import LengthEstimate
from .bounds import calibrated_bound, paper_bound
from .model import LengthHead, layer_features

DEFAULT_HEAD_FILE = "rlp_head_SmolLM2-135M-Instruct.pt"


def default_head_path() -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("timebill") / "data" / DEFAULT_HEAD_FILE))


class RLPPredictor:
    name = "rlp"
    runs_model = True  # model layers: called on the compute thread (timebill/compute_thread.py)

    def __init__(self, loaded, head: LengthHead | str | pathlib.Path | None = None, bound: str = "calibrated",
                 k: float | None = None):
        if head is None or isinstance(head, (str, pathlib.Path)):
            path = pathlib.Path(head) if head else default_head_path()
            if not path.is_file():
                raise FileNotFoundError(f"no trained RLP head at {path}: run `python -m timebill.rlp train`")
            head = LengthHead.load(path)
        self.loaded = loaded
        self.head = head
        cfg = head.cfg
        hidden = int(getattr(loaded.model.config, "hidden_size", 0))
        if cfg.model_hidden and hidden != cfg.model_hidden:
            raise ValueError(f"the RLP head was trained on {cfg.model_name or 'another model'} (hidden {cfg.model_hidden}); "
                             f"this model ({loaded.name}) has hidden {hidden}")
        if cfg.layers > loaded.num_layers:
            raise ValueError(f"the RLP head needs {cfg.layers} layers; {loaded.name} has {loaded.num_layers}")
        if bound not in ("calibrated", "paper"):
            raise ValueError(f"unknown bound '{bound}' (known: calibrated, paper)")
        if bound == "calibrated" and cfg.bound_factor <= 0:
            raise ValueError("this RLP head has no calibrated bound factor; use bound='paper'")
        self.bound = bound
        self.k = float(k if k is not None else cfg.paper_k)
        self.name = f"rlp(L={cfg.layers},B={cfg.width},{bound})"

    @property
    def state_layer(self) -> int:
        """The hidden state the head reads (after this layer): the engine takes it from the job's
        own prefill (``DeferredPress``) instead of running ``predict``'s pass."""
        return self.head.cfg.layers

    def reads_states_of(self, prompt_tokens: int) -> bool:
        """Whether the served prefill's states of a prompt this long are what the head was trained
        on: a prompt longer than its input bound was cut to its two ends, so ``predict`` cuts it
        the same way (its first L layers over at most that many tokens)."""
        bound = self.head.cfg.max_input_tokens
        return bound <= 0 or prompt_tokens <= bound

    def _features(self, prompt_ids: Sequence[int]):
        cfg = self.head.cfg
        return layer_features(self.loaded.model, prompt_ids, [cfg.layers], cfg.max_input_tokens)[cfg.layers][None]

    def expected_length(self, prompt_ids: Sequence[int]) -> int:
        return int(self.head.predict_lengths(self._features(prompt_ids))[0])

    def state(self, prompt_ids: Sequence[int]):
        """The prompt's pooled state after layer L, by a pass of its own over the first L layers:
        what the served prefill hands ``from_state``."""
        return self._features(prompt_ids)[0]

    def predict(self, prompt_ids: Sequence[int], max_new_tokens: int) -> LengthEstimate:
        """A pass of its own over the first L layers (what-if estimates, and prompts not yet prefilled)."""
        return self.from_state(self.state(prompt_ids), max_new_tokens)

    def from_state(self, state, max_new_tokens: int) -> LengthEstimate:
        """The estimate from a prompt's pooled state after layer L (``deferred_press.pool``)."""
        cfg = self.head.cfg
        feats = state[None].float()  # one state serves the point and the distribution
        n_hat = int(self.head.predict_lengths(feats)[0])
        dist = None
        if cfg.kind == "classifier":
            ends, probs = self.head.distribution(feats)
            dist = LengthDistribution.of(ends, probs[0])
        cap = int(max_new_tokens)
        if n_hat >= cfg.max_tokens:  # top bucket: "at least the label cap"
            return LengthEstimate(predicted_tokens=min(n_hat, cap), predicted_tokens_bound=cap, distribution=dist)
        if self.bound == "paper":
            nw = paper_bound(n_hat, cap, self.k)
        else:
            nw = calibrated_bound(n_hat, cap, cfg.bound_factor)
        return LengthEstimate(predicted_tokens=min(n_hat, cap), predicted_tokens_bound=max(nw, min(n_hat, cap)),
                              distribution=dist)
