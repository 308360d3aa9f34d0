"""Speed of the serving paths side by side on this machine (prints a table; not a test).

In one run, on the embedded SmolLM2-135M-Instruct (greedy, no end of turn, medians of repeats):
  1. prefill at 100 / 900 / 1,500 prompt tokens;
  2. decode ms/token at those cache sizes;
  3. a 64-token answer to a 900-token prompt, end to end;
  4. the engine's decode step at eviction 0 / 0.5 / 0.95 of a 1,500-token prompt (SnapKV);
for: the engine on its default backend (llamacpp: torch prefill + press, llama.cpp decoding),
the engine on the torch backend (the reference), llama.cpp alone on the same GGUF (its own
prefill and decoding, llama-cpp-python's low-level API) and transformers `generate` fp32.

  python benchmarks/speed_bench.py [--repeats 3] [--quick] [--out docs/bench]
  python benchmarks/speed_bench.py --plot docs/bench/speed_bench.json   # only redraw the PNG
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time
from statistics import median

import numpy as np

from timebill.backends import make_backend
from timebill.engine import BudgetedEngine
from timebill.estimator import Estimator
from timebill.models import load_model
from timebill.presses import make_press
from timebill.request import Request
from timebill.time_model import TimeModel

LENGTHS = (100, 900, 1500)
QUICK_LENGTHS = (32, 64, 128)  # --quick: checks that every section runs, in about a minute
EVICTIONS = (0.0, 0.5, 0.95)
STORY = ("The robot left the charging dock at dawn, crossed the warehouse, and checked every shelf for "
         "misplaced boxes. It found three in aisle four and one near the loading bay, logged their labels, "
         "and asked the night operator whether the damaged one should go back to the supplier. ")
GENEROUS = TimeModel(a=0.0, b=1e-3, c=0.1, p=1e-5, q=0.1)  # plans nothing away: every job runs to its cap


def prompt_ids(loaded, n: int) -> list:
    ids = loaded.tokenizer(STORY * (n // 40 + 2), add_special_tokens=False)["input_ids"]
    return ids[:n]


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def steps_ms(backend, ids, steps: int, press=None) -> float:
    """Median ms of a decoding step after prefilling ``ids`` (the cache then holds ~len(ids))."""
    backend.prefill(ids, press)
    times = []
    tok = ids[-1]
    for i in range(steps):
        t0 = time.perf_counter()
        backend.decode_one(tok, len(ids) + i)
        times.append(time.perf_counter() - t0)
    return 1e3 * median(times)


class LlamaAlone:
    """llama.cpp on its own: its prefill, its decoding, greedy in numpy."""

    def __init__(self, llama):
        self.llama = llama

    def prefill(self, ids, press=None):
        return self.llama.prefill(ids), len(ids)

    def decode_one(self, token, position):
        return self.llama.decode_one(token, position)

    def answer(self, ids, new_tokens: int):
        tok = int(np.argmax(self.llama.prefill(ids)))
        for i in range(new_tokens - 1):
            tok = int(np.argmax(self.llama.decode_one(tok, len(ids) + i)))


class HFGenerate:
    """transformers `generate`, fp32, greedy; a step is the difference between two generate lengths."""

    def __init__(self, loaded):
        self.model = loaded.model

    def run(self, ids, new_tokens: int):
        import torch

        with torch.inference_mode():
            self.model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                do_sample=False, pad_token_id=0)


def plot(out: dict, png: pathlib.Path) -> None:
    """Decode step per path and cache size, and the engine's step per eviction ratio, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, row in out["decode_ms"].items():
        sizes = sorted(row, key=int)
        left.plot([int(n) for n in sizes], [row[n] for n in sizes], marker="o", label=name)
    left.set(xlabel="cached positions", ylabel="ms per decoded token", title="decode step", ylim=(0, None))
    left.legend()
    for name, row in out["eviction_ms"].items():
        ratios = sorted(row, key=float)
        right.plot([float(a) for a in ratios], [row[a] for a in ratios], marker="o", label=name)
    right.set(xlabel="eviction ratio (SnapKV) of a 1,500-token prompt", ylabel="ms per decoded token",
              title="what eviction buys per step", ylim=(0, None))
    right.legend()
    fig.suptitle(f"SmolLM2-135M, {out['threads']} threads, {out['date'][:10]}, medians of {out['repeats']}")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"plot: {png}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plot", metavar="JSON", help="redraw the PNG of an earlier run's JSON and stop")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repeat, short prompts, few steps: checks that it runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/bench")
    args = ap.parse_args(argv)
    if args.plot:
        src = pathlib.Path(args.plot)
        plot(json.loads(src.read_text()), src.with_suffix(".png"))
        return 0
    repeats = 1 if args.quick else args.repeats
    steps = 8 if args.quick else 32
    answer_tokens = 16 if args.quick else 64
    lengths = QUICK_LENGTHS if args.quick else LENGTHS
    answer_prompt = lengths[1]  # 900 tokens

    import torch

    loaded = load_model("embedded", threads=args.threads)
    loaded = dataclasses.replace(loaded, eos_token_ids=[])  # every answer runs to its length
    fast = make_backend("llamacpp", loaded, threads=args.threads)
    ref = make_backend("torch", loaded)
    alone = LlamaAlone(fast.llama)
    hf = HFGenerate(loaded)
    print(f"model {loaded.name} | {platform.machine()} | threads {torch.get_num_threads()} | "
          f"{time.strftime('%Y-%m-%d %H:%M')} | repeats {repeats}", flush=True)
    ids = {n: prompt_ids(loaded, n) for n in lengths}
    first = lengths[0]
    for b in (fast, ref, alone):  # warm-up: first calls after loading are slow
        b.prefill(ids[first])
        b.decode_one(ids[first][0], first)
    hf.run(ids[first], 2)

    out: dict = {"machine": platform.node(), "threads": torch.get_num_threads(), "repeats": repeats,
                 "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "prefill_s": {}, "decode_ms": {}, "answer_s": {}, "eviction_ms": {}}
    paths = {"engine (llamacpp)": fast, "engine (torch)": ref, "llama.cpp alone": alone}

    print("\n== 1-2. prefill (s) and decode step (ms) at each prompt/cache size", flush=True)
    print(f"{'path':<20}" + "".join(f"{'prefill ' + str(n):>14}" for n in lengths) + "".join(f"{'step@' + str(n):>11}" for n in lengths))
    for name, b in paths.items():
        pre = {n: timed(lambda: b.prefill(ids[n]), repeats) for n in lengths}
        dec = {n: steps_ms(b, ids[n], steps) for n in lengths}
        out["prefill_s"][name], out["decode_ms"][name] = pre, dec
        print(f"{name:<20}" + "".join(f"{pre[n]:>14.3f}" for n in lengths) + "".join(f"{dec[n]:>11.1f}" for n in lengths), flush=True)
    carry = {}
    for n in lengths:  # the llamacpp prefill's extra work: the torch cache written into llama.cpp
        ref.prefill(ids[n])
        carry[n] = 1e3 * timed(lambda: fast.carry_cache(ref.cache, n), repeats)
    out["carry_ms"] = carry
    print(f"{'  of which carry ms':<20}" + "".join(f"{carry[n]:>14.1f}" for n in lengths), flush=True)
    pre = {n: timed(lambda: hf.run(ids[n], 1), repeats) for n in lengths}
    k = max(4, steps // 4)  # generate's steps: (time of 1+k tokens - time of 1) / k
    dec = {n: 1e3 * (timed(lambda: hf.run(ids[n], 1 + k), repeats) - pre[n]) / k for n in lengths}
    out["prefill_s"]["transformers generate"], out["decode_ms"]["transformers generate"] = pre, dec
    print(f"{'transformers generate':<20}" + "".join(f"{pre[n]:>14.3f}" for n in lengths) + "".join(f"{dec[n]:>11.1f}" for n in lengths), flush=True)

    print(f"\n== 3. a {answer_tokens}-token answer to a {answer_prompt}-token prompt, end to end (s)", flush=True)
    req = Request(prompt="(token ids given)", budget=3600.0, max_new_tokens=answer_tokens, fixed_eviction_ratio=0.0)
    for name, b in (("engine (llamacpp)", fast), ("engine (torch)", ref)):
        eng = BudgetedEngine(Estimator(loaded, GENEROUS), learn_online=False, backend=b)
        out["answer_s"][name] = timed(lambda: eng.generate(req, prompt_ids=ids[answer_prompt]), repeats)
    out["answer_s"]["llama.cpp alone"] = timed(lambda: alone.answer(ids[answer_prompt], answer_tokens), repeats)
    out["answer_s"]["transformers generate"] = timed(lambda: hf.run(ids[answer_prompt], answer_tokens), repeats)
    for name, t in out["answer_s"].items():
        print(f"{name:<22} {t:>7.2f} s", flush=True)
    speedup = out["answer_s"]["engine (torch)"] / out["answer_s"]["engine (llamacpp)"]
    print(f"engine llamacpp / engine torch: {1 / speedup:.2f}x the time ({speedup:.1f}x faster)")

    n = lengths[-1]
    print(f"\n== 4. engine decode step (ms) at eviction ratios of a {n}-token prompt (SnapKV)", flush=True)
    for name, b in (("engine (llamacpp)", fast), ("engine (torch)", ref)):
        row = {a: steps_ms(b, ids[n], steps, make_press("snapkv", a, n)) for a in EVICTIONS}
        out["eviction_ms"][name] = row
        print(f"{name:<20}" + "".join(f"  {a:.2f}: {row[a]:6.1f}" for a in EVICTIONS)
              + f"   step(0) / step(0.95) = {row[0.0] / row[0.95]:.2f}", flush=True)

    path = pathlib.Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    name = "speed_bench_quick.json" if args.quick else "speed_bench.json"
    (path / name).write_text(json.dumps(out, indent=1, default=str))
    print(f"\nfigures: {path / name}")
    plot(out, (path / name).with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
