"""The backbone features the length head reads: cached per prompt id, taken from the labelling
prefill where it kept them, computed by ``model.layer_features`` otherwise; and what computing
them costs inside a budget."""
from __future__ import annotations

import pathlib
import statistics
import time

CANDIDATE_LAYERS = (2, 4, 6, 8, 12, 16)  # the backbone depths `rlp train` compares by default
MIX_LAYERS = (1, 2, 4)  # the depths the mix's labelling keeps features for (the predictor's time grows with L)


def label_feature_path(work: pathlib.Path, name: str, shard: int = 0) -> pathlib.Path:
    """Features the labelling prefill produced as a by-product (same definition as ``model.layer_features``)."""
    return work / f"label_features_{name}.shard{shard}.pt"


def features_for(loaded, recs: list[dict], layers: list[int], max_input_tokens: int, work: pathlib.Path,
                 progress: bool = True) -> dict:
    """{L: tensor[n, 2*hidden]} for the labelled records, cached in ``work`` by prompt id."""
    import torch
    from tqdm import tqdm

    from .model import layer_features
    from .sources import prompts_by_id

    work.mkdir(parents=True, exist_ok=True)
    cache_path = work / f"features_{loaded.name}_in{max_input_tokens}.pt"
    cache = torch.load(cache_path, weights_only=True) if cache_path.is_file() else {"layers": layers, "feats": {}}
    if sorted(cache["layers"]) != sorted(layers):
        if not set(layers) <= set(cache["layers"]):
            cache = {"layers": layers, "feats": {}}
    missing = [r["id"] for r in recs if r["id"] not in cache["feats"]]
    for side in sorted(work.glob(f"label_features_{loaded.name}.*.pt")):
        if not missing:
            break
        lf = torch.load(side, weights_only=True)
        if set(cache["layers"]) <= set(lf["layers"]):
            sel = [list(lf["layers"]).index(L) for L in cache["layers"]]
            for pid in missing:
                if pid in lf["feats"]:
                    cache["feats"][pid] = lf["feats"][pid][sel]
            print(f"features: {len(missing) - sum(p not in cache['feats'] for p in missing)} taken from the labelling prefill ({side.name})")
        missing = [r["id"] for r in recs if r["id"] not in cache["feats"]]
    if missing:
        prompts = prompts_by_id(missing, loaded.tokenizer)
        t_last = time.monotonic()
        for pid in tqdm(missing, desc="features", unit="prompt", disable=not progress):
            p = prompts[pid]
            f = layer_features(loaded.model, loaded.encode_chat(p.text, p.system), cache["layers"], max_input_tokens)
            cache["feats"][pid] = torch.stack([f[L] for L in cache["layers"]]).half()
            if time.monotonic() - t_last > 120:
                torch.save(cache, cache_path)
                t_last = time.monotonic()
        torch.save(cache, cache_path)
    pos = {L: i for i, L in enumerate(cache["layers"])}
    stacked = torch.stack([cache["feats"][r["id"]] for r in recs]).float()
    return {L: stacked[:, pos[L]] for L in layers}


def predictor_latency(loaded, layers: int, n_tokens: int, repeats: int = 5) -> float:
    from .model import layer_features

    vocab = int(loaded.model.config.vocab_size)
    ids = [(100 + i) % vocab for i in range(n_tokens)]
    layer_features(loaded.model, ids[:16], [layers], n_tokens)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        layer_features(loaded.model, ids, [layers], n_tokens)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
