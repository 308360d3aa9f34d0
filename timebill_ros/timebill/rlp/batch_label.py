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

from ..backends.llamacpp import LlamaCppModel
from ..repetition import LoopGuard


@dataclass
class _Slot:
    key: str
    position: int      # next position of the sequence
    last: int          # last sampled token
    guard: LoopGuard | None = None
    generated: int = 0

    def take(self, token: int) -> bool:
        """Record an answer token; True when it closes a loop (served answers end there too)."""
        self.last = token
        self.generated += 1
        return self.guard is not None and self.guard.push(token)


class BatchLabeller:
    """Greedy answer lengths of many prompts, ``slots`` sequences at a time, on a GGUF model."""

    def __init__(self, gguf, eos_ids, slots: int = 8, max_prompt_tokens: int = 2048, cap: int = 384, threads: int = 2,
                 loop_window: int = 0, pieces: list[str] | None = None):
        """``loop_window`` > 0 (with ``pieces``, ``timebill.constrained.token_pieces``): an answer
        caught in a loop ends there, as the serving engine ends it (``timebill.repetition``)."""
        # No extra weight buffers: batches of many tokens, which the AMX ones crash on (LlamaCppModel).
        self.llama = LlamaCppModel(gguf, n_ctx=slots * (max_prompt_tokens + cap + 1), threads=threads,
                                   extra_buffers=False, seqs=slots)
        self.slots, self.cap = int(slots), int(cap)
        self.eos = set(int(e) for e in eos_ids)
        self.loop_window, self.pieces = int(loop_window), pieces

    def close(self) -> None:
        self.llama.close()

    def lengths(self, prompts, on_done) -> None:
        """prompts: iterable of (key, ids); ``on_done(key, length, stop, seconds)`` is called as each
        answer ends (end of turn, a loop, or the cap)."""
        queue = list(prompts)[::-1]
        active: dict[int, _Slot] = {}
        started: dict[int, float] = {}

        def finish(seq: int, stop: str):
            s = active.pop(seq)
            self.llama.forget(seq)
            on_done(s.key, s.generated, stop, time.monotonic() - started.pop(seq))

        while queue or active:
            for seq in range(self.slots):
                while seq not in active and queue:
                    key, ids = queue.pop()
                    started[seq] = time.monotonic()
                    first = int(self.llama.prefill(list(ids), seq).argmax())
                    guard = LoopGuard(self.loop_window, self.pieces) if self.loop_window > 0 else None
                    active[seq] = _Slot(key, len(ids), first, guard)
                    if first in self.eos:
                        finish(seq, "eos")
                    elif active[seq].take(first):
                        finish(seq, "loop")
                    elif self.cap <= 1:
                        finish(seq, "max_tokens")
            if not active:
                continue
            order = sorted(active)
            self.llama.decode_batch([(seq, active[seq].last, active[seq].position, True) for seq in order])
            for i, seq in enumerate(order):
                s = active[seq]
                s.position += 1
                token = int(self.llama.logits(i).argmax())
                if token in self.eos:
                    finish(seq, "eos")
                elif s.take(token):
                    finish(seq, "loop")
                elif s.generated >= self.cap:
                    finish(seq, "max_tokens")


__all__ = ["BatchLabeller"]


def label_batched(loaded, prompts, out_path, max_new_tokens: int, feature_layers, feature_path,
                  slots: int = 8, threads: int = 2, max_input_tokens: int = 512, max_prompt_tokens: int = 2048,
                  loop_window: int = 0, progress: bool = True, say=print) -> dict:
    """``labels.label_served`` at batch speed: the same records (id, source, prompt_tokens, length,
    stop, cap) and the same features, the answers decoded ``slots`` at a time by ``BatchLabeller``.
    Each prompt is chat-encoded and checked as a goal is (``Estimator.encode`` rules: it and its
    answer fit the context). Resumable; features saved every 64 prompts."""
    import torch
    from tqdm import tqdm

    from ..length_control import system_prompt_of
    from ..request import InvalidRequest, Request, check_request
    from .labels import append_records, open_labelling, save_atomically
    from .model import layer_features

    out_path, feature_path, done, feats = open_labelling(out_path, feature_path, feature_layers, max_input_tokens)
    todo, by_key = [], {}
    for p in prompts:
        if p.id in done:
            continue
        req = Request(p.text, budget=3600.0, system_prompt=p.system, max_new_tokens=max_new_tokens)
        try:
            check_request(req)
            ids = loaded.encode_chat(req.prompt, system_prompt_of(req))
        except InvalidRequest:
            ids = None
        if ids is None or len(ids) > max_prompt_tokens or len(ids) + max_new_tokens > loaded.max_context:
            append_records(out_path, [{"id": p.id, "source": p.source, "skipped": "too_long"}])
            continue
        todo.append((p.id, ids))
        by_key[p.id] = p
    say(f"{len(done)} already labelled, {len(todo)} to label {slots} at a time on llama.cpp (cap {max_new_tokens} tokens)")
    from ..constrained import token_pieces

    labeller = BatchLabeller(loaded.gguf, loaded.eos_token_ids, slots=slots, cap=max_new_tokens,
                             max_prompt_tokens=max(len(ids) for _, ids in todo) if todo else 16, threads=threads,
                             loop_window=loop_window, pieces=token_pieces(loaded) if loop_window > 0 else None)
    bar = tqdm(total=len(todo), unit="prompt", disable=not progress, smoothing=0.05)
    t0, n_tok, n_done = time.monotonic(), 0, [0]
    ids_of = dict(todo)

    def on_done(key, length, stop, seconds):
        nonlocal n_tok
        p = by_key[key]
        f = layer_features(loaded.model, ids_of[key], feature_layers, max_input_tokens)
        feats["feats"][key] = torch.stack([f[L] for L in feature_layers]).half()
        append_records(out_path, [{"id": key, "source": p.source, "prompt_tokens": len(ids_of[key]), "length": length,
                                   "stop": stop, "cap": max_new_tokens, "seconds": round(seconds, 3), "slots": slots}])
        n_tok += length
        n_done[0] += 1
        bar.update(1)
        bar.set_postfix(tok_s=f"{n_tok / max(time.monotonic() - t0, 1e-9):.1f}")
        if n_done[0] % 64 == 0:
            save_atomically(feats, feature_path)

    try:
        labeller.lengths(todo, on_done)
    finally:
        save_atomically(feats, feature_path)
        labeller.close()
        bar.close()
    dt = time.monotonic() - t0
    return {"labelled": n_done[0], "tokens": n_tok, "seconds": round(dt, 1),
            "tokens_per_s": round(n_tok / dt, 1) if dt else 0.0}
