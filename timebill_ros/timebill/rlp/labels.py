"""Distillation labels: the length of the target model's own greedy answer to each prompt.

Same settings as serving (``timebill.engine``): the chat template of ``LoadedModel.encode_chat``
with no system prompt, greedy decoding, the model's end-of-turn ids, and the serving cap
``max_new_tokens`` (config ``default_max_new_tokens``, 256). The label N is the number of tokens
the engine would emit (end-of-turn not counted), capped at the cap: N = cap means "hit the cap".

Batching: prompts are sorted by token length and run in left-padded batches of similar length
(little padding); finished rows are dropped from the batch and its KV cache at once, so no
compute is spent on them. Labels are appended to a JSON-lines file, one prompt per line, so a
run can be interrupted and resumed; only ids and lengths are written, never prompt texts.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Iterable, Sequence


def read_labels(path: str | pathlib.Path) -> dict[str, dict]:
    """id -> record of a labels file (JSON lines); a torn last line is ignored."""
    out: dict[str, dict] = {}
    p = pathlib.Path(path)
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[str(rec["id"])] = rec
    return out


def append_records(path: pathlib.Path, records: Iterable[dict]) -> None:
    """Append JSON lines; first end a torn last line (an interrupted write) so no record is glued to it."""
    records = list(records)
    if not records:
        return
    torn = False
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, 2)
            torn = f.read(1) != b"\n"
    data = ("\n" if torn else "") + "".join(json.dumps(rec) + "\n" for rec in records)
    # One O_APPEND write per call: shards labelling in parallel never interleave within a line.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data.encode("utf-8"))
    finally:
        os.close(fd)


def save_atomically(obj, path: pathlib.Path) -> None:
    """torch.save to a temporary name, then rename: an interrupted save leaves the old file whole."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _select_rows(cache, keep) -> None:
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, keep)
        layer.values = layer.values.index_select(0, keep)


def generate_lengths(loaded, batch: Sequence[Sequence[int]], max_new_tokens: int,
                     feature_layers: Sequence[int] = (), features_out: list | None = None) -> list[tuple[int, str]]:
    """Greedy response lengths for a batch of prompt token-id lists: [(N, stop), ...].

    Left padding with an attention mask and explicit positions; rows leave the batch when they end.
    With ``feature_layers``, the prefill also yields the predictor's pooled features (``model``
    module: [mean ; last token] after layer L) for free; one tensor [len(layers), 2*hidden] per
    prompt is appended to ``features_out``.
    """
    import torch
    from transformers import DynamicCache

    from ..deferred_press import pool

    model = loaded.model
    eos = torch.tensor(sorted(set(loaded.eos_token_ids)), dtype=torch.long)
    pad = loaded.tokenizer.pad_token_id
    if pad is None:
        pad = int(eos[0])
    n = len(batch)
    width = max(len(x) for x in batch)
    ids = torch.full((n, width), int(pad), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, x in enumerate(batch):
        ids[i, width - len(x):] = torch.tensor(list(x), dtype=torch.long)
        mask[i, width - len(x):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    lengths = [0] * n
    stops = ["max_tokens"] * n
    alive = torch.arange(n)
    cache = DynamicCache()
    with torch.inference_mode():
        want = list(feature_layers)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                    logits_to_keep=1, output_hidden_states=bool(want))
        logits = out.logits[:, -1]
        if want and features_out is not None:
            if max(want) >= len(out.hidden_states) - 1:
                raise ValueError("feature layers must be below the last layer (its output is normalised)")
            for i in range(n):
                real = mask[i].bool()  # the row's own tokens, not its padding
                features_out.append(torch.stack([pool(out.hidden_states[L][i][real]) for L in want]).half())
        del out
        next_pos = positions[:, -1] + 1
        while True:
            tok = logits.argmax(-1)
            ended = torch.isin(tok, eos)
            keep = []
            for j in range(len(alive)):
                r = int(alive[j])
                if bool(ended[j]):
                    stops[r] = "eos"
                else:
                    lengths[r] += 1
                    if lengths[r] < max_new_tokens:
                        keep.append(j)
            if not keep:
                break
            if len(keep) < len(alive):
                k = torch.tensor(keep, dtype=torch.long)
                _select_rows(cache, k)
                alive, tok, mask, next_pos = alive[k], tok[k], mask[k], next_pos[k]
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=torch.long)], dim=1)
            logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                           past_key_values=cache, logits_to_keep=1).logits[:, -1]
            next_pos = next_pos + 1
    return list(zip(lengths, stops))


