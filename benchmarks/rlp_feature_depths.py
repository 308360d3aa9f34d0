"""Which of the target model's hidden states predict the answer's length best, and at what cost?

Issue 17 asks to compare depths and inputs on one split: layer 1 (today's predictor, its own
pass over the first layer of a prompt cut to 512 tokens), deeper layers, and the last (free: the
served prefill computes every layer of the whole prompt anyway), each pooled as the mean over the
prompt's tokens, the prompt's last token (the chat template's assistant header), or both.

For every labelled prompt one full forward pass records
the pooled states after each chosen layer (cached in runs/rlp/depth_features_in<N>.pt, resumable).
Prompts are cut to 512 tokens by default (the predictor's own input bound; 0: whole).
Then, per (layer, pooling), the same classifier head as the shipped one is trained on the train
split with early stopping on val, and scored on the test split (MAE, share at the cap) and by
5-fold out-of-fold MAE over train+val. Prints a table and writes JSON + a PNG.

    python benchmarks/rlp_feature_depths.py --out docs/bench
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "timebill_ros"))

from timebill.models import load_model  # noqa: E402
from timebill.rlp.data import split_of  # noqa: E402
from timebill.rlp.evaluate import fold_splits  # noqa: E402
from timebill.rlp.labels import read_labels  # noqa: E402
from timebill.rlp.model import HeadConfig, train_head, truncate_ids  # noqa: E402
from timebill.rlp.sources import prompts_by_id  # noqa: E402

LABELS = REPO / "docs" / "data" / "rlp_labels_mix_SmolLM2-135M-Instruct.jsonl"
POOLINGS = ("mean", "last", "mean+last")


@torch.inference_mode()
def pooled_states(model, ids: list[int], layers: list[int]) -> torch.Tensor:
    """[len(layers), 2, hidden]: (mean, last token) after each layer; layer n_layers+1 = after the final norm."""
    out = model.model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
    hs = out.hidden_states  # embeddings, after layers 1..n-1, then the last layer's output after the final norm
    rows = []
    for L in layers:
        h = hs[L][0].float()
        rows.append(torch.stack([h.mean(0), h[-1]]))
    return torch.stack(rows).half()


def extract(loaded, recs, layers, cache_path: pathlib.Path, max_input_tokens: int, shorter: dict | None = None) -> dict:
    """``shorter``: a cache made with a smaller input bound, whose uncut prompts are reused."""
    cache = torch.load(cache_path, weights_only=True) if cache_path.is_file() else {"layers": layers, "feats": {}, "seconds": {}}
    if cache["layers"] != layers:
        cache = {"layers": layers, "feats": {}, "seconds": {}}
    missing = [r["id"] for r in recs if r["id"] not in cache["feats"]]
    if missing:
        prompts = prompts_by_id(missing, loaded.tokenizer)
        t_save = time.monotonic()
        for i, pid in enumerate(missing):
            p = prompts[pid]
            full = loaded.encode_chat(p.text, p.system)
            if shorter and shorter["layers"] == layers and pid in shorter["feats"] and len(full) <= shorter["bound"]:
                cache["feats"][pid], cache["seconds"][pid] = shorter["feats"][pid], shorter["seconds"][pid]
                continue  # the same states: the shorter bound did not cut this prompt
            ids = truncate_ids(full, max_input_tokens)
            t0 = time.perf_counter()
            cache["feats"][pid] = pooled_states(loaded.model, ids, layers)
            cache["seconds"][pid] = time.perf_counter() - t0
            if i % 50 == 0 or i == len(missing) - 1:
                print(f"features {i + 1}/{len(missing)} ({len(ids)} prompt tokens, {cache['seconds'][pid]:.2f} s)", flush=True)
            if time.monotonic() - t_save > 60:
                torch.save(cache, cache_path)
                t_save = time.monotonic()
        torch.save(cache, cache_path)
    return cache


def oof_predictions(ids, x, y, cfg, folds: int = 5) -> np.ndarray:
    """Each prompt predicted by a head trained without it (the folds of ``rlp eval``; an eighth of
    the rest stops training early)."""
    pred = np.zeros(len(y), dtype=int)
    for te, tr, va in fold_splits(ids, folds):
        head, _ = train_head(cfg, x[tr], y[tr], x[va], y[va])
        pred[te] = head.predict_lengths(x[te])
    return pred


def features(cache, recs, layer_index: int, pooling: str) -> torch.Tensor:
    x = torch.stack([cache["feats"][r["id"]][layer_index] for r in recs]).float()  # [n, 2, hidden]
    if pooling == "mean":
        return x[:, 0]
    if pooling == "last":
        return x[:, 1]
    return torch.cat([x[:, 0], x[:, 1]], dim=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--layers", default="1,2,4,8,16,24,29,30",
                    help="hidden states after these layers (n_layers: the last layer's, after the final norm)")
    ap.add_argument("--work", default=str(REPO / "runs" / "rlp"))
    ap.add_argument("--out", default=None, help="folder for rlp_feature_depths.json/.png")
    ap.add_argument("--cap", type=int, default=384)
    ap.add_argument("--max-input-tokens", type=int, default=512,
                    help="cut longer prompts to their first and last halves, as the predictor does (0: whole prompts, "
                         "as the served prefill sees them; a 1,600-token prompt then takes ~5-9 s here)")
    ap.add_argument("--export", action="store_true",
                    help="also write the states as `rlp train`'s feature cache (runs/rlp/features_<model>_in<N>.pt), "
                         "so that training at any of these depths computes nothing again")
    ap.add_argument("--cached-only", action="store_true",
                    help="compare on the prompts whose features are already cached (while an extraction runs)")
    args = ap.parse_args()

    torch.set_num_threads(1)  # the machine is shared: a second OpenMP thread waiting on a busy core costs more than it gives
    loaded = load_model("embedded")
    recs = [r for r in read_labels(args.labels).values() if "length" in r]  # not the prompts skipped as too long
    layers = [int(x) for x in args.layers.split(",")]
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache_path = work / f"depth_features_in{args.max_input_tokens}.pt"
    if args.cached_only:
        cache = torch.load(cache_path, weights_only=True)
        recs = [r for r in recs if r["id"] in cache["feats"]]
        layers = cache["layers"]
    else:
        shorter = None
        if args.max_input_tokens == 0 and (work / "depth_features_in512.pt").is_file():
            shorter = {**torch.load(work / "depth_features_in512.pt", weights_only=True), "bound": 512}
        cache = extract(loaded, recs, layers, cache_path, args.max_input_tokens, shorter)
    if args.export:
        # rlp/features.py's format: {L: [mean ; last]} per prompt, in the order of "layers"
        path = work / f"features_{loaded.name}_in{args.max_input_tokens}.pt"
        torch.save({"layers": layers, "feats": {pid: f.flatten(1) for pid, f in cache["feats"].items()}}, path)
        print(f"wrote {path}")
    y = np.array([min(int(r["length"]), args.cap) for r in recs])
    ids = [r["id"] for r in recs]
    split = np.array([split_of(i) for i in ids])
    tr, va, te = (np.where(split == s)[0] for s in ("train", "val", "test"))
    fit = np.concatenate([tr, va])
    const = float(np.median(y[fit]))
    base = HeadConfig(kind="classifier", width=16, max_tokens=args.cap)
    rows = []
    print(f"{len(recs)} labels: train {len(tr)}, val {len(va)}, test {len(te)}; constant (median) test MAE "
          f"{np.mean(np.abs(const - y[te])):.1f}", flush=True)
    for li, L in enumerate(layers):
        for pooling in POOLINGS:
            x = features(cache, recs, li, pooling)
            head, info = train_head(base, x[tr], y[tr], x[va], y[va])
            pred = head.predict_lengths(x[te])
            oof = oof_predictions([ids[i] for i in fit], x[fit], y[fit], base)
            row = {"layer": L, "pooling": pooling, "test_mae": round(float(np.mean(np.abs(pred - y[te]))), 1),
                   "oof_mae": round(float(np.mean(np.abs(oof - y[fit]))), 1),
                   "test_at_cap_pct": round(100 * float(np.mean(pred >= args.cap)), 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    secs = np.array(list(cache["seconds"].values()))
    summary = {"labels": len(recs), "max_input_tokens": args.max_input_tokens, "test": int(len(te)), "constant_test_mae": round(float(np.mean(np.abs(const - y[te]))), 1),
               "median_full_forward_s": round(float(np.median(secs)), 4), "rows": rows,
               "command": "python benchmarks/rlp_feature_depths.py " + " ".join(sys.argv[1:])}
    print(f"{'layer':>5} {'pooling':>10} {'test MAE':>9} {'OOF MAE':>8} {'at cap %':>9}")
    for r in rows:
        print(f"{r['layer']:>5} {r['pooling']:>10} {r['test_mae']:>9} {r['oof_mae']:>8} {r['test_at_cap_pct']:>9}")
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rlp_feature_depths.json").write_text(json.dumps(summary, indent=1))
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for pooling in POOLINGS:
            pts = [(r["layer"], r["oof_mae"]) for r in rows if r["pooling"] == pooling]
            ax.plot(*zip(*pts), marker="o", label=pooling)
        ax.axhline(summary["constant_test_mae"], color="grey", ls="--", label="constant (test)")
        ax.set_xlabel(f"hidden state after layer ({max(layers)}: after the final norm)")
        ax.set_ylabel("out-of-fold MAE (tokens)")
        ax.set_title(f"Length predictor by depth and pooling ({len(recs)} served labels)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "rlp_feature_depths.png", dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
