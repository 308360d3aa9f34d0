"""How often a running goal's tokens go back to its client.

A token costs the engine one decoding step (~10 ms for the embedded model on 2 cores); an action
feedback message costs the decoding loop about 1.7 ms more (serialisation, the middleware, the
client waking up on the same cores: docs/BENCHMARKS.md). Tokens are therefore coalesced: a message
leaves once at least ``every_tokens`` tokens are pending and ``period`` seconds have passed since
the previous one. The first token leaves at once (the time to the first token is what a waiting
operator sees), and whatever is pending when the answer ends goes out before the result, so the
stream still adds up to the result's text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# 20 messages a second: smooth for a person watching the text, a rate planners' action clients
# take in their stride, and a fifth of the messages of one per token at this model's speed.
DEFAULT_FEEDBACK_PERIOD = 0.05


@dataclass(frozen=True)
class FeedbackPacing:
    every_tokens: int = 1                    # config `feedback_every_n_tokens`
    period: float = DEFAULT_FEEDBACK_PERIOD  # config `feedback_period` (seconds; 0: every `every_tokens` tokens)

    def __post_init__(self):
        if int(self.every_tokens) < 1:
            raise ValueError(f"feedback_every_n_tokens must be at least 1, got {self.every_tokens}")
        if not (isinstance(self.period, (int, float)) and math.isfinite(self.period) and self.period >= 0):
            raise ValueError(f"feedback_period must be a number of seconds >= 0 (0: a message every "
                             f"feedback_every_n_tokens tokens), got {self.period!r}")

    @classmethod
    def of_config(cls, cfg: dict) -> "FeedbackPacing":
        return cls(int(cfg["feedback_every_n_tokens"]), float(cfg["feedback_period"]))

    def due(self, pending_tokens: int, since_last: float) -> bool:
        """Whether a message leaves now, with ``pending_tokens`` not yet sent and ``since_last``
        seconds since the previous message (``math.inf`` before the first)."""
        return pending_tokens >= self.every_tokens and since_last >= self.period
