"""The reference serving path: transformers fp32 with a DynamicCache, the press on the prefill."""
from __future__ import annotations

import contextlib


class TorchBackend:
    name = "torch"

    def __init__(self, loaded):
        self.loaded = loaded
        self.cache = None
        self._cached = 0

    def prefill(self, ids, press=None):
        import torch
        from transformers import DynamicCache

        self.cache = DynamicCache()
        with torch.inference_mode():
            with press(self.loaded.model) if press is not None else contextlib.nullcontext():
                out = self.loaded.model(input_ids=torch.tensor([ids], dtype=torch.long),
                                        past_key_values=self.cache, logits_to_keep=1)
        self._cached = self.cache.get_seq_length()
        return out.logits[0, -1].float(), self._cached  # float32 also from a bfloat16 model (sampling reads numpy)

    def decode_one(self, token_id: int, position: int):
        import torch

        # The logical position, not the cache's length: a compressed cache is physically shorter.
        with torch.inference_mode():
            out = self.loaded.model(
                input_ids=torch.tensor([[token_id]], dtype=torch.long), past_key_values=self.cache,
                position_ids=torch.tensor([[position]], dtype=torch.long), logits_to_keep=1)
        self._cached += 1
        return out.logits[0, -1].float()

    def cached(self) -> int:
        return self._cached
