"""What a serving path (backend) offers the engine and the profiler, and its errors.

A backend owns one model's cache for one job at a time (the engine holds a lock around a job):
``prefill`` fills it from the prompt, compressed by a kvpress press, and returns the logits of
the last prompt position; ``decode_one`` appends one token at a logical position and returns
the next logits. Logits are 1-D float tensors over the vocabulary. Deadlines, cancel, sampling
and streaming are the engine's, shared by every backend.
"""
from __future__ import annotations

from typing import Protocol


class Backend(Protocol):
    name: str

    def prefill(self, ids: list, press=None) -> tuple:
        """(logits of the last prompt token, cached positions after the press)."""

    def decode_one(self, token_id: int, position: int):
        """Logits after appending ``token_id`` at logical ``position``."""

    def cached(self) -> int:
        """Positions in the cache now."""


class BackendCannotApply(ValueError):
    """A press this backend cannot carry out; the message names the press and the fix."""

    def __init__(self, backend: str, press, why: str):
        name = type(press).__name__ if press is not None and not isinstance(press, str) else str(press)
        super().__init__(
            f"the {backend} backend cannot apply the press {name}: {why}. Use a press that evicts the same "
            f"number of positions in every layer (snapkv, streamingllm, knorm, expected_attention, tova, random), "
            f"or set `backend: torch` in config/timebill.yaml")
