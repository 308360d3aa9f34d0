"""Decoding that keeps to an answer format, and closing an answer the deadline cuts.

Each step takes the most likely token whose text the grammar allows next (the end of turn only
where the answer is whole); sampling draws among the allowed ones of the most likely few. Choices
are spelt the way the tokenizer writes them ("bed" "room", never "b" "ed" "room"): the model's
scores compare the options as it knows them, and the answer's length is exactly the one planned. The
answer ends as soon as it is whole and the grammar allows nothing more. When decoding stops
first (the deadline under Kill, a cancel, the token cap), the shortest ending the grammar allows
from there is appended as text — no decoding step, so closing costs the deadline nothing — and
the result says the answer was closed early. The same code serves every backend: it reads
logits, which all of them return.
"""
from __future__ import annotations

import numpy as np

from .answer_format import AnswerFormat
from .grammar import GrammarState

TOP = 32  # candidates tried in logit order before every token is considered


def token_pieces(loaded) -> list[str]:
    """Each token id's text as it reads after other text (a leading space kept, as in a
    SentencePiece vocabulary's "▁the"); "" for special tokens and ids past the tokenizer.
    Made once per model (~0.5 s for a 49k vocabulary) and kept on it."""
    pieces = loaded.__dict__.get("_token_pieces")
    if pieces is None:
        anchor = loaded.encode_text("a")[:1]
        size = int(loaded.model.config.vocab_size)
        with loaded.tokenizer_lock:
            texts = loaded.tokenizer.batch_decode([anchor + [i] for i in range(size)], skip_special_tokens=True)
            head = loaded.tokenizer.decode(anchor, skip_special_tokens=True)
        pieces = [t[len(head):] if t.startswith(head) else "" for t in texts]
        loaded.__dict__["_token_pieces"] = pieces
    return pieces


class _Constraint:
    """What both kinds share: picking the next token among the allowed ones."""

    eos: set

    def allowed(self, token_id: int) -> bool:
        raise NotImplementedError

    def pick(self, logits, sample_free) -> int | None:
        """The token to take, or None when no token continues the answer (the vocabulary cannot
        spell what the grammar needs next: the answer is then closed where it is).
        ``sample_free(logits)`` samples from logits as an unconstrained job would; it is given only
        the allowed ones of the most likely few."""
        scores = np.asarray(logits.float().numpy() if hasattr(logits, "numpy") else logits, dtype=np.float32)
        top = np.argpartition(-scores, TOP)[:TOP]
        top = top[np.argsort(-scores[top])]
        ok = [int(t) for t in top if self.allowed(int(t))]
        if len(ok) > 1 and sample_free is not None:
            import torch

            masked = torch.full((scores.shape[0],), float("-inf"))
            masked[ok] = torch.from_numpy(scores[ok])
            return int(sample_free(masked))
        if ok:
            return ok[0]
        for t in np.argsort(-scores)[TOP:]:  # the model wants something else: its best allowed token
            if self.allowed(int(t)):
                return int(t)
        return None


class GrammarConstraint(_Constraint):
    """A JSON schema's or a grammar's answer, followed character by character. A token whose text
    is part of a character (a byte of a multi-byte one) is not taken: inside such answers the
    model writes only characters its vocabulary has whole tokens for."""

    def __init__(self, fmt: AnswerFormat, loaded):
        self.pieces = token_pieces(loaded)
        self.eos = set(loaded.eos_token_ids)
        self.state: GrammarState = fmt.grammar.start()
        self.text = ""
        # The states tried for this step's candidates: the one taken is not followed again in advance()
        self._tried: dict[int, GrammarState | None] = {}

    @property
    def done(self) -> bool:
        """The answer is whole and the grammar allows nothing more: stop without another step."""
        return self.state.complete and not self.state.can_continue

    def _after(self, token_id: int) -> GrammarState | None:
        if token_id not in self._tried:
            self._tried[token_id] = self._follow(token_id)
        return self._tried[token_id]

    def _follow(self, token_id: int) -> GrammarState | None:
        if token_id in self.eos:
            return self.state if self.state.complete else None
        piece = self.pieces[token_id] if token_id < len(self.pieces) else ""
        if not piece or "\ufffd" in piece:  # a special token, or part of a character
            return None
        return self.state.accept(piece)

    def allowed(self, token_id: int) -> bool:
        return self._after(token_id) is not None

    def advance(self, token_id: int) -> None:
        nxt = self._after(token_id)
        if nxt is None:
            raise ValueError(f"token {token_id} is not allowed by the answer format here")
        if token_id not in self.eos:
            self.text += self.pieces[token_id]
        self.state = nxt
        self._tried.clear()

    def answer(self) -> tuple[str, str]:
        """(the whole answer, the shortest ending appended to close it: "" when it was whole)."""
        closing = "" if self.state.complete else self.state.shortest_ending()
        return self.text + closing, closing


class ChoiceConstraint(_Constraint):
    """Exactly one of the choices, each spelt the way the tokenizer writes it ("bed" "room", never
    "b" "ed" "room"): the model's scores compare the options as it knows them, the answer's
    length is exactly the one planned, and any script works (a character split over byte tokens,
    as in "日本", is spelt by its tokens, not read character by character)."""

    def __init__(self, fmt: AnswerFormat, loaded):
        self.loaded = loaded
        self.eos = set(loaded.eos_token_ids)
        self.spelt = [(c, tuple(loaded.encode_text(c))) for c in fmt.choices]
        self.taken: tuple = ()

    def _open(self) -> list:
        n = len(self.taken)
        return [(c, s) for c, s in self.spelt if s[:n] == self.taken]

    @property
    def complete(self) -> bool:
        return any(s == self.taken for _, s in self.spelt)

    @property
    def done(self) -> bool:
        return self.complete and not any(len(s) > len(self.taken) for _, s in self._open())

    def allowed(self, token_id: int) -> bool:
        if token_id in self.eos:
            return self.complete
        n = len(self.taken)
        return any(len(s) > n and s[n] == token_id for _, s in self._open())

    def advance(self, token_id: int) -> None:
        if not self.allowed(token_id):
            raise ValueError(f"token {token_id} does not continue any of the choices here")
        if token_id not in self.eos:
            self.taken += (token_id,)

    def answer(self) -> tuple[str, str]:
        """(the choice, the part of it appended because decoding stopped before it was whole)."""
        whole = next((c for c, s in self.spelt if s == self.taken), None)
        if whole is not None:
            return whole, ""
        choice = min(self._open(), key=lambda cs: len(cs[1]))[0]  # the shortest the tokens so far began
        began = self.loaded.decode(list(self.taken))
        return choice, choice[len(began):] if choice.startswith(began) else choice


def constraint_for(fmt: AnswerFormat, loaded) -> GrammarConstraint | ChoiceConstraint:
    return ChoiceConstraint(fmt, loaded) if fmt.exact else GrammarConstraint(fmt, loaded)