def make_batches(items: Sequence[tuple[str, list[int]]], batch_size: int, max_batch_tokens: int = 0):
    """Length-sorted batches of (id, ids); ``max_batch_tokens`` caps batch_size * longest prompt."""
    order = sorted(items, key=lambda it: len(it[1]))
    batches, cur = [], []
    for it in order:
        longest = max([len(c[1]) for c in cur] + [len(it[1])])
        if cur and (len(cur) >= batch_size or (max_batch_tokens and longest * (len(cur) + 1) > max_batch_tokens)):
            batches.append(cur)
            cur = []
        cur.append(it)
    if cur:
        batches.append(cur)
    return batches


def label_prompts(loaded, prompts: Iterable, out_path: str | pathlib.Path, max_new_tokens: int,
                  max_prompt_tokens: int, batch_size: int = 16, max_batch_tokens: int = 4096,
                  limit: int | None = None, chunk: int = 256, progress: bool = True, say=print,
                  feature_layers: Sequence[int] = (), feature_path: str | pathlib.Path | None = None,
                  shard: int = 0, num_shards: int = 1) -> dict:
    """Label ``prompts`` (objects with .id and .text) into ``out_path``; skip ids already there.

    Prompts whose chat-encoded length exceeds ``max_prompt_tokens`` are recorded as skipped
    (``"skipped": "too_long"``) so a resumed run does not tokenize them again.
    """
    from tqdm import tqdm

    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_labels(out_path)
    todo = []
    skipped_now = []
    for i, p in enumerate(prompts):
        if p.id in done or (num_shards > 1 and i % num_shards != shard):
            continue
        ids = loaded.encode_chat(p.text)
        if len(ids) > max_prompt_tokens:
            skipped_now.append({"id": p.id, "prompt_tokens": len(ids), "skipped": "too_long"})
            continue
        todo.append((p.id, ids))
        if limit is not None and len(todo) >= limit:
            break
    append_records(out_path, skipped_now)
    say(f"{len(done)} already labelled, {len(skipped_now)} newly skipped (> {max_prompt_tokens} tokens), "
        f"{len(todo)} to label (batch size {batch_size}, chunks of {chunk} prompts sorted by length)")
    t0 = time.monotonic()
    n_tok = 0
    bar = tqdm(total=len(todo), unit="prompt", disable=not progress, smoothing=0.05)
    # Chunks in file order, each sorted by length into batches: an interrupted run leaves an
    # unbiased sample of prompts labelled, not only the shortest ones.
    import torch

    feats = {"layers": list(feature_layers), "feats": {}}
    if feature_path:
        feature_path = pathlib.Path(feature_path)
        feature_path.parent.mkdir(parents=True, exist_ok=True)
        if feature_path.is_file():
            old_feats = torch.load(feature_path, weights_only=True)
            if list(old_feats["layers"]) == list(feature_layers):
                feats = old_feats
    for c0 in range(0, len(todo), chunk):
        for b in make_batches(todo[c0:c0 + chunk], batch_size, max_batch_tokens):
            fl: list = []
            res = generate_lengths(loaded, [x[1] for x in b], max_new_tokens, feature_layers if feature_path else (), fl)
            if feature_path:
                for (pid, _), f in zip(b, fl):
                    feats["feats"][pid] = f
            append_records(out_path, ({"id": pid, "prompt_tokens": len(ids), "length": n, "stop": stop}
                                      for (pid, ids), (n, stop) in zip(b, res)))
            n_tok += sum(n for n, _ in res)
            bar.update(len(b))
            bar.set_postfix(tok_s=f"{n_tok / max(time.monotonic() - t0, 1e-9):.1f}")
        if feature_path:  # after each chunk
            save_atomically(feats, feature_path)
    bar.close()
    dt = time.monotonic() - t0
    return {"labelled": len(todo), "tokens": n_tok, "seconds": dt, "tokens_per_s": n_tok / dt if dt else 0.0}


