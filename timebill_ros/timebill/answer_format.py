"""Answer formats a planner can parse: exactly one of some choices, a JSON value valid against a
schema, or any GBNF grammar. Each becomes one grammar (``timebill.grammar``) that decoding keeps
to (``timebill.constrained``), and the format, not the prose length predictor, says how long the
answer will be: exactly for choices; for a schema or grammar the robot has sent before, the
median length of its recent whole answers (``FormatLengths``: planners send the same action
schema again and again); a schema seen for the first time, 1.5 times its shortest valid answer
(a rule of thumb: values are short); a grammar seen for the first time, the length predictor.
Every length is kept between the shortest and the longest whole answer.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass

from .gbnf import GrammarError, literal
from .grammar import Grammar
from .length_distribution import LengthDistribution
from .length_predictor import LengthEstimate
from .request import InvalidAnswerFormat


FIRST_SCHEMA_FACTOR = 1.5  # a schema's first answer: this times its shortest valid answer (not measured)


@dataclass(frozen=True)
class AnswerFormat:
    kind: str              # choices | json_schema | grammar
    grammar: Grammar
    choices: tuple = ()
    hint: str = ""         # appended to the system prompt: what the model is to answer with

    @property
    def exact(self) -> bool:
        """The answer's length is known before it is generated (up to which choice it is)."""
        return self.kind == "choices"

    def length(self, loaded, max_new: int, typical: int | None = None) -> LengthEstimate | None:
        """The answer's length as the format tells it, or None where the length predictor must
        (a grammar seen for the first time). ``typical``: the median of its recent whole answers."""
        if self.exact:
            counts = sorted(len(loaded.encode_text(c)) for c in self.choices)
            ends = sorted(set(counts))
            dist = LengthDistribution.of(ends, [counts.count(e) for e in ends])
            return LengthEstimate(predicted_tokens=round(sum(counts) / len(counts)), predicted_tokens_bound=max(counts),
                                  distribution=dist)
        lo, hi = self.token_range(loaded, max_new)
        if typical is None and self.kind == "grammar":
            return None
        expected = typical if typical is not None else round(FIRST_SCHEMA_FACTOR * lo)
        return LengthEstimate(predicted_tokens=min(max(expected, lo), hi), predicted_tokens_bound=hi)

    def bounded(self, loaded, max_new: int, length: LengthEstimate) -> LengthEstimate:
        """``length`` (e.g. predicted for prose) kept between the shortest and the longest whole answer."""
        lo, hi = self.token_range(loaded, max_new)
        dist = length.distribution.capped(hi) if length.distribution is not None else None
        return LengthEstimate(predicted_tokens=min(max(length.predicted_tokens, lo), hi),
                              predicted_tokens_bound=min(max(length.predicted_tokens_bound, lo), hi),
                              distribution=dist)

    def token_range(self, loaded, max_new: int) -> tuple[int, int]:
        """(tokens of the shortest whole answer, most tokens a whole answer can take, at most ``max_new``)."""
        lo = min(len(loaded.encode_text(self.grammar.shortest)) or 1, max_new)
        longest = self.grammar.longest
        hi = max_new if math.isinf(longest) else min(max(int(longest), 1), max_new)  # a token is at least a character
        return lo, max(lo, hi)

    def min_tokens(self, loaded, max_new: int) -> int:
        """The least answer worth starting: the shortest valid one (the shortest choice)."""
        if self.exact:
            return min(len(loaded.encode_text(c)) for c in self.choices)
        return self.token_range(loaded, max_new)[0]


class FormatLengths:
    """The lengths of recent whole answers per answer format (by its grammar)."""

    KEEP = 16      # answers remembered per format
    FORMATS = 64   # formats remembered, the least recently used forgotten first

    def __init__(self):
        self._seen: OrderedDict = OrderedDict()

    def observe(self, fmt: AnswerFormat, tokens: int) -> None:
        key = fmt.grammar.text
        self._seen.setdefault(key, deque(maxlen=self.KEEP)).append(int(tokens))
        self._seen.move_to_end(key)
        while len(self._seen) > self.FORMATS:
            self._seen.popitem(last=False)

    def typical(self, fmt: AnswerFormat) -> int | None:
        seen = self._seen.get(fmt.grammar.text)
        return round(statistics.median(seen)) if seen else None


def format_of(req) -> AnswerFormat | None:
    """The request's answer format, or None for free text. Raises InvalidRequest for a bad one."""
    given = [name for name in ("choices", "json_schema", "grammar") if getattr(req, name, None)]
    if not given:
        return None
    if len(given) > 1:
        raise InvalidAnswerFormat(f"give one answer format, not {' and '.join(given)}")
    if given[0] == "choices":
        return _choices(tuple(req.choices))
    if given[0] == "json_schema":
        return _json_schema(req.json_schema)
    return _grammar(req.grammar)


@functools.lru_cache(maxsize=64)
def _choices(choices: tuple) -> AnswerFormat:
    for c in choices:
        if not isinstance(c, str) or not c.strip():
            raise InvalidAnswerFormat(f"every choice must be a non-empty string, got {c!r}")
    if len(set(choices)) != len(choices):
        raise InvalidAnswerFormat(f"the choices repeat one: {list(choices)}")
    # The longest first: where one choice begins another ("no" / "none"), both stay reachable.
    rule = " | ".join(literal(c) for c in sorted(choices, key=len, reverse=True))
    return AnswerFormat("choices", Grammar.parse(f"root ::= {rule}\n"), choices,
                        hint="Answer with exactly one of: " + ", ".join(choices) + ".")


@functools.lru_cache(maxsize=64)
def _json_schema(schema: str) -> AnswerFormat:
    try:
        json.loads(schema)
    except json.JSONDecodeError as exc:
        raise InvalidAnswerFormat(f"json_schema is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf  # llama.cpp's own converter (pure Python)
    except Exception as exc:  # noqa: BLE001 - the package, or its library, is missing
        raise InvalidAnswerFormat(f"json_schema needs llama-cpp-python's schema converter, which does not load here "
                             f"({exc}); send the schema as a GBNF `grammar` instead") from None
    try:
        text = json_schema_to_gbnf(schema)
    except Exception as exc:  # noqa: BLE001 - the converter raises plain errors for what it cannot read
        raise InvalidAnswerFormat(f"json_schema cannot be turned into a grammar: {type(exc).__name__}: {exc}") from None
    try:
        grammar = Grammar.parse(text)
    except GrammarError as exc:
        raise InvalidAnswerFormat(f"json_schema gives a grammar this engine cannot follow ({exc})") from None
    return AnswerFormat("json_schema", grammar, hint="Answer with JSON only.")


@functools.lru_cache(maxsize=64)
def _grammar(text: str) -> AnswerFormat:
    try:
        return AnswerFormat("grammar", Grammar.parse(text))
    except GrammarError as exc:
        raise InvalidAnswerFormat(str(exc)) from None
