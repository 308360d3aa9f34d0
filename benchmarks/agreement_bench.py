"""Do the fast path's answers agree with the reference's? (prints figures; not a test)

Greedy answers to 20 prompts from the engine on the llamacpp backend (torch prefill, llama.cpp
decoding with the GGUF's own Q4_1 weights) and on the torch backend (fp32 weights dequantised
from that GGUF), no eviction, up to 64 new tokens. Reports how many answers agree on their first
32 tokens, the mean length of the common prefix, and ROUGE-L between the two answers. llama.cpp
alone (its own prefill and decoding) is compared with both: where the fast path and llama.cpp
alone agree but the torch path differs, the difference comes from the weights and arithmetic
(Q4_1 with quantised activations against fp32), not from carrying the cache.

  python benchmarks/agreement_bench.py [--out docs/bench]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from timebill.backends import make_backend
from timebill.engine import BudgetedEngine
from timebill.estimator import Estimator
from timebill.evaluation.metrics import rouge_l
from timebill.models import load_model
from timebill.request import Request
from timebill.time_model import TimeModel

PROMPTS = [
    "What is the capital of France?",
    "What should a robot do when its battery is low?",
    "Explain in two sentences what a KV cache is.",
    "Name three fruits that are red.",
    "How many legs does a spider have?",
    "Write a haiku about a warehouse at night.",
    "What is 12 times 7?",
    "Give me a short tip for staying focused while studying.",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish.",
    "What is the boiling point of water at sea level in Celsius?",
    "Suggest a name for a small delivery robot.",
    "What does a lighthouse do?",
    "List the primary colors.",
    "How do plants make their food?",
    "What is the difference between a lake and a sea?",
    "Tell me a fun fact about octopuses.",
    "What should I pack for a day hike?",
    "Describe a cat in one sentence.",
    "Why do we need sleep?",
]
GENEROUS = TimeModel(a=0.0, b=1e-3, c=0.1, p=1e-5, q=0.1)
FIRST = 32


def common_prefix(a: list, b: list) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def llama_alone(llama, ids: list, max_new: int, eos: set) -> list:
    """Greedy token ids from llama.cpp's own prefill and decoding, up to end of turn."""
    import numpy as np

    out = []
    tok = int(np.argmax(llama.prefill(ids)))
    while tok not in eos and len(out) < max_new:
        out.append(tok)
        tok = int(np.argmax(llama.decode_one(tok, len(ids) + len(out) - 1)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", default="docs/bench")
    args = ap.parse_args(argv)
    loaded = load_model("embedded", threads=args.threads)
    engines = {name: BudgetedEngine(Estimator(loaded, GENEROUS), learn_online=False,
                                    backend=make_backend(name, loaded, threads=args.threads))
               for name in ("llamacpp", "torch")}
    rows = []
    for prompt in PROMPTS:
        req = Request(prompt=prompt, budget=3600.0, max_new_tokens=args.max_new_tokens, fixed_eviction_ratio=0.0)
        ans = {}
        for name, eng in engines.items():
            toks = []
            r = eng.generate(req, on_token=lambda ev: toks.append(ev.token_id))
            ans[name] = (toks, r.text)
        (fast_ids, fast_text), (ref_ids, ref_text) = ans["llamacpp"], ans["torch"]
        alone_ids = llama_alone(engines["llamacpp"].backend.llama, loaded.encode_chat(prompt), args.max_new_tokens,
                                set(loaded.eos_token_ids))
        prefix = common_prefix(fast_ids, ref_ids)
        first = min(FIRST, len(ref_ids), len(fast_ids))
        rows.append({"prompt": prompt, "llamacpp": fast_text, "torch": ref_text, "common_prefix_tokens": prefix,
                     "first32_agree": prefix >= first and len(fast_ids[:FIRST]) == len(ref_ids[:FIRST]),
                     "rouge_l": rouge_l(fast_text, ref_text),
                     "llama_alone_common_prefix_with_fast": common_prefix(alone_ids, fast_ids),
                     "llama_alone_common_prefix_with_torch": common_prefix(alone_ids, ref_ids)})
        print(f"{prefix:>3} common tokens  ROUGE-L {rows[-1]['rouge_l']:.2f}  (llama.cpp alone: "
              f"{rows[-1]['llama_alone_common_prefix_with_fast']} with fast, "
              f"{rows[-1]['llama_alone_common_prefix_with_torch']} with torch)  {prompt}", flush=True)
        if prefix < first:
            print(f"      llamacpp: {fast_text[:120]!r}\n      torch:    {ref_text[:120]!r}")
    agree = sum(r["first32_agree"] for r in rows)
    summary = {
        "prompts": len(rows), "first32_agree": agree,
        "mean_common_prefix_tokens": sum(r["common_prefix_tokens"] for r in rows) / len(rows),
        "mean_rouge_l": sum(r["rouge_l"] for r in rows) / len(rows),
        "mean_common_prefix_llama_alone_vs_fast": sum(r["llama_alone_common_prefix_with_fast"] for r in rows) / len(rows),
        "mean_common_prefix_llama_alone_vs_torch": sum(r["llama_alone_common_prefix_with_torch"] for r in rows) / len(rows),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"\nfirst {FIRST} tokens identical: {agree}/{len(rows)} | mean common prefix "
          f"{summary['mean_common_prefix_tokens']:.1f} tokens | mean ROUGE-L {summary['mean_rouge_l']:.3f}")
    print(f"llama.cpp alone, mean common prefix: {summary['mean_common_prefix_llama_alone_vs_fast']:.1f} tokens with the "
          f"fast path, {summary['mean_common_prefix_llama_alone_vs_torch']:.1f} with the torch path")
    path = pathlib.Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "agreement_bench.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(f"figures: {path / 'agreement_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