def open_labelling(out_path, feature_path, feature_layers, max_input_tokens: int):
    """What a resumable labelling run starts from: (labels path, features path, the labels already
    there, the features already there when they were pooled the same way, else none)."""
    import torch

    out_path, feature_path = pathlib.Path(out_path), pathlib.Path(feature_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    feature_path.parent.mkdir(parents=True, exist_ok=True)
    feats = {"layers": list(feature_layers), "max_input_tokens": max_input_tokens, "feats": {}}
    if feature_path.is_file():
        old = torch.load(feature_path, weights_only=True)
        if list(old["layers"]) == list(feature_layers) and old.get("max_input_tokens", 512) == max_input_tokens:
            feats = old
    return out_path, feature_path, read_labels(out_path), feats


def label_served(engine, prompts, out_path: str | pathlib.Path, max_new_tokens: int,
                 feature_layers: Sequence[int], feature_path: str | pathlib.Path, max_input_tokens: int = 512,
                 max_prompt_tokens: int = 2048, progress: bool = True, say=print) -> dict:
    """Label ``prompts`` (``data.Prompt``: id, text, system, source) one at a time on the serving
    engine, as a goal is served: its backend (llama.cpp-decoded by default), no eviction, greedy,
    the prompt's system prompt, cap ``max_new_tokens``. The predictor's features (``layer_features``
    at each of ``feature_layers``) are computed from the same token ids and kept in ``feature_path``.
    A prompt longer than ``max_prompt_tokens`` (or whose answer would not fit the model's context) is
    recorded as skipped. Resumable: ids already in ``out_path`` are skipped; features are saved every
    16 prompts."""
    import torch
    from tqdm import tqdm

    from ..request import InvalidRequest, Request
    from .model import layer_features

    out_path, feature_path, done, feats = open_labelling(out_path, feature_path, feature_layers, max_input_tokens)
    todo = [p for p in prompts if p.id not in done or ("skipped" not in done[p.id] and p.id not in feats["feats"])]
    say(f"{len(done)} already labelled, {len(todo)} to label one at a time on the {type(engine.backend).__name__} "
        f"(cap {max_new_tokens} tokens)")

    t0, n_tok = time.monotonic(), 0
    bar = tqdm(todo, unit="prompt", disable=not progress, smoothing=0.05)
    for i, p in enumerate(bar):
        req = Request(p.text, budget=3600.0, system_prompt=p.system, max_new_tokens=max_new_tokens, policy="skip_next",
                      fixed_eviction_ratio=0.0)
        try:
            ids = engine.estimator.encode(req)  # checked as a goal is: the prompt and its answer fit the context
        except InvalidRequest:
            ids = None
        if ids is None or len(ids) > max_prompt_tokens:
            append_records(out_path, [{"id": p.id, "source": p.source, "skipped": "too_long"}])
            continue
        f = layer_features(engine.loaded.model, ids, feature_layers, max_input_tokens)
        feats["feats"][p.id] = torch.stack([f[L] for L in feature_layers]).half()
        if p.id not in done:
            r = engine.generate(req, prompt_ids=ids)
            if r.stop_reason not in ("eos", "max_tokens", "loop"):
                raise RuntimeError(f"labelling {p.id} stopped with {r.stop_reason}: {r.message}")
            append_records(out_path, [{"id": p.id, "source": p.source, "prompt_tokens": len(ids),
                                       "length": r.generated_tokens, "stop": r.stop_reason,
                                       "cap": max_new_tokens, "seconds": round(r.total_time, 3)}])
            n_tok += r.generated_tokens
        bar.set_postfix(tok_s=f"{n_tok / max(time.monotonic() - t0, 1e-9):.1f}")
        if i % 16 == 15:
            save_atomically(feats, feature_path)
    save_atomically(feats, feature_path)
    dt = time.monotonic() - t0
    return {"labelled": len(todo), "tokens": n_tok, "seconds": round(dt, 1), "tokens_per_s": round(n_tok / dt, 1) if dt else 0.0}


def measure_batching(loaded, prompts, max_new_tokens: int, max_prompt_tokens: int,
                     batch_sizes=(1, 8, 16, 32), n_prompts: int = 32, n_single: int = 4, say=print) -> list[dict]:
    """Generated tokens per second at each batch size on the same length-sorted prompts.

    Batch size 1 runs only the first ``n_single`` prompts (it is slow); the lengths it gives are
    compared with the batched run's for those prompts (padding may flip a greedy near-tie).
    """
    items = []
    for p in prompts:
        ids = loaded.encode_chat(p.text)
        if len(ids) <= max_prompt_tokens:
            items.append((p.id, ids))
        if len(items) >= n_prompts:
            break
    rows, ref = [], {}
    for bs in batch_sizes:
        sub = items[:n_single] if bs == 1 else items
        t0 = time.monotonic()
        got = {}
        for b in make_batches(sub, bs, 0):
            for (pid, _), (n, _s) in zip(b, generate_lengths(loaded, [x[1] for x in b], max_new_tokens)):
                got[pid] = n
        dt = time.monotonic() - t0
        toks = sum(got.values())
        if bs == 1:
            ref = got
        agree = sum(got[k] == v for k, v in ref.items()) if ref and bs != 1 else None
        row = {"batch_size": bs, "prompts": len(sub), "tokens": toks, "seconds": round(dt, 2),
               "tokens_per_s": round(toks / dt, 1), "same_length_as_bs1": f"{agree}/{len(ref)}" if agree is not None else "-"}
        say(json.dumps(row))
        rows.append(row)
    return rows


def measure_steps(loaded, prompts, batch_sizes=(1, 16, 32, 64), min_tokens: int = 80, max_tokens: int = 160,
                  steps: int = 12, say=print) -> list[dict]:
    """Decode-step throughput with a full batch: prefill a batch of similar prompts, then time
    ``steps`` decoding steps (median after 2 warm-up steps). Generated tokens/s = batch / step."""
    import statistics

    import torch
    from transformers import DynamicCache

    pool = []
    for p in prompts:
        ids = loaded.encode_chat(p.text)
        if min_tokens <= len(ids) <= max_tokens:
            pool.append(ids)
        if len(pool) >= max(batch_sizes):
            break
    pool.sort(key=len)
    rows = []
    for bs in batch_sizes:
        batch = pool[:bs]
        n, w = len(batch), max(map(len, batch))
        x = torch.zeros((n, w), dtype=torch.long)
        m = torch.zeros((n, w), dtype=torch.long)
        for i, b in enumerate(batch):
            x[i, w - len(b):] = torch.tensor(b)
            m[i, w - len(b):] = 1
        pos = (m.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        with torch.inference_mode():
            t0 = time.perf_counter()
            lg = loaded.model(input_ids=x, attention_mask=m, position_ids=pos, past_key_values=cache, logits_to_keep=1).logits[:, -1]
            t_prefill = time.perf_counter() - t0
            nxt, ts = pos[:, -1] + 1, []
            for _ in range(steps):
                tok = lg.argmax(-1)
                m = torch.cat([m, torch.ones((n, 1), dtype=torch.long)], 1)
                t0 = time.perf_counter()
                lg = loaded.model(input_ids=tok[:, None], attention_mask=m, position_ids=nxt[:, None],
                                  past_key_values=cache, logits_to_keep=1).logits[:, -1]
                ts.append(time.perf_counter() - t0)
                nxt = nxt + 1
        st = statistics.median(ts[2:])
        row = {"batch_size": n, "prompt_width": w, "prefill_s": round(t_prefill, 3), "median_step_s": round(st, 4),
               "tokens_per_s_full_batch": round(n / st, 1)}
        say(json.dumps(row))
        rows.append(row)
    return rows
