"""A job's answer as it is decoded: how each token is picked (sampled, or kept to an answer
format) and how the answer's text streams to the caller token by token."""
from __future__ import annotations

import time
from typing import Callable

from .constrained import constraint_for, token_pieces
from .repetition import LoopGuard
from .request import Request


class TokenEvent:
    """One token as the stream hands it to the job's callback.

    ``text`` is the answer's text that came since the stream's text was last read: this token's
    own when a callback reads it at every token (empty mid-character). It is detokenized when
    first read, because that is most of what a token costs a callback (~0.2 ms a token here,
    against ~10 ms for the decoding step): a callback that sends tokens in batches reads it only
    when it sends (timebill_ros.goal_stream), and gets the text of the tokens between with it."""

    __slots__ = ("index", "token_id", "elapsed", "_read", "_text")

    def __init__(self, index: int, token_id: int, elapsed: float, read: Callable[[], str]):
        self.index = index          # 0-based index of this token in the answer
        self.token_id = token_id
        self.elapsed = elapsed      # seconds since the job was accepted
        self._read = read           # the stream's text since its last read
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._read()
        return self._text

    def __repr__(self) -> str:
        return f"TokenEvent(index={self.index}, token_id={self.token_id}, elapsed={self.elapsed:.3f})"


TokenCallback = Callable[[TokenEvent], None]


class TokenStream:
    """The answer so far: token ids, their times, and the text streamed to ``on_token``.

    The text is detokenized incrementally, when a callback reads it: each read decodes only the ids
    since the last whole character (``_prefix``..end), not the whole answer again, so a token costs
    the same at the thousandth as at the first. A window that starts a few ids back keeps the tokenizer's
    spacing rules (a leading space depends on the token before it)."""

    WINDOW = 4  # ids of context decoded before the new ones

    def __init__(self, loaded, accepted_at: float, on_token: TokenCallback | None, sampler: "Sampler",
                 loop_window: int = 0):
        """``loop_window`` > 0: the answer ends once its last that many tokens repeat earlier ones
        (``timebill.repetition``); answers kept to a format are not watched (their grammar ends them)."""
        self.loaded = loaded
        self.sampler = sampler
        self.loop = LoopGuard(loop_window, token_pieces(loaded)) if loop_window > 0 and sampler.constraint is None else None
        self.eos = set(loaded.eos_token_ids)
        self.accepted_at = accepted_at
        self.on_token = on_token
        self.ids: list[int] = []
        self.times: list[float] = []
        self.last = -1
        self._prefix = 0   # ids before this are streamed as whole characters
        self._read = 0     # ids up to here have had their text streamed

    def take(self, logits) -> str:
        """Pick the next token from ``logits`` and record it; the stop reason when it ends the
        answer (``eos``: end of turn; ``format``: the answer format is whole and allows no more;
        ``loop``: the answer repeats itself), else ""."""
        token = self.sampler(logits)
        if token is None:  # nothing in the vocabulary continues the format: closed where it is
            return "format"
        if self.push(token):
            return "eos"
        if self.loop is not None and self.loop.push(token):
            return "loop"
        constraint = self.sampler.constraint
        return "format" if constraint is not None and constraint.done else ""

    def push(self, token_id: int) -> bool:
        """Record a sampled token; True when it ends the answer (end of turn, not part of the text)."""
        self.times.append(time.monotonic() - self.accepted_at)
        self.last = token_id
        if token_id in self.eos:
            return True
        self.ids.append(token_id)
        if self.on_token is not None:
            self.on_token(TokenEvent(len(self.ids) - 1, token_id, self.times[-1], self._delta))
        return False

    def _delta(self) -> str:
        decode = self.loaded.decode
        start = max(self._prefix - self.WINDOW, 0)
        before = decode(self.ids[start:self._read]) if self._read > start else ""
        now = decode(self.ids[start:])
        # Hold back a trailing replacement char: the next token may complete the character.
        if now.endswith("\ufffd") or not now.startswith(before):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return now[len(before):]

    def text(self) -> tuple[str, str]:
        """(the answer, the ending appended to close it: "" unless an answer format's answer was cut).
        An answer caught in a loop keeps the span that repeated, once: the answer is what was
        streamed, so a client that joins the feedback has the result's text."""
        constraint = self.sampler.constraint
        if constraint is None:
            return self.loaded.decode(self.ids), ""
        return constraint.answer()


class Sampler:
    """How a job picks each token: sampled from the logits (``sample``), kept to the request's
    answer format when it has one (``timebill.constrained``)."""

    def __init__(self, req: Request, loaded):
        self.req = req
        self.generator = None
        if req.temperature > 0 and req.seed is not None:
            import torch

            self.generator = torch.Generator().manual_seed(int(req.seed))
        fmt = req.answer_format
        self.constraint = constraint_for(fmt, loaded) if fmt is not None else None

    def __call__(self, logits) -> int | None:
        if self.constraint is None:
            return sample(logits, self.req, self.generator)
        free = (lambda masked: sample(masked, self.req, self.generator)) if self.req.temperature > 0 else None
        token = self.constraint.pick(logits, free)
        if token is not None:
            self.constraint.advance(token)
        return token


def sample(logits, req: Request, generator) -> int:
    """Greedy at temperature 0, else top-p sampling (reproducible with the request's seed)."""
    import torch

    if req.temperature <= 0:
        # numpy's argmax: torch's spends ~0.15 ms a token on a 49k vocabulary here (a parallel reduction)
        return int(logits.numpy().argmax()) if logits.device.type == "cpu" else int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / req.temperature, dim=-1)
    if req.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < req.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
