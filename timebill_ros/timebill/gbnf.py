"""GBNF, llama.cpp's grammar format, as text: reading it into rules (``Parser``) and writing a
string as one of its literals (``literal``). What the rules mean while an answer is decoded is
``timebill.grammar``'s.

Supported: rules ``name ::= ...``, literals ``"..."`` (escapes ``\\n \\r \\t \\\\ \\" \\xHH
\\uHHHH``), character classes ``[a-z]`` / ``[^"\\\\]``, ``.``, grouping, ``|``, ``* + ?``, ``{m}``
``{m,}`` ``{m,n}``, ``#`` comments. Repetitions are rewritten into rules, as llama.cpp does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "root"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "'": "'", "-": "-", "/": "/",
            "^": "^", "b": "\b", "f": "\f"}
# Characters a shortest ending prefers where a class allows several: readable ones first.
_PREFERRED = " a0\"'.,-_A1"


class GrammarError(ValueError):
    """A malformed grammar; the message names the place and the problem."""


@dataclass(frozen=True)
class CharClass:
    ranges: tuple  # ((lo, hi), ...) code points, inclusive
    negated: bool = False

    def matches(self, ch: str) -> bool:
        o = ord(ch)
        return any(lo <= o <= hi for lo, hi in self.ranges) != self.negated

    def example(self) -> str:
        """One character the class allows, a readable one where it can."""
        for ch in _PREFERRED:
            if self.matches(ch):
                return ch
        if not self.negated:
            return chr(self.ranges[0][0])
        return next(chr(o) for o in range(32, 0x110000) if self.matches(chr(o)))


# An element is a CharClass or an int (the index of the rule it refers to).
# A rule is a tuple of alternatives, each a tuple of elements.


class Parser:
    def __init__(self, text: str):
        self.text, self.pos = text, 0
        self.names: dict[str, int] = {}
        self.rules: list = []        # index -> list of alternatives (None until defined)
        self.defined: set[int] = set()
        self.refs: dict[int, int] = {}  # rule index -> position of a first reference (for errors)

    # --- lexing -------------------------------------------------------------------------------
    def where(self, pos: int | None = None) -> str:
        pos = self.pos if pos is None else pos
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return f"line {line}, column {col}"

    def fail(self, what: str, pos: int | None = None):
        raise GrammarError(f"grammar {self.where(pos)}: {what}")

    def skip(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            elif ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            else:
                return

    def at_rule_start(self) -> bool:
        m = _NAME.match(self.text, self.pos)
        if not m:
            return False
        rest = self.text[m.end():]
        return rest.lstrip(" \t").startswith("::=")

    def rule_index(self, name: str) -> int:
        if name not in self.names:
            self.names[name] = len(self.rules)
            self.rules.append(None)
        return self.names[name]

    def new_rule(self, alternatives: list) -> int:
        self.rules.append(alternatives)
        index = len(self.rules) - 1
        self.defined.add(index)
        return index

    # --- parsing ------------------------------------------------------------------------------
    def parse(self) -> None:
        self.skip(newlines=True)
        while self.pos < len(self.text):
            m = _NAME.match(self.text, self.pos)
            if not m or not self.at_rule_start():
                self.fail("expected a rule: `name ::= ...`")
            name, self.pos = m.group(), m.end()
            self.skip(newlines=False)
            self.pos += 3  # ::=
            index = self.rule_index(name)
            if index in self.defined:
                self.fail(f"rule `{name}` is defined twice", m.start())
            self.rules[index] = self.alternatives(nested=False)
            self.defined.add(index)
            self.skip(newlines=True)
        if ROOT not in self.names or self.names[ROOT] not in self.defined:
            raise GrammarError("the grammar has no `root` rule: the answer starts at `root ::= ...`")
        for name, index in self.names.items():
            if index not in self.defined:
                self.fail(f"rule `{name}` is used but never defined", self.refs.get(index))

    def alternatives(self, nested: bool) -> list:
        alts = [self.sequence(nested)]
        while self.pos < len(self.text) and self.text[self.pos] == "|":
            self.pos += 1
            alts.append(self.sequence(nested))
        return alts

    def sequence(self, nested: bool) -> tuple:
        items: list = []
        last = None  # where the last element begins in items (what a repetition repeats)
        while True:
            self.skip(newlines=nested)
            if not nested and self.pos < len(self.text) and self.text[self.pos] == "\n":
                # a rule goes on over a line break unless the next line starts a rule
                save = self.pos
                self.skip(newlines=True)
                if self.pos >= len(self.text) or self.at_rule_start():
                    self.pos = save
                    return tuple(items)
            if self.pos >= len(self.text) or self.text[self.pos] in "|)\n":
                return tuple(items)
            ch = self.text[self.pos]
            if ch in "*+?{":
                if last is None:
                    self.fail(f"`{ch}` repeats nothing")
                body = tuple(items[last:])
                del items[last:]
                items.extend(self.repeat(body))
                last = None
                continue
            last = len(items)
            items.extend(self.element())

    def element(self) -> list:
        """The next element, as a list of elements (a literal is one per character)."""
        ch = self.text[self.pos]
        if ch == '"':
            return self.literal()
        if ch == "[":
            return [self.char_class()]
        if ch == ".":
            self.pos += 1
            return [CharClass(((0, 0x10FFFF),))]
        if ch == "(":
            start = self.pos
            self.pos += 1
            alts = self.alternatives(nested=True)
            self.skip(newlines=True)
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                self.fail("`(` is never closed", start)
            self.pos += 1
            return [self.new_rule(alts)]
        m = _NAME.match(self.text, self.pos)
        if m:
            if self.at_rule_start():
                self.fail(f"`{m.group()} ::=` starts a new rule here: end the previous rule's line first")
            self.pos = m.end()
            index = self.rule_index(m.group())
            self.refs.setdefault(index, m.start())
            return [index]
        self.fail(f"unexpected `{ch}`")

    def char(self, end: str) -> int:
        if self.pos >= len(self.text):
            self.fail(f"unterminated: expected `{end}`")
        ch = self.text[self.pos]
        if ch == "\n" and end == '"':
            self.fail("a literal cannot span lines (write \\n)")
        if ch != "\\":
            self.pos += 1
            return ord(ch)
        kind = self.text[self.pos + 1: self.pos + 2]
        width = {"x": 2, "u": 4, "U": 8}.get(kind)
        if width:
            digits = self.text[self.pos + 2: self.pos + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                self.fail(f"`\\{kind}` needs {width} hex digits")
            self.pos += 2 + width
            return int(digits, 16)
        if kind not in _ESCAPES:
            self.fail(f"unknown escape `\\{kind}`")
        self.pos += 2
        return ord(_ESCAPES[kind])

    def literal(self) -> list:
        start = self.pos
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text):
                self.fail("the literal is never closed", start)
            if self.text[self.pos] == '"':
                self.pos += 1
                return [CharClass(((o, o),)) for o in out]
            out.append(self.char('"'))

    def char_class(self) -> CharClass:
        start = self.pos
        self.pos += 1
        negated = self.text.startswith("^", self.pos)
        self.pos += negated
        ranges = []
        while True:
            if self.pos >= len(self.text):
                self.fail("`[` is never closed", start)
            if self.text[self.pos] == "]":
                self.pos += 1
                break
            lo = self.char("]")
            hi = lo
            if self.text.startswith("-", self.pos) and not self.text.startswith("-]", self.pos):
                self.pos += 1
                hi = self.char("]")
                if hi < lo:
                    self.fail(f"the range {chr(lo)!r}-{chr(hi)!r} is backwards")
            ranges.append((lo, hi))
        if not ranges:
            self.fail("an empty character class matches nothing", start)
        return CharClass(tuple(ranges), negated)

    def repeat(self, body: tuple) -> list:
        """``body`` under the repetition that follows, rewritten into rules as llama.cpp does."""
        ch = self.text[self.pos]
        self.pos += 1
        if ch == "{":
            m = re.match(r"\s*(\d*)\s*(,?)\s*(\d*)\s*}", self.text[self.pos:])
            if not m or (not m.group(1) and not m.group(3)):
                self.fail("expected `{m}`, `{m,}`, `{,n}` or `{m,n}`")
            self.pos += m.end()
            lo = int(m.group(1) or 0)
            hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
            if hi is not None and hi < lo:
                self.fail(f"the repetition {{{lo},{hi}}} is backwards")
        else:
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        out: list = []
        for _ in range(lo):
            out.extend(body)
        if hi is None:
            star = len(self.rules)
            self.rules.append(None)
            self.rules[star] = [body + (star,), ()]
            self.defined.add(star)
            out.append(star)
        elif hi > lo:
            tail: tuple = ()
            for _ in range(hi - lo):  # x{0,3} = (x (x (x)?)?)?
                tail = (self.new_rule([body + tail, ()]),)
            out.extend(tail)
        return out


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
