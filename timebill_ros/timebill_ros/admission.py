"""What the goal callback may judge of a goal before it takes a queue slot: only what costs next
to nothing. Tokenizing a 2 MB prompt takes seconds, so the prompt's length is judged in characters
against a bound derived from the model's context (no tokenizer call per goal)."""
from __future__ import annotations

import json

from timebill.request import InvalidAnswerFormat, InvalidRequest, Request

from .convert import to_request

# Margin on the character bound for a tokenizer with a normalizer (or one we cannot inspect): it
# may merge characters before they are tokenized (NFC composes a letter and its accent into one),
# so a prompt's characters can exceed the characters its tokens stand for. Four covers
# composition (at most 3 code points into 1 for Hangul jamo) with room. Without a normalizer the
# text is tokenized as it is and no margin is needed. The bound is only there to refuse megabytes
# cheaply; the tokenizer still has the last word on every accepted goal.
NORMALIZER_MARGIN = 4


def max_chars_per_token(tokenizer) -> int:
    """The most characters one token of this vocabulary stands for (computed once, at start-up).

    A prompt of ``n`` characters is then at least ``n / max_chars_per_token`` tokens long.
    """
    return max(1, max(len(tokenizer.convert_tokens_to_string([t])) for t in tokenizer.get_vocab()))


def has_normalizer(tokenizer) -> bool:
    """Whether the tokenizer may change the text before tokenizing it (True when unknown)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer: cannot tell
        return True

    def active(spec) -> bool:
        return spec is not None and (spec.get("type") != "Sequence"
                                     or any(active(n) for n in spec.get("normalizers", [])))

    return active(json.loads(backend.to_str()).get("normalizer"))


class Admission:
    """Cheap checks of a goal against the model's context, in characters."""

    def __init__(self, max_context: int, chars_per_token: int, default_max_new_tokens: int, margin: int = 1):
        self.max_context = int(max_context)
        self.chars_per_token = int(chars_per_token)
        self.default_max_new_tokens = int(default_max_new_tokens)
        self.margin = int(margin)

    @classmethod
    def of_estimator(cls, estimator) -> "Admission":
        tok = estimator.loaded.tokenizer
        return cls(estimator.loaded.max_context, max_chars_per_token(tok), estimator.default_max_new_tokens,
                   margin=NORMALIZER_MARGIN if has_normalizer(tok) else 1)

    def max_prompt_chars(self, max_new_tokens: int) -> int:
        """Prompt plus system prompt characters beyond which the prompt cannot fit in the context.

        A prompt of ``n`` characters is at least ``n / chars_per_token`` tokens (each token stands
        for at most ``chars_per_token`` characters; the chat template only adds tokens), so beyond
        ``room x chars_per_token`` (x the margin for a normalizer) it cannot fit.
        """
        room = self.max_context - (int(max_new_tokens) or self.default_max_new_tokens)
        return max(room, 0) * self.chars_per_token * self.margin

    def refusal(self, goal, default_policy: str) -> str | None:
        """Why the BudgetedQuery ``goal`` is refused before it takes a queue slot, or None."""
        try:
            self.check(to_request(goal, default_policy))
        except InvalidAnswerFormat:
            return None  # accepted and answered INVALID, so that the planner reads what is wrong with its schema
        except InvalidRequest as exc:
            return f"invalid goal: {exc}"
        return None

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
