"""A budgeted request, its outcomes and policies, and what makes a request invalid."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Policy(str, enum.Enum):
    KILL = "kill"            # stop at the deadline; the partial answer is returned
    SKIP_NEXT = "skip_next"  # let the job finish; jobs released while it overruns are skipped

    @classmethod
    def parse(cls, value: "Policy | str") -> "Policy":
        if isinstance(value, Policy):
            return value
        key = str(value).strip().lower().replace("-", "_")
        for p in cls:
            if key == p.value:
                return p
        raise InvalidRequest(f"unknown overrun policy '{value}': use 'kill' or 'skip_next'")


class Outcome(str, enum.Enum):
    COMPLETED = "completed"
    KILLED = "killed"
    SKIPPED = "skipped"
    CANCELED = "canceled"
    INFEASIBLE = "infeasible"
    INVALID = "invalid"
    FAILED = "failed"


class InvalidRequest(ValueError):
    """The request itself is wrong (empty prompt, bad budget, too long, unknown option)."""


class InvalidAnswerFormat(InvalidRequest):
    """A malformed choice list, JSON schema or grammar: the message names the problem and where."""


@dataclass
class Request:
    prompt: str
    budget: float                          # seconds, end to end from acceptance
    system_prompt: str = ""
    max_new_tokens: int = 0                # 0 = the engine's default
    policy: Policy | str = Policy.KILL
    max_eviction_ratio: float | None = None  # None or negative = the engine's default
    raw: bool = False                      # True: no chat template
    temperature: float = 0.0               # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    fixed_eviction_ratio: float | None = None  # bypass the planner (baselines)
    length_control: bool | None = None     # None = the engine's default; False: never ask for a shorter answer
    min_useful_tokens: int = 0             # the least answer worth starting (1 for a yes/no question); 0 = the engine's default
    answer_words: int = 0                  # > 0: the system prompt asks for at most this many words (set by length control)
    # An answer format (at most one; timebill/answer_format.py): the answer is exactly one of
    # ``choices``, a JSON value valid against ``json_schema``, or follows the GBNF ``grammar``.
    choices: tuple = ()
    json_schema: str = ""
    grammar: str = ""

    @property
    def answer_format(self):
        """The AnswerFormat, or None for free text (parsed once per distinct format)."""
        from .answer_format import format_of

        return format_of(self)


def check_budget(budget) -> float:
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise InvalidRequest(f"the time budget must be a number of seconds, got {budget!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequest(f"the time budget must be a positive finite number of seconds, got {budget!r}")
    return value


def check_request(req: Request) -> None:
    """Raise InvalidRequest for what can be judged without the tokenizer."""
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        raise InvalidRequest("the prompt is empty")
    check_budget(req.budget)
    Policy.parse(req.policy)
    if int(req.max_new_tokens) < 0:
        raise InvalidRequest(f"max_new_tokens must be >= 0, got {req.max_new_tokens}")
    for name in ("min_useful_tokens", "answer_words"):
        if int(getattr(req, name)) < 0:
            raise InvalidRequest(f"{name} must be >= 0 (0 = the default), got {getattr(req, name)}")
    a = req.max_eviction_ratio
    if a is not None and (not math.isfinite(a) or a >= 1.0):
        raise InvalidRequest(f"max_eviction_ratio must be below 1 (negative = default), got {a}")
    if req.fixed_eviction_ratio is not None and not 0.0 <= req.fixed_eviction_ratio < 1.0:
        raise InvalidRequest(f"a fixed eviction ratio must be in [0, 1), got {req.fixed_eviction_ratio}")
    if not (req.temperature >= 0 and math.isfinite(req.temperature)):
        raise InvalidRequest(f"temperature must be >= 0, got {req.temperature}")
    if not 0.0 < req.top_p <= 1.0:
        raise InvalidRequest(f"top_p must be in (0, 1], got {req.top_p}")
    req.answer_format  # noqa: B018 - raises InvalidRequest for a malformed choice list, schema or grammar
