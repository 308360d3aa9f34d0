"""Evict after the prefill, at a ratio chosen from what the prefill computed (the paper's order).

A kvpress ``ScorerPress`` scores each layer's prompt keys inside the prefill and keeps the top
(1 - ratio) at once. The scores of a layer depend only on that layer's inputs, and the prefill's
attention always sees the whole prompt (the press cuts only what is stored for decoding), so
scoring during the prefill and cutting afterwards keeps exactly the positions the press would
have kept. ``DeferredPress`` does that: it records every layer's scores and the hidden states a
length predictor reads, then, when the prefill ends, asks ``decide(states)`` for the ratio and
evicts. The length prediction and the plan thus cost no pass of their own.

It is a press like any other to a backend (``with press(model): model(...)``): the torch and
llama.cpp backends run it unchanged (llama.cpp receives the cache after the eviction).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch

from .presses import press_applies, press_class, make_press


def pool(hidden: torch.Tensor) -> torch.Tensor:
    """[mean over the prompt's tokens ; the last token] of one sequence's states [tokens, hidden]."""
    h = hidden.float()
    return torch.cat([h.mean(0), h[-1]])


def state_module(model, layer: int):
    """The module whose output is the hidden state after ``layer`` (1-based); the model's last
    layer is read after its final norm, as the model itself reads it."""
    base = model.model
    if layer == len(base.layers):
        return base.norm
    if not 1 <= layer < len(base.layers):
        raise ValueError(f"no hidden state after layer {layer}: the model has {len(base.layers)} layers")
    return base.layers[layer - 1]


@dataclass
class DeferredPress:
    """Records the press's scores and layer ``state_layer``'s pooled state during a prefill; at its
    end evicts ``decide(state)`` of the prompt (a ratio in [0, 1); 0 keeps everything)."""

    press_name: str
    prompt_tokens: int
    state_layer: int
    decide: Callable[[torch.Tensor], float]
    ratio: float | None = None             # what decide chose, once the prefill has ended
    _scores: dict = field(default_factory=dict)
    _cache: object = None
    _state: torch.Tensor | None = None

    def __call__(self, model):
        return self._recording(model)

    @contextlib.contextmanager
    def _recording(self, model):
        # A probe press of the same kind: its score() is what the press would rank positions by.
        scorer = make_press(self.press_name, 0.5, self.prompt_tokens) if press_applies(self.prompt_tokens) else None
        if scorer is not None and not hasattr(scorer, "score"):
            raise ValueError(f"the press {self.press_name} ({press_class(self.press_name).__name__}) does not rank "
                             f"positions by a score, so its eviction cannot wait for the prefill's end: use a "
                             f"ScorerPress (snapkv, streamingllm, knorm, expected_attention, tova, random)")
        hooks = [state_module(model, self.state_layer).register_forward_hook(self._keep_state)]
        with contextlib.ExitStack() as stack:
            if scorer is not None:
                scorer.compress = self._recorder(scorer)
                stack.enter_context(scorer(model))
            try:
                yield self
            finally:
                for h in hooks:
                    h.remove()
        self._finish()

    def _keep_state(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        self._state = pool(hidden[0])

    def _recorder(self, scorer):
        def record(module, hidden_states, keys, values, attentions, kwargs):
            self._scores[module.layer_idx] = scorer.score(module, hidden_states, keys, values, attentions, kwargs)
            self._cache = kwargs["past_key_values"]
            return keys, values  # everything stays until the ratio is known
        return record

    def _finish(self) -> None:
        if self._state is None:
            raise RuntimeError("the prefill ended without computing the hidden state the length predictor reads")
        ratio = float(self.decide(self._state))
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"eviction ratio {ratio} is outside [0, 1)")
        self.ratio = ratio
        if ratio > 0 and self._scores:
            evict(self._cache, self._scores, ratio)
        self._scores.clear()
        self._cache = None


def evict(cache, scores: dict, ratio: float) -> int:
    """Keep the (1 - ratio) highest-scored positions of every layer, as ``ScorerPress.compress``
    does. Returns the positions kept."""
    from kvpress.utils import compute_n_kept

    kept = 0
    for idx, s in scores.items():
        layer = cache.layers[idx]
        n_kept = compute_n_kept(s.shape[-1], ratio)
        index = s.topk(n_kept, dim=-1).indices.unsqueeze(-1).expand(-1, -1, -1, layer.keys.shape[-1])
        layer.keys = layer.keys.gather(2, index).contiguous()
        layer.values = layer.values.gather(2, index).contiguous()
        kept = n_kept
    return kept
