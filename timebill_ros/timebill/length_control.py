"""Budget-aware length control (issue 11, part 4), measured as the evaluation method
``timebill_brief``; the engine does not use it (see docs/RESULTS.md for why).

When the budget fits fewer answer tokens than the predicted answer, the job is asked for a shorter
answer: its system prompt gains "Answer in at most W words.", W derived from the tokens that fit.
The 135M model reads such instructions (docs/RLP.md: "Answer in one short sentence." gives answers
of ~46 tokens where the same kind of question otherwise runs to 191-346).
"""
from __future__ import annotations

# Few distinct limits: each is a different prompt, generated and recorded separately.
WORD_LIMITS = (5, 10, 20, 40)
# Rule of thumb for English text in a byte-level BPE vocabulary (not measured here).
TOKENS_PER_WORD = 1.3


def word_limit(tokens_that_fit: int, expected_tokens: int) -> int | None:
    """The word limit to ask for, or None when the expected answer fits as it is."""
    if tokens_that_fit >= expected_tokens:
        return None
    words = tokens_that_fit / TOKENS_PER_WORD
    fitting = [w for w in WORD_LIMITS if w <= words]
    return fitting[-1] if fitting else WORD_LIMITS[0]


def instructed(system_prompt: str, words: int) -> str:
    """``system_prompt`` with the word limit appended (the limit alone when there is none)."""
    line = f"Answer in at most {words} words."
    return f"{system_prompt} {line}" if system_prompt else line
