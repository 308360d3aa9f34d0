"""KV-cache presses by name (NVIDIA kvpress), made safe for short prompts.

A press compresses only the prefill. Some presses cannot score prompts shorter than their
observation window (SnapKV asserts when the prompt is not longer than ``window_size``), so the
window shrinks with the prompt, and prompts too short to compress at all run with no press.
"""
from __future__ import annotations

import re

# Presses that work on a CPU with SDPA attention and need nothing but a ratio.
_ALIASES = {
    "snapkv": "SnapKVPress",
    "streamingllm": "StreamingLLMPress",
    "knorm": "KnormPress",
    "expected_attention": "ExpectedAttentionPress",
    "tova": "TOVAPress",
    "observed_attention": "ObservedAttentionPress",  # needs attn_implementation="eager"
    "random": "RandomPress",
}
DEFAULT_PRESS = "snapkv"
# Below this many prompt tokens nothing is compressed (StreamingLLM/ExpectedAttention need > 4).
MIN_TOKENS_TO_COMPRESS = 16
SNAPKV_WINDOW = 64


class UnknownPressError(ValueError):
    pass


def press_class(name: str):
    """The kvpress class for a short name (``snapkv``) or a class name (``SnapKVPress``)."""
    import kvpress

    key = re.sub(r"[-\s]", "_", name.strip()).lower()
    cls_name = _ALIASES.get(key, name.strip())
    cls = getattr(kvpress, cls_name, None)
    if cls is None or not isinstance(cls, type) or not cls_name.endswith("Press"):
        known = ", ".join(sorted(_ALIASES))
        raise UnknownPressError(f"unknown press '{name}': use one of {known}, or a kvpress class name")
    return cls


def press_applies(prompt_tokens: int) -> bool:
    return prompt_tokens >= MIN_TOKENS_TO_COMPRESS


def make_press(name: str, ratio: float, prompt_tokens: int):
    """A press that evicts ``ratio`` of a prompt of ``prompt_tokens`` tokens, or None for no press."""
    cls = press_class(name)
    if ratio <= 0.0 or not press_applies(prompt_tokens):
        return None
    if cls.__name__ == "SnapKVPress":
        # SnapKV scores with the attention of its last `window` queries; it needs more tokens than that.
        return cls(compression_ratio=ratio, window_size=min(SNAPKV_WINDOW, prompt_tokens // 2))
    return cls(compression_ratio=ratio)
