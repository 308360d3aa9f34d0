"""Distillation labels at batch speed: many sequences decoded together in one llama.cpp context.

One at a time (``labels.label_served``), labelling runs at the decoder's single-sequence speed,
60-90 tokens/s here: 5,000 prompts would take most of a day. A decoding step of llama.cpp costs
nearly the same for one sequence as for a few (the step is bound by per-layer overhead on this
CPU), so ``slots`` sequences share each step: when one ends, its cells are dropped and the next
prompt is prefilled into its slot (continuous batching).

The label is what serving does with the prompt: the same chat-encoded ids, greedy, the model's
end-of-turn ids, the cap. Serving prefills in torch and carries the cache into llama.cpp;
here llama.cpp prefills itself, so a near-tie between two tokens can go the other way
(``--verify`` of ``timebill rlp label`` compares with the engine on a sample).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..backends.llamacpp import _silence_llama_cpp, import_llama_cpp


@dataclass
class _Slot:
    key: str
    position: int      # next position of the sequence
    last: int          # last sampled token
    generated: int = 0


class BatchLabeller:
    """Greedy answer lengths of many prompts, ``slots`` sequences at a time, on a GGUF model."""

    def __init__(self, gguf, eos_ids, slots: int = 8, max_prompt_tokens: int = 2048, cap: int = 384,
                 threads: int = 2, chunk: int = 512):
        L = import_llama_cpp()
        self.L = L
        _silence_llama_cpp(L)
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.use_extra_bufts = False  # batches of many tokens: see LlamaCppModel (AMX crashes on them)
        self.model = L.llama_model_load_from_file(str(gguf).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp cannot load {gguf}")
        p = L.llama_context_default_params()
        p.n_ctx = int(slots * (max_prompt_tokens + cap + 1))
        p.n_batch = p.n_ubatch = int(chunk)
        p.n_seq_max = int(slots)
        p.n_threads = p.n_threads_batch = int(threads)
        p.kv_unified = True  # the slots share one cache of n_ctx cells: long and short prompts mix
        self.ctx = L.llama_init_from_model(self.model, p)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp cannot create a context of {p.n_ctx} cells for {slots} sequences")
        self.mem = L.llama_get_memory(self.ctx)
        self.n_vocab = int(L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model)))
        self.batch = L.llama_batch_init(int(chunk), 0, int(slots))
        self.slots, self.chunk, self.cap = int(slots), int(chunk), int(cap)
        self.eos = set(int(e) for e in eos_ids)

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.L.llama_model_free(self.model)
            self.ctx = None

    def _run(self, items) -> None:
        """items: (seq, token, position, wants_logits)."""
        b = self.batch
        for i, (seq, tok, pos, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i] = int(tok), int(pos), 1
            b.seq_id[i][0] = int(seq)
            b.logits[i] = bool(logits)
        b.n_tokens = len(items)
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc} ({len(items)} tokens)")

    def _argmax(self, i: int) -> int:
        ptr = self.L.llama_get_logits_ith(self.ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))

    def _prefill(self, seq: int, ids) -> int:
        """Prefill ``ids`` into sequence ``seq``; the first answer token."""
        for s in range(0, len(ids), self.chunk):
            part = ids[s:s + self.chunk]
            self._run([(seq, t, s + j, s + j == len(ids) - 1) for j, t in enumerate(part)])
        return self._argmax(len(ids) - 1 - (len(ids) - 1) // self.chunk * self.chunk)

    def lengths(self, prompts, on_done) -> None:
        """prompts: iterable of (key, ids); ``on_done(key, length, stop, seconds)`` is called as each
        answer ends (end of turn, or the cap)."""
        queue = list(prompts)[::-1]
        active: dict[int, _Slot] = {}
        started: dict[int, float] = {}

        def finish(seq: int, stop: str):
            s = active.pop(seq)
            self.L.llama_memory_seq_rm(self.mem, seq, -1, -1)
            on_done(s.key, s.generated, stop, time.monotonic() - started.pop(seq))

        while queue or active:
            for seq in range(self.slots):
                while seq not in active and queue:
                    key, ids = queue.pop()
                    started[seq] = time.monotonic()
                    first = self._prefill(seq, list(ids))
                    active[seq] = _Slot(key, len(ids), first)
                    if first in self.eos:
                        finish(seq, "eos")
                    else:
                        active[seq].generated = 1
                        if self.cap <= 1:
                            finish(seq, "max_tokens")
            if not active:
                continue
            order = sorted(active)
            self._run([(seq, active[seq].last, active[seq].position, True) for seq in order])
            for i, seq in enumerate(order):
                s = active[seq]
                s.position += 1
                s.last = self._argmax(i)
                if s.last in self.eos:
                    finish(seq, "eos")
                else:
                    s.generated += 1
                    if s.generated >= self.cap:
                        finish(seq, "max_tokens")


__all__ = ["BatchLabeller"]
