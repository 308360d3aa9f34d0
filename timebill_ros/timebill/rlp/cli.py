"""``timebill rlp label|train|eval`` (also ``python -m timebill.rlp ...``).

  label  generate distillation labels (the target model's own greedy response lengths), resumable
  train  extract backbone features, choose L on the validation split, train the B=16 classifier,
         calibrate its bound on the validation split, save the head shipped with the package
  eval   the test-split table (bucket classifiers, regression head, constant), bounds' coverage, PNG
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[3]
DEFAULT_LABELS = REPO / "docs" / "data" / "rlp_labels_mix_SmolLM2-135M-Instruct.jsonl"
SHAREGPT_LABELS = REPO / "docs" / "data" / "rlp_labels_SmolLM2-135M-Instruct.jsonl"  # the first head's (torch, cap 256)
DEFAULT_MIX = "sharegpt=150,narrativeqa=130,qasper=100,everyday=220,piqa=120,nq_open=80,brief=100"
MIX_LAYERS = (1, 2, 4)  # the backbone depths the mix's features are kept for (the predictor's time grows with L)
DEFAULT_WORK = REPO / "runs" / "rlp"
DEFAULT_LAYERS = "2,4,6,8,12,16"


def _config(args) -> dict:
    from ..config import load_config

    return load_config(getattr(args, "config", None))


_PRELOADED = []  # main(argv, loaded=...) puts a LoadedModel here (tests use the tiny model)


def _load(args):
    from ..models import load_model

    cfg = _config(args)
    if _PRELOADED:
        return cfg, _PRELOADED[0]
    return cfg, load_model(args.model or cfg.get("model") or "embedded", cfg.get("cache_dir") or None,
                           threads=args.threads or cfg.get("threads"))


def _common(p):
    p.add_argument("--config", default=None, help="timebill.yaml (default: the package's)")
    p.add_argument("--model", default=None, help="model spec (default: config `model`, i.e. embedded)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: config `threads`)")
    p.add_argument("--labels", default=None, help=f"labels file (JSON lines: id, length; default {DEFAULT_LABELS.name}, "
                   f"or {SHAREGPT_LABELS.name} for the ShareGPT-only labelling)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="timebill rlp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("label", help="generate labels (resumable)")
    _common(p)
    p.add_argument("--max-new-tokens", type=int, default=None, help="label cap (default: config default_max_new_tokens)")
    p.add_argument("--mix", nargs="?", const=DEFAULT_MIX, default=None,
                   help=f"label the served-like mix (timebill/rlp/sources.py) one prompt at a time on the serving "
                        f"backend: SOURCE=COUNT,... (default {DEFAULT_MIX}); without it: the ShareGPT-only batched torch labelling")
    p.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="skip longer chat-encoded prompts (default 512; with --mix 2048, the longest the timing model is profiled for)")
    p.add_argument("--slots", type=int, default=1,
                   help="with --mix: answers decoded together in one llama.cpp context (timebill/rlp/batch_label.py; "
                        "1 = one at a time on the serving engine, as a goal is served)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batch-tokens", type=int, default=4096, help="cap on batch size x longest prompt")
    p.add_argument("--limit", type=int, default=None, help="label at most this many new prompts")
    p.add_argument("--work", default=str(DEFAULT_WORK), help="where the prefill's predictor features are cached")
    p.add_argument("--shard", default="0/1", help="K/N: label only prompts with index %% N == K (run N processes, "
                   "e.g. one thread each on a shared machine; they append to the same labels file)")
    p.add_argument("--no-features", action="store_true", help="do not keep the prefill's features for `train`")
    p.add_argument("--verify", type=int, default=0,
                   help="only re-generate this many labelled prompts one at a time (batch size 1, as served) "
                        "and compare with the batched labels")
    p.add_argument("--measure-steps", default="",
                   help="only time full-batch decoding steps at these batch sizes, e.g. 1,16,32,64")
    p.add_argument("--measure-batching", default="", help="only measure throughput at these batch sizes, e.g. 1,8,16,32")
    p = sub.add_parser("train", help="choose L, train and save the shipped head")
    _common(p)
    p.add_argument("--layers", default=DEFAULT_LAYERS, help=f"candidate L values (default {DEFAULT_LAYERS})")
    p.add_argument("--fixed-layers", type=int, default=None, help="skip the sweep and use this L")
    p.add_argument("--width", type=int, default=16, help="bucket width B (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="label cap the labels were made with (default: config default_max_new_tokens)")
    p.add_argument("--coverage", type=float, default=0.95, help="target coverage of the calibrated bound")
    p.add_argument("--max-input-tokens", type=int, default=512)
    p.add_argument("--tolerance", type=float, default=None,
                   help="choose the smallest L whose validation MAE is within this fraction of the best "
                        "(default: within one standard error of the best's MAE)")
    p.add_argument("--work", default=str(DEFAULT_WORK), help="feature cache and sweep results")
    p.add_argument("--out", default=None, help="head file (default: the package's timebill/data/)")
    p = sub.add_parser("eval", help="test-split table, bounds, figure")
    _common(p)
    p.add_argument("--head", default=None, help="head file (default: the shipped one)")
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--out-dir", default=str(REPO / "docs"),
                   help="writes data/rlp_eval.json, rlp_eval.png and rlp_per_source.png here")
    p.add_argument("--folds", type=int, default=5, help="folds of the per-source out-of-fold table (default 5)")
    return ap


def main(argv=None, loaded=None) -> int:
    args = build_parser().parse_args(argv)
    if args.labels is None:
        args.labels = str(SHAREGPT_LABELS if args.cmd == "label" and not args.mix else DEFAULT_LABELS)
    _PRELOADED[:] = [loaded] if loaded is not None else []
    if args.cmd == "label":
        return cmd_label(args)
    if args.cmd == "train":
        return cmd_train(args)
    return cmd_eval(args)


# --- label ----------------------------------------------------------------------------------------
def cmd_label(args) -> int:
    from .data import first_turn_prompts, split_of
    from .labels import label_prompts, measure_batching

    cfg, loaded = _load(args)
    cap = int(args.max_new_tokens or cfg.get("default_max_new_tokens", 256))
    if args.mix:
        args.max_prompt_tokens = args.max_prompt_tokens or 2048
        return _label_mix(args, cfg, loaded, cap)
    args.max_prompt_tokens = args.max_prompt_tokens or 512
    prompts = first_turn_prompts()
    print(f"{len(prompts)} ShareGPT first-turn prompts; label cap {cap} tokens (greedy, chat template, "
          f"eos {loaded.eos_token_ids}); prompts <= {args.max_prompt_tokens} tokens", flush=True)
    if args.verify:
        return _verify(loaded, prompts, args, cap)
    if args.measure_steps:
        from .labels import measure_steps

        train = [p for p in prompts if split_of(p.id) == "train"]
        measure_steps(loaded, train, batch_sizes=[int(x) for x in args.measure_steps.split(",")])
        return 0
    if args.measure_batching:
        sizes = [int(x) for x in args.measure_batching.split(",")]
        train = [p for p in prompts if split_of(p.id) == "train"]
        measure_batching(loaded, train, cap, args.max_prompt_tokens, batch_sizes=sizes)
        return 0
    layers = [L for L in (int(x) for x in DEFAULT_LAYERS.split(",")) if L < loaded.num_layers]
    if args.no_features or not layers:
        args.no_features, layers = True, []
    shard, num_shards = (int(x) for x in args.shard.split("/"))
    stats = label_prompts(loaded, prompts, args.labels, cap, args.max_prompt_tokens, batch_size=args.batch_size,
                          max_batch_tokens=args.max_batch_tokens, limit=args.limit, progress=not args.quiet,
                          feature_layers=layers,
                          feature_path=None if args.no_features else label_feature_path(pathlib.Path(args.work), loaded.name, shard),
                          shard=shard, num_shards=num_shards)
    print(json.dumps(stats))
    _print_label_counts(args.labels)
    return 0


def _label_mix(args, cfg, loaded, cap) -> int:
    from ..engine import BudgetedEngine
    from ..estimator import Estimator
    from ..length_predictor import ConstantLengthPredictor
    from ..runtime import configured_press, load_or_profile_time_model
    from .labels import label_served
    from .sources import interleave, load_source

    counts = {}
    for part in args.mix.split(","):
        name, _, n = part.partition("=")
        counts[name.strip()] = int(n) if n else None
    groups = [load_source(name, loaded.tokenizer, limit=n) for name, n in counts.items()]
    print("mix: " + ", ".join(f"{name} {len(g)}" for name, g in zip(counts, groups)) + f"; label cap {cap}", flush=True)
    layers = [L for L in MIX_LAYERS if L < loaded.num_layers]
    features = pathlib.Path(args.work) / f"label_features_{loaded.name}.mix.pt"
    if args.slots > 1:
        from ..compute_thread import run
        from .batch_label import label_batched

        stats = run(label_batched, loaded, interleave(groups), args.labels, cap, layers, features.with_suffix(".batched.pt"),
                    slots=args.slots, threads=int(cfg.get("threads") or 2), max_prompt_tokens=args.max_prompt_tokens,
                    progress=not args.quiet)
        print(json.dumps(stats))
        _print_label_counts(args.labels)
        return 0
    tm = load_or_profile_time_model(cfg, loaded, say=print)
    engine = BudgetedEngine(Estimator(loaded, tm, ConstantLengthPredictor(), press=configured_press(cfg)),
                            reject_infeasible=False, learn_online=False, backend=cfg.get("backend", "auto"))
    engine.warm_up()
    stats = label_served(engine, interleave(groups), args.labels, cap, layers, features,
                         max_prompt_tokens=args.max_prompt_tokens, progress=not args.quiet)
    print(json.dumps(stats))
    _print_label_counts(args.labels)
    return 0


def _verify(loaded, prompts, args, cap) -> int:
    """Batch-size-1 lengths (the engine's decoding, no padding) against the stored batched labels."""
    from .labels import generate_lengths

    recs = _labelled(args.labels)
    texts = {p.id: p.text for p in prompts}
    # a spread of lengths: every k-th record sorted by label
    # responses that ended before the cap (the exact end-of-turn position is the strictest check)
    recs = sorted([r for r in recs if r["length"] < cap], key=lambda r: (r["length"], r["id"]))
    pick = [recs[int(i * (len(recs) - 1) / max(args.verify - 1, 1))] for i in range(args.verify)]
    same = 0
    for r in pick:
        t0 = time.monotonic()
        n, stop = generate_lengths(loaded, [loaded.encode_chat(texts[r["id"]])], cap)[0]
        same += n == r["length"]
        print(json.dumps({"id": r["id"], "batched_label": r["length"], "batch_size_1": n, "stop": stop,
                          "seconds": round(time.monotonic() - t0, 1)}), flush=True)
    print(f"batch size 1 reproduces {same}/{len(pick)} batched labels")
    return 0


def _labelled(path) -> list[dict]:
    from .labels import read_labels

    return [r for r in read_labels(path).values() if "length" in r]


def _print_label_counts(path) -> dict:
    from .data import split_of

    recs = _labelled(path)
    counts = {s: sum(split_of(r["id"]) == s for r in recs) for s in ("train", "val", "test")}
    print(f"labels in {path}: {len(recs)} ({counts})")
    return counts


# --- features -------------------------------------------------------------------------------------
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


def _splits(recs):
    from .data import split_of

    return {s: [i for i, r in enumerate(recs) if split_of(r["id"]) == s] for s in ("train", "val", "test")}


# --- train ----------------------------------------------------------------------------------------
def named_caps(recs: list[dict]) -> set[int]:
    """The label caps the records name (labels of the mix carry theirs; the first, ShareGPT-only ones none)."""
    return {int(r["cap"]) for r in recs if "cap" in r}


def label_cap(recs: list[dict], given: int | None, cfg: dict) -> int:
    """The cap the labels were made with: ``--max-new-tokens``, else the one the records name,
    else the config's ``default_max_new_tokens``."""
    if given:
        return int(given)
    caps = named_caps(recs)
    if len(caps) > 1:
        raise SystemExit(f"the labels were made with several caps {sorted(caps)}: give --max-new-tokens")
    return caps.pop() if caps else int(cfg.get("default_max_new_tokens", 256))


def choose_layers(errors: dict, tolerance: float | None = None) -> tuple[int, int, float, str]:
    """The smallest L not measurably worse than the best: within one standard error of the best
    validation MAE (or within ``tolerance`` x the best). Validation MAEs of neighbouring L differ by
    less than their noise, and every layer costs predictor time inside every budget.

    ``errors``: L -> absolute errors on the validation split. Returns (chosen, best L, best MAE, rule).
    """
    import numpy as np

    best_layers = min(errors, key=lambda L: float(np.mean(errors[L])))
    e = np.asarray(errors[best_layers], dtype=float)
    best = float(e.mean())
    se = float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0
    if tolerance is None:
        slack, rule = se, f"within one standard error ({se:.2f}) of"
    else:
        slack, rule = best * tolerance, f"within {100 * tolerance:.0f} % of"
    chosen = min(L for L in errors if float(np.mean(errors[L])) <= best + slack)
    return chosen, best_layers, best, rule


def cmd_train(args) -> int:
    import numpy as np

    from .bounds import calibrate_factor, coverage_of, calibrated_bound
    from .calibration import calibrate_temperature
    from .model import HeadConfig, train_head
    from .predictor import default_head_path

    cfg, loaded = _load(args)
    recs = _labelled(args.labels)
    cap = label_cap(recs, args.max_new_tokens, cfg)
    sp = _splits(recs)
    print(f"{len(recs)} labelled prompts: train {len(sp['train'])}, val {len(sp['val'])}, test {len(sp['test'])} "
          f"(test not used here); label cap {cap}", flush=True)
    if not sp["train"] or not sp["val"]:
        print("need labelled train and val prompts", file=sys.stderr)
        return 1
    layers = [args.fixed_layers] if args.fixed_layers else [int(x) for x in args.layers.split(",")]
    work = pathlib.Path(args.work)
    feats = features_for(loaded, recs, layers, args.max_input_tokens, work, progress=not args.quiet)
    y = np.array([min(int(r["length"]), cap) for r in recs])
    tr, va = sp["train"], sp["val"]
    base = HeadConfig(kind="classifier", width=args.width, max_tokens=cap, max_input_tokens=args.max_input_tokens,
                      model_name=loaded.name, model_hidden=int(loaded.model.config.hidden_size),
                      bound_coverage=args.coverage)
    sweep = []
    heads = {}
    for L in layers:
        c = HeadConfig(**{**base.__dict__, "layers": L})
        head, info = train_head(c, feats[L][tr], y[tr], feats[L][va], y[va], progress=not args.quiet)
        lat128 = predictor_latency(loaded, L, 128)
        lat512 = predictor_latency(loaded, L, args.max_input_tokens)
        row = {"layers": L, "val_mae": round(info["val_mae"], 2), "best_epoch": info["best_epoch"],
               "latency_128_s": round(lat128, 4), f"latency_{args.max_input_tokens}_s": round(lat512, 4)}
        print(json.dumps(row), flush=True)
        sweep.append(row)
        heads[L] = head
    val_predictions = {L: heads[L].predict_lengths(feats[L][va]) for L in layers}
    chosen, best_layers, best, rule = choose_layers({L: np.abs(p - y[va]) for L, p in val_predictions.items()}, args.tolerance)
    head = heads[chosen]
    # The point prediction, chosen on validation MAE: the likeliest bucket or the distribution's median.
    point_mae = {}
    for point in ("argmax", "median"):
        head.cfg.point = point
        point_mae[point] = float(np.mean(np.abs(head.predict_lengths(feats[chosen][va]) - y[va])))
    head.cfg.point = min(point_mae, key=point_mae.get)
    print("validation MAE by point prediction: " + ", ".join(f"{k} {v:.2f}" for k, v in point_mae.items())
          + f" -> {head.cfg.point}", flush=True)
    pred_val = head.predict_lengths(feats[chosen][va])
    head.cfg.temperature = calibrate_temperature(head, feats[chosen][va], y[va])
    print(f"distribution: softmax temperature {head.cfg.temperature:.3f} (least validation NLL)", flush=True)
    q = calibrate_factor(y[va], pred_val, args.coverage)
    head.cfg.bound_factor = q
    cov_val = coverage_of(y[va], [calibrated_bound(p, cap, q) for p in pred_val])
    head.cfg.extra = {"train_prompts": len(tr), "val_prompts": len(va), "labels_file": pathlib.Path(args.labels).name,
                      "val_mae": float(np.mean(np.abs(pred_val - y[va]))), "val_coverage": cov_val}
    out = pathlib.Path(args.out) if args.out else default_head_path()
    head.save(out)
    print(f"chose L={chosen} (smallest L with validation MAE {rule} the best {best:.2f}, L={best_layers}); "
          f"calibrated factor q={q:.3f} (validation coverage {100 * cov_val:.1f} %)")
    print(f"saved {out} ({out.stat().st_size / 1024:.0f} KiB)")
    (work / "sweep.json").write_text(json.dumps({"sweep": sweep, "chosen": chosen, "factor": q,
                                                      "rule": rule + f" the best (L={best_layers}, {best:.2f})"}, indent=1))
    return 0


# --- eval -----------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    import numpy as np

    from .bounds import calibrated_bound, coverage_of, paper_bound
    from .calibration import plot_reliability, plot_remaining, reliability, reliability_table, remaining_error
    from .evaluate import (bounds_table, markdown_table, metrics, out_of_fold, per_source_rows, per_source_table, plot,
                           plot_per_source)
    from .sources import source_of
    from .model import HeadConfig, LengthHead, train_head
    from .predictor import default_head_path

    cfg, loaded = _load(args)
    head = LengthHead.load(args.head or default_head_path())
    hc = head.cfg
    cap = hc.max_tokens
    recs = _labelled(args.labels)
    named = named_caps(recs)
    if named and named != {cap}:
        raise SystemExit(f"{args.labels} was labelled with cap {sorted(named)}, the head with {cap}: "
                         "give the labels the head was trained on (--labels)")
    sp = _splits(recs)
    L = hc.layers
    feats = features_for(loaded, recs, [L], hc.max_input_tokens, pathlib.Path(args.work), progress=not args.quiet)[L]
    y = np.array([min(int(r["length"]), cap) for r in recs])
    tr, va, te = sp["train"], sp["val"], sp["test"]
    print(f"test split: {len(te)} prompts (train {len(tr)}, val {len(va)}); backbone L={L}; cap {cap}", flush=True)
    rows, preds = [], {}

    def add(name, p):
        m = metrics(y[te], p)
        rows.append({"name": name, **m})
        preds[name] = p

    main_name = f"{cap // hc.width} buckets (B={hc.width}, shipped head)"
    add(main_name, head.predict_lengths(feats[te]))
    # Coarser and finer bucket classifiers and a regression head: same backbone, same training recipe.
    for width in (8, 32, 64):
        if width == hc.width:
            continue
        c = HeadConfig(**{**hc.__dict__, "width": width, "bound_factor": 0.0, "extra": {}})
        h, _ = train_head(c, feats[tr], y[tr], feats[va], y[va])
        add(f"{cap // width} buckets (B={width})", h.predict_lengths(feats[te]))
    c = HeadConfig(**{**hc.__dict__, "kind": "regression", "bound_factor": 0.0, "extra": {}})
    h, _ = train_head(c, feats[tr], y[tr], feats[va], y[va])
    add("regression head", h.predict_lengths(feats[te]))
    med = int(np.median(y[tr]))
    add(f"constant (train median {med})", np.full(len(te), med))
    order = [main_name] + sorted([r["name"] for r in rows if "buckets" in r["name"] and r["name"] != main_name],
                                 key=lambda s: -int(s.split()[0]))
    rows.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    p = preds[main_name]
    brows = []
    for name, b in (
        (f"calibrated q={hc.bound_factor:.3f} (95 % quantile of actual/predicted on val)",
         [calibrated_bound(x, cap, hc.bound_factor) if x < cap else cap for x in p]),
        (f"paper k={hc.paper_k:g}", [paper_bound(x, cap, hc.paper_k) if x < cap else cap for x in p]),
        ("cap N_max (constant predictor's bound)", [cap] * len(p)),
    ):
        brows.append({"name": name, "coverage": coverage_of(y[te], b), "mean_bound": float(np.mean(b))})
    t1 = markdown_table(rows)
    t2 = bounds_table(brows)
    print(f"test split: {100 * np.mean(p >= cap):.0f} % of the predictions in the top bucket (labels at the cap: "
          f"{100 * np.mean(y[te] >= cap):.0f} %)")
    print(t1)
    print()
    print(t2)
    out = pathlib.Path(args.out_dir)
    # Per source, out of fold: the test split holds too few prompts of each source for a table.
    print(f"\nper source, {args.folds}-fold out-of-fold predictions (same recipe as the shipped head):", flush=True)
    oof = out_of_fold([r["id"] for r in recs], feats, y, hc, train_head, folds=args.folds, coverage=hc.bound_coverage)
    src_rows = per_source_rows([r.get("source") or source_of(r["id"]) for r in recs], y, oof, cap)
    print(per_source_table(src_rows))
    # Is the distribution honest? Out of fold, as a planner reads it: P(length <= tokens that fit).
    ends, _ = head.distribution(feats[:1])
    rel = reliability(ends, oof["probs"], y, cap)
    rel_raw = reliability(ends, oof["probs_raw"], y, cap)
    print(f"\nreliability of P(length <= n), {args.folds}-fold out of fold, temperature fitted per fold:")
    print(reliability_table(rel))
    print(f"(at temperature 1: expected calibration error {rel_raw['ece']:.3f})")
    again = remaining_error(ends, oof["probs"], y)
    print("\nre-estimated while running (conditioned on the tokens generated), out of fold:")
    print("| tokens generated | answers still running | MAE at acceptance | MAE re-estimated |\n|---|---|---|---|")
    for r in again:
        print(f"| {r['tokens_generated']} | {r['answers']} | {r['mae_at_acceptance']:.1f} | {r['mae_reestimated']:.1f} |")
    out.mkdir(parents=True, exist_ok=True)
    plot_reliability(out / "rlp_reliability.png", {"temperature-scaled": rel, "temperature 1": rel_raw},
                     title=f"P(length <= tokens that fit), out of fold (n={len(recs)} prompts)")
    plot_remaining(out / "rlp_remaining.png", again, title=f"Re-estimating a running answer (out of fold, n={len(recs)})")
    result = {"labels": len(recs), "train": len(tr), "val": len(va), "test": len(te), "layers": L, "width": hc.width,
              "cap": cap, "max_input_tokens": hc.max_input_tokens, "table": rows, "bounds": brows,
              "test_length_mean": float(y[te].mean()), "test_at_cap": float(np.mean(y[te] >= cap)),
              "test_predicted_at_cap": float(np.mean(p >= cap)),
              "per_source": src_rows, "folds": args.folds, "labels_file": pathlib.Path(args.labels).name,
              "reliability": rel, "reliability_temperature_1": rel_raw, "temperature": hc.temperature,
              "reestimated": again}
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "data" / "rlp_eval.json").write_text(json.dumps(result, indent=1))
    plot(out / "rlp_eval.png", y[te], p, hc.width, cap, title=f"RLP on the test split (L={L}, B={hc.width}, n={len(te)})")
    plot_per_source(out / "rlp_per_source.png", src_rows,
                    title=f"RLP per source, {args.folds}-fold out of fold (n={len(recs)})")
    print(f"wrote {out / 'data' / 'rlp_eval.json'}, {out / 'rlp_eval.png'}, {out / 'rlp_per_source.png'}, "
          f"{out / 'rlp_reliability.png'} and {out / 'rlp_remaining.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
