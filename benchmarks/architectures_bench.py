"""Is the fast path right for each architecture family? (prints a table; not a test)

For tiny random-weight models of each family (timebill/families.py: hidden 128, 2 layers, GQA,
made by llama.cpp's own converter as f32 GGUFs) and for the embedded SmolLM2 (its real Q4_1 GGUF),
the next-token logits on a 49- and a 182-token prompt of:
- native:  llama.cpp's own prefill of the GGUF;
- HF:      the original Hugging Face model (the families only);
- torch:   the torch side as timebill loads it from the GGUF (backend torch, and the prefill of the
           default path);
- carried: the default path, torch prefill carried into llama.cpp, then one llama.cpp step;
as max |Δlogit| / correlation, and whether 20 greedy tokens after the carried cache equal llama.cpp's
own. ``served by`` is what ``backend: auto`` does with the file (start-up check included).

  python benchmarks/architectures_bench.py [--out docs/bench] [--families qwen2,qwen3]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from timebill.backends import make_backend
from timebill.backends.llamacpp import LlamaCppModel
from timebill.families import FAMILIES, family_model
from timebill.models import ModelLoadError, load_model

LENGTHS = (49, 182)
GREEDY = 20


def gap(a, b) -> str:
    if a is None or b is None:
        return "-"
    return f"{float(np.max(np.abs(a - b))):.4f} / {float(np.corrcoef(a, b)[0, 1]):.4f}"


def prompt(n: int, vocab: int) -> list[int]:
    return [int(t) for t in np.random.default_rng(n).integers(3, min(vocab, 390), n)]


def hf_logits(folder, ids):
    import torch
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.inference_mode():
        return ref(torch.tensor([ids])).logits[0, -1].numpy()


def greedy_native(llama: LlamaCppModel, ids) -> list[int]:
    out = [int(np.argmax(llama.prefill(ids)))]
    for i in range(GREEDY - 1):
        out.append(int(np.argmax(llama.decode_one(out[-1], len(ids) + i))))
    return out


def one(name: str, gguf: pathlib.Path, hf: pathlib.Path | None, threads: int) -> dict:
    row = {"family": name, "served_by": "", "lengths": {}}
    try:
        loaded = load_model(str(gguf), threads=threads)
    except ModelLoadError as exc:
        if hf is None:
            raise
        # transformers cannot read this GGUF (the families' Gemma3: a test tokenizer it does not
        # expect): the torch side comes from the Hugging Face folder, as a user with one would do.
        row["note"] = ("torch side loaded from the Hugging Face folder: transformers cannot read the test "
                       "tokenizer back from a Gemma GGUF")
        loaded = load_model(str(hf), threads=threads)
        loaded.gguf = gguf
    backend = make_backend("auto", loaded, threads=threads)
    row["served_by"] = backend.name if backend.name == "torch" else "llamacpp (carried)"
    if loaded.carry_refused:
        row["refused"] = loaded.carry_refused
    llama = backend.llama if backend.name == "llamacpp" else LlamaCppModel(gguf, n_ctx=512, threads=threads)
    import torch

    for n in LENGTHS:
        ids = prompt(n, llama.n_vocab)
        native = llama.prefill(ids)
        native_greedy = greedy_native(llama, ids)
        with torch.inference_mode():
            torch_side = loaded.model(torch.tensor([ids])).logits[0, -1].numpy()
        ref = hf_logits(hf, ids) if hf is not None else None
        cell = {"native_vs_hf": gap(native, ref), "carried_vs_native": "-",
                "torch_vs_hf": gap(torch_side, ref) if loaded.gguf is not None and "note" not in row else "(HF folder)",
                "greedy": "-"}
        if backend.name == "llamacpp":
            backend.prefill(ids[:-1])
            carried = backend.decode_one(ids[-1], n - 1).numpy()
            out = [int(np.argmax(carried))]
            for i in range(GREEDY - 1):
                out.append(int(np.argmax(backend.decode_one(out[-1], n + i).numpy())))
            cell["carried_vs_native"] = gap(carried, native)
            cell["greedy"] = f"{sum(a == b for a, b in zip(out, native_greedy))}/{GREEDY}"
        row["lengths"][n] = cell
    llama.close()
    return row


def table(rows) -> str:
    lines = ["| family | served by (`backend: auto`) | prompt | carried vs native | greedy equal | native vs HF | torch (from GGUF) vs HF |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        for n, c in r["lengths"].items():
            lines.append(f"| {r['family']} | {r['served_by']} | {n} | {c['carried_vs_native']} | {c['greedy']} | "
                         f"{c['native_vs_hf']} | {c['torch_vs_hf']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: all)")
    ap.add_argument("--no-embedded", action="store_true", help="skip the embedded SmolLM2 row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="folder for architectures.json")
    args = ap.parse_args(argv)
    rows = []
    for fam in [f for f in args.families.split(",") if f]:
        hf, gguf = family_model(fam)
        rows.append(one(fam, gguf, hf, args.threads))
        print(f"{fam}: {rows[-1]['served_by']}", file=sys.stderr, flush=True)
    if not args.no_embedded:
        from timebill.models import embedded_gguf_path

        rows.append(one("embedded SmolLM2-135M Q4_1", embedded_gguf_path(), None, args.threads))
    print(table(rows))
    for r in rows:
        for key in ("note", "refused"):
            if r.get(key):
                print(f"- {r['family']}: {r[key]}")
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "architectures.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
