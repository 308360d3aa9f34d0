"""What the goal callback may judge of a goal before it takes a queue slot: only what costs next
to nothing. Tokenizing a 2 MB prompt takes seconds, so the prompt's length is judged in characters
against a bound derived from the model's context (no tokenizer call per goal)."""
from __future__ import annotations

from timebill.request import InvalidRequest, Request

# Margin on the character bound: a tokenizer's normalizer may merge characters before they are
# tokenized (NFC composes a letter and its accent into one), so a prompt's characters can exceed
# the characters its tokens stand for. Four covers composition (at most 3 code points into 1 for
# Hangul jamo) with room; the bound is only there to refuse megabytes cheaply, the tokenizer still
# has the last word on every accepted goal.
NORMALIZER_MARGIN = 4


def max_chars_per_token(tokenizer) -> int:
    """The most characters one token of this vocabulary stands for (computed once, at start-up).

    A prompt of ``n`` characters is then at least ``n / max_chars_per_token`` tokens long.
    """
    return max(1, max(len(tokenizer.convert_tokens_to_string([t])) for t in tokenizer.get_vocab()))


class Admission:
    """Cheap checks of a goal against the model's context, in characters."""

    def __init__(self, max_context: int, chars_per_token: int, default_max_new_tokens: int):
        self.max_context = int(max_context)
        self.chars_per_token = int(chars_per_token)
        self.default_max_new_tokens = int(default_max_new_tokens)

    @classmethod
    def of_estimator(cls, estimator) -> "Admission":
        loaded = estimator.loaded
        return cls(loaded.max_context, max_chars_per_token(loaded.tokenizer), estimator.default_max_new_tokens)

    def max_prompt_chars(self, max_new_tokens: int) -> int:
        """Prompt plus system prompt characters beyond which the prompt cannot fit in the context."""
        room = self.max_context - (int(max_new_tokens) or self.default_max_new_tokens)
        return max(room, 0) * self.chars_per_token * NORMALIZER_MARGIN

    def check(self, req: Request) -> None:
        """Raise InvalidRequest when ``req`` certainly does not fit the context (``req`` is already
        checked by ``check_request``)."""
        max_new = int(req.max_new_tokens) or self.default_max_new_tokens
        if max_new >= self.max_context:
            raise InvalidRequest(f"max_new_tokens {max_new} leaves no room for the prompt in the model's "
                                 f"context of {self.max_context} tokens")
        chars = len(req.prompt) + len(req.system_prompt)
        limit = self.max_prompt_chars(max_new)
        if chars > limit:
            raise InvalidRequest(
                f"the prompt is {chars} characters: more than the model's context of {self.max_context} tokens "
                f"can hold with max_new_tokens {max_new} (at most {limit} characters)")
