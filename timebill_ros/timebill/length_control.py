"""Budget-aware length control (issue 11, part 4): ask for a shorter answer when the budget cannot
hold the predicted one.

When the plan says fewer answer tokens fit than the predicted answer, the job's system prompt
gains "Answer in at most W words.", W derived from the tokens that fit, and the job is planned
again for that prompt (``Estimator.estimate``). The 135M model reads such instructions: on the
everyday questions at 0.5-1.25 s budgets it turned 17-33 % completed answers into 47-67 % and
raised the average score by 0.09-0.13, every bootstrap interval above zero; on NarrativeQA and
QASPER, whose prompts already ask for one sentence or yes/no, it changed nothing beyond the
variation (docs/RESULTS.md). So it is on by default (config ``length_control``) and a goal can
turn it off.
"""
from __future__ import annotations

DEFAULT_LENGTH_CONTROL = True
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


def system_prompt_of(req) -> str:
    """The system prompt a request is generated with: its own, plus what its answer format asks
    for ("Answer with exactly one of: ..."), plus its word limit if it has one."""
    fmt = req.answer_format
    base = req.system_prompt
    if fmt is not None and fmt.hint:
        base = f"{base} {fmt.hint}" if base else fmt.hint
    return instructed(base, req.answer_words) if req.answer_words else base
