"""The labelling runs `rlp label` starts: the ShareGPT-only batched torch labelling (with its
check against batch size 1 and its throughput measurements) and the served-like mix, one prompt
at a time on the serving engine or several per llama.cpp context. Each appends to the labels file
it is given and resumes where it stopped (timebill/rlp/labels.py)."""
from __future__ import annotations

import json
import pathlib
import time

from .data import by_split
from .features import CANDIDATE_LAYERS, MIX_LAYERS, label_feature_path
from .labelled import labelled, print_label_counts


def parse_mix(text: str) -> dict[str, int | None]:
    """``SOURCE=COUNT,...`` -> {source: count}; a source without a count takes all its prompts."""
    counts = {}
    for part in text.split(","):
        name, _, n = part.partition("=")
        counts[name.strip()] = int(n) if n else None
    return counts


def sharegpt_prompts(loaded, cap: int, max_prompt_tokens: int) -> list:
    from .data import first_turn_prompts

    prompts = first_turn_prompts()
    print(f"{len(prompts)} ShareGPT first-turn prompts; label cap {cap} tokens (greedy, chat template, "
          f"eos {loaded.eos_token_ids}); prompts <= {max_prompt_tokens} tokens", flush=True)
    return prompts


def label_sharegpt(loaded, prompts, labels_path, cap: int, max_prompt_tokens: int, *, batch_size: int,
                   max_batch_tokens: int, limit: int | None, work: pathlib.Path, shard: int, num_shards: int,
                   keep_features: bool, progress: bool) -> int:
    """Batched torch labelling; keeps the prefill's features in ``work`` for `train` unless told not to."""
    from .labels import label_prompts

    layers = [L for L in CANDIDATE_LAYERS if L < loaded.num_layers] if keep_features else []
    stats = label_prompts(loaded, prompts, labels_path, cap, max_prompt_tokens, batch_size=batch_size,
                          max_batch_tokens=max_batch_tokens, limit=limit, progress=progress,
                          feature_layers=layers,
                          feature_path=label_feature_path(work, loaded.name, shard) if layers else None,
                          shard=shard, num_shards=num_shards)
    print(json.dumps(stats))
    print_label_counts(labels_path)
    return 0


def measure(loaded, prompts, cap: int, max_prompt_tokens: int, steps: list[int] = (), batching: list[int] = ()) -> int:
    """Decode-step times (``steps``) or whole generations (``batching``) per batch size, on the train split."""
    from .labels import measure_batching, measure_steps

    train = by_split(prompts, "train")
    if steps:
        measure_steps(loaded, train, batch_sizes=list(steps))
    else:
        measure_batching(loaded, train, cap, max_prompt_tokens, batch_sizes=list(batching))
    return 0


def verify(loaded, prompts, labels_path, cap: int, count: int) -> int:
    """Batch-size-1 lengths (the engine's decoding, no padding) against the stored batched labels."""
    from .labels import generate_lengths

    recs = labelled(labels_path)
    texts = {p.id: p.text for p in prompts}
    # a spread of lengths: every k-th record sorted by label
    # responses that ended before the cap (the exact end-of-turn position is the strictest check)
    recs = sorted([r for r in recs if r["length"] < cap], key=lambda r: (r["length"], r["id"]))
    pick = [recs[int(i * (len(recs) - 1) / max(count - 1, 1))] for i in range(count)]
    same = 0
    for r in pick:
        t0 = time.monotonic()
        n, stop = generate_lengths(loaded, [loaded.encode_chat(texts[r["id"]])], cap)[0]
        same += n == r["length"]
        print(json.dumps({"id": r["id"], "batched_label": r["length"], "batch_size_1": n, "stop": stop,
                          "seconds": round(time.monotonic() - t0, 1)}), flush=True)
    print(f"batch size 1 reproduces {same}/{len(pick)} batched labels")
    return 0


def label_mix(loaded, cfg: dict, labels_path, cap: int, counts: dict, *, max_prompt_tokens: int,
              work: pathlib.Path, slots: int, progress: bool) -> int:
    """The served-like mix (timebill/rlp/sources.py); ``slots`` > 1 decodes that many answers together."""
    from ..engine import BudgetedEngine
    from ..estimator import Estimator
    from ..length_predictor import ConstantLengthPredictor
    from ..runtime import configured_loop_window, configured_press, load_or_profile_time_model
    from .labels import label_served
    from .sources import interleave, load_source

    groups = [load_source(name, loaded.tokenizer, limit=n) for name, n in counts.items()]
    print("mix: " + ", ".join(f"{name} {len(g)}" for name, g in zip(counts, groups)) + f"; label cap {cap}", flush=True)
    layers = [L for L in MIX_LAYERS if L < loaded.num_layers]
    features = work / f"label_features_{loaded.name}.mix.pt"
    if slots > 1:
        from ..compute_thread import run
        from .batch_label import label_batched

        stats = run(label_batched, loaded, interleave(groups), labels_path, cap, layers, features.with_suffix(".batched.pt"),
                    slots=slots, threads=int(cfg.get("threads") or 2), max_prompt_tokens=max_prompt_tokens,
                    loop_window=configured_loop_window(cfg), progress=progress)
        print(json.dumps(stats))
        print_label_counts(labels_path)
        return 0
    tm = load_or_profile_time_model(cfg, loaded, progress=progress, say=print)
    engine = BudgetedEngine(Estimator(loaded, tm, ConstantLengthPredictor(), press=configured_press(cfg)),
                            reject_infeasible=False, learn_online=False, backend=cfg.get("backend", "auto"),
                            loop_window=configured_loop_window(cfg))  # labels are the lengths served
    engine.warm_up()
    stats = label_served(engine, interleave(groups), labels_path, cap, layers, features,
                         max_prompt_tokens=max_prompt_tokens, progress=progress)
    print(json.dumps(stats))
    print_label_counts(labels_path)
    return 0
