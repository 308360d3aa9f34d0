"""Degenerate loops: an answer that has started to repeat itself.

Small models decoded greedily often fall into a cycle (the same sentence or list item again and
again) and run to their token cap; on the embedded model 41 % of the length predictor's first
labels did (docs/RLP.md). Once the answer's last ``window`` tokens repeat a span it already holds,
every further token is a copy: ending it there returns the same content sooner (with the one
repeated span, which was streamed already), and makes its length something a predictor can learn
instead of the cap.
"""
from __future__ import annotations

DEFAULT_LOOP_WINDOW = 32  # tokens; config `loop_window_tokens`

_NUMBER = -1  # the key every all-digit token shares


class LoopGuard:
    """Watches an answer token by token; caught once its last ``window`` tokens occurred before.

    Spans are compared twice: as they are (",000,000,000..." repeats), and with every number read
    as the same token, so that "10. A robotic arm can pick up a cup" and "11. A robotic arm can
    pick up a cup" repeat each other (a numbered list listing the same item again); read that way
    a span must hold a word to count, or counting ("1. 2. 3. ...") would. ``window`` tokens of
    repetition (32, about 25 words) is far longer than the phrases a sound answer repeats."""

    def __init__(self, window: int, pieces: list[str]):
        """``pieces``: each token id's text (``timebill.constrained.token_pieces``)."""
        if window < 1:
            raise ValueError(f"loop window must be at least 1 token, got {window}")
        self.window = int(window)
        self._pieces = pieces
        self._ids: list[int] = []   # the answer so far
        self._keys: list[int] = []  # the same, numbers read alike
        self._seen: set[tuple] = set()        # spans as they are
        self._seen_keys: set[tuple] = set()   # spans with numbers read alike
        self.repeat_start: int | None = None  # where the repeated span begins, once caught

    def _key(self, token_id: int) -> int:
        piece = self._pieces[token_id].strip() if 0 <= token_id < len(self._pieces) else ""
        return _NUMBER if piece.isdigit() else token_id

    def _has_words(self, span: tuple) -> bool:
        return any(k != _NUMBER and any(c.isalpha() for c in self._pieces[k]) for k in span if k < len(self._pieces))

    def push(self, token_id: int) -> bool:
        """The answer's next token (one call per token). True once the answer is caught in a loop."""
        if self.repeat_start is not None:
            return True
        self._ids.append(token_id)
        self._keys.append(self._key(token_id))
        if len(self._ids) < self.window:
            return False
        span, keys = tuple(self._ids[-self.window:]), tuple(self._keys[-self.window:])
        if span in self._seen or (keys in self._seen_keys and self._has_words(keys)):
            self.repeat_start = len(self._ids) - self.window
            return True
        self._seen.add(span)
        self._seen_keys.add(keys)
        return False
