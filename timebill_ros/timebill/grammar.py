"""GBNF grammars (llama.cpp's format): follow an answer through one character by character, and
say the shortest way to finish it from wherever it is (the text format itself: ``timebill.gbnf``).

Why our own and not llama.cpp's grammar sampler: the deadline needs what that sampler cannot
tell — the shortest valid ending from the current point (to close an answer the deadline cuts),
the shortest and longest whole answers (the length bounds the plan uses) — and the torch backend
needs the same constraint. One recognizer serves both backends; it follows llama.cpp's design
(a set of stacks of positions in the rules, advanced one character at a time), so a grammar
means the same here as in llama.cpp. The grammar starts at ``root``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .gbnf import ROOT, CharClass, GrammarError, Parser  # noqa: F401 - GrammarError: what Grammar.parse raises


@dataclass
class Grammar:
    """A parsed grammar: ``rules[i]`` is a tuple of alternatives, each a tuple of elements."""

    rules: list
    names: dict
    text: str = ""
    shortest_of: list = field(default_factory=list)   # per rule: its shortest whole string
    longest_of: list = field(default_factory=list)    # per rule: its longest in characters (math.inf: unbounded)

    @classmethod
    def parse(cls, text: str) -> "Grammar":
        if not isinstance(text, str) or not text.strip():
            raise GrammarError("the grammar is empty: give GBNF rules starting with `root ::= ...`")
        p = Parser(text)
        p.parse()
        g = cls([tuple(tuple(alt) for alt in alts) for alts in p.rules], dict(p.names), text)
        g._check_left_recursion()
        g.shortest_of = g._shortest()
        g.longest_of = g._longest()
        return g

    @property
    def root(self) -> int:
        return self.names[ROOT]

    def name_of(self, index: int) -> str:
        return next((n for n, i in self.names.items() if i == index), f"<group {index}>")

    def _nullable(self) -> list:
        nullable = [False] * len(self.rules)
        changed = True
        while changed:
            changed = False
            for i, alts in enumerate(self.rules):
                if not nullable[i] and any(all(isinstance(e, int) and nullable[e] for e in alt) for alt in alts):
                    nullable[i] = changed = True
        return nullable

    def _check_left_recursion(self) -> None:
        nullable = self._nullable()
        first: list[set] = [set() for _ in self.rules]  # rules reachable at a rule's start
        for i, alts in enumerate(self.rules):
            for alt in alts:
                for e in alt:
                    if not isinstance(e, int):
                        break
                    first[i].add(e)
                    if not nullable[e]:
                        break
        for start in range(len(self.rules)):
            seen, todo = set(), list(first[start])
            while todo:
                r = todo.pop()
                if r == start:
                    raise GrammarError(f"grammar: rule `{self.name_of(start)}` is left-recursive (it can start with "
                                       f"itself); rewrite it with a repetition, e.g. `x ::= y (\",\" y)*`")
                if r not in seen:
                    seen.add(r)
                    todo.extend(first[r])

    def _shortest(self) -> list:
        best: list = [None] * len(self.rules)
        changed = True
        while changed:
            changed = False
            for i, alts in enumerate(self.rules):
                for alt in alts:
                    parts = [e.example() if isinstance(e, CharClass) else best[e] for e in alt]
                    if any(p is None for p in parts):
                        continue
                    s = "".join(parts)
                    if best[i] is None or len(s) < len(best[i]):
                        best[i], changed = s, True
        for name, i in self.names.items():
            if best[i] is None:
                raise GrammarError(f"grammar: rule `{name}` never ends (every alternative refers back to it); "
                                   f"give it an alternative that does")
        return best

    def _longest(self) -> list:
        longest: list = [None] * len(self.rules)

        def visit(i: int, path: set) -> float:
            if longest[i] is not None:
                return longest[i]
            if i in path:
                return math.inf
            path.add(i)
            value = max((sum(1 if isinstance(e, CharClass) else visit(e, path) for e in alt)
                         for alt in self.rules[i]), default=0)
            path.discard(i)
            longest[i] = value
            return value

        for i in range(len(self.rules)):
            visit(i, set())
        return longest

    def start(self) -> "GrammarState":
        return GrammarState(self, _expand(self, ((self.root, a, 0) for a in range(len(self.rules[self.root]))), ()))

    @property
    def shortest(self) -> str:
        return self.shortest_of[self.root]

    @property
    def longest(self) -> float:
        """The longest whole answer in characters; math.inf when the grammar repeats without end."""
        return self.longest_of[self.root]


def _expand(g: Grammar, frames, below: tuple) -> frozenset:
    """All stacks reachable from pushing each of ``frames`` on ``below`` whose top is a character
    to match (or that are empty: the answer may end there)."""
    out: set = set()
    todo = [below + (f,) for f in frames]
    while todo:
        stack = todo.pop()
        if not stack:
            out.add(stack)
            continue
        rule, alt, i = stack[-1]
        seq = g.rules[rule][alt]
        if i == len(seq):
            todo.append(stack[:-1])
            continue
        e = seq[i]
        if isinstance(e, CharClass):
            out.add(stack)
            continue
        rest = stack[:-1] + ((rule, alt, i + 1),)
        todo.extend(rest + ((e, a, 0),) for a in range(len(g.rules[e])))
    return frozenset(out)


@dataclass(frozen=True)
class GrammarState:
    """Where an answer stands in a grammar: every way its text so far can be read."""

    grammar: Grammar
    stacks: frozenset

    def accept(self, text: str) -> "GrammarState | None":
        """The state after ``text``, or None when the grammar does not allow it here."""
        stacks = self.stacks
        for ch in text:
            nxt: set = set()
            for stack in stacks:
                if not stack:
                    continue
                rule, alt, i = stack[-1]
                if self.grammar.rules[rule][alt][i].matches(ch):
                    nxt.update(_expand(self.grammar, [(rule, alt, i + 1)], stack[:-1]))
            if not nxt:
                return None
            stacks = frozenset(nxt)
        return GrammarState(self.grammar, stacks)

    @property
    def complete(self) -> bool:
        """The text so far is a whole answer."""
        return () in self.stacks

    @property
    def can_continue(self) -> bool:
        return any(self.stacks)

    def shortest_ending(self) -> str:
        """The shortest text that makes the answer whole from here ("" when it already is)."""
        g = self.grammar
        best = None
        for stack in self.stacks:
            parts = []
            for rule, alt, i in reversed(stack):
                parts.extend(e.example() if isinstance(e, CharClass) else g.shortest_of[e]
                             for e in g.rules[rule][alt][i:])
            s = "".join(parts)
            if best is None or len(s) < len(best):
                best = s
        return best or ""
