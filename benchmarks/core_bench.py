"""Benchmark of the TimeBill core on this machine (prints figures; not a test).

In one run:
  1. ETE accuracy: the timing model's mean absolute percentage error (MAPE) for prefill and for
     decoding steps at prompt/cache lengths it was not fitted on;
  2. decode speed: the engine's own loop against `model.generate` on the same prompt and length
     (tokens/s, median of repeats, and their ratio);
  3. lateness under Kill: result time minus deadline over many jobs across budgets (a PNG too).

  python benchmarks/core_bench.py [--model embedded] [--repeats 3] [--out docs/bench]
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

from timebill.engine import BudgetedEngine
from timebill.estimator import Estimator
from timebill.models import load_model
from timebill.profiler import DEFAULT_LENGTHS, fit, mape, measure
from timebill.request import Outcome, Request

HELD_OUT = (96, 320, 896, 1792)
STORY = ("The robot left the charging dock at dawn, crossed the warehouse, and checked every shelf for "
         "misplaced boxes. It found three in aisle four and one near the loading bay. ")


def ete_accuracy(loaded, repeats: int):
    print("== 1. timing model (ETE) on held-out lengths", flush=True)
    pre, dec, _ = measure(loaded, lengths=DEFAULT_LENGTHS, repeats=repeats)
    tm = fit(pre, dec, model_name=loaded.name)
    hpre, hdec, _ = measure(loaded, lengths=HELD_OUT, repeats=repeats)
    rows = [(n, t, tm.prefill(n), nd, td, tm.decode_step(nd)) for (n, t), (nd, td) in zip(hpre, hdec)]
    print(f"{'N':>6} {'prefill s':>10} {'predicted':>10} {'N_kv':>6} {'step ms':>8} {'predicted':>10}")
    for n, t, pt, nd, td, pd in rows:
        print(f"{n:>6} {t:>10.3f} {pt:>10.3f} {nd:>6} {td * 1e3:>8.1f} {pd * 1e3:>10.1f}")
    out = {
        "prefill_mape_pct": mape([r[2] for r in rows], [r[1] for r in rows]),
        "decode_step_mape_pct": mape([r[5] for r in rows], [r[4] for r in rows]),
        "fit": {k: v for k, v in tm.fit.items() if k != "points"},
        "coefficients": {"a": tm.a, "b": tm.b, "c": tm.c, "p": tm.p, "q": tm.q},
    }
    print(f"held-out MAPE: prefill {out['prefill_mape_pct']:.2f} %, decode step {out['decode_step_mape_pct']:.2f} %")
    return tm, out


def decode_speed(loaded, tm, repeats: int, new_tokens: int = 64):
    import torch

    print(f"\n== 2. decode speed: engine loop vs model.generate ({new_tokens} tokens, greedy, no eviction)", flush=True)
    # No end of turn: both must produce exactly new_tokens tokens.
    no_eos = dataclasses.replace(loaded, eos_token_ids=[])
    engine = BudgetedEngine(Estimator(no_eos, tm, default_max_new_tokens=new_tokens), learn_online=False)
    engine.warm_up()
    prompt = "Describe, step by step, how a mobile robot should plan a path through a busy warehouse."
    ids = loaded.encode_chat(prompt)
    input_ids = torch.tensor([ids])
    eng, hf = [], []
    for _ in range(repeats):
        r = engine.generate(Request(prompt, budget=3600, max_new_tokens=new_tokens, fixed_eviction_ratio=0.0))
        assert r.generated_tokens == new_tokens, r
        eng.append((new_tokens - 1) / r.decode_time)
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = loaded.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=new_tokens,
                                        min_new_tokens=new_tokens, do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id)
            total = time.perf_counter() - t0
        assert out.shape[1] - len(ids) == new_tokens
        # generate's time includes its prefill: subtract the engine's measured prefill of the same prompt.
        hf.append((new_tokens - 1) / max(1e-9, total - r.prefill_time))
    res = {"engine_tokens_per_s": median(eng), "generate_tokens_per_s": median(hf), "ratio": median(eng) / median(hf),
           "prompt_tokens": len(ids), "new_tokens": new_tokens, "repeats": repeats}
    print(f"engine {res['engine_tokens_per_s']:.1f} tok/s | model.generate {res['generate_tokens_per_s']:.1f} tok/s | "
          f"ratio {res['ratio']:.3f}")
    return res


def lateness(loaded, tm, budgets, per_budget: int, out_dir: pathlib.Path):
    print(f"\n== 3. lateness under Kill ({per_budget} jobs per budget)", flush=True)
    # The prompt as written (no length control): this measures how late Kill stops a long answer.
    engine = BudgetedEngine(Estimator(loaded, tm, default_max_new_tokens=512, length_control=False), reject_infeasible=False,
                            learn_online=False)
    engine.warm_up()
    prompt = STORY * 6 + "\nWhat did the robot find, and where? Answer in detail, then list what it should do next."
    rows, all_late = [], []
    for b in budgets:
        late, outcomes = [], []
        for _ in range(per_budget):
            r = engine.generate(Request(prompt, budget=b, max_new_tokens=512, policy="kill"))
            late.append(r.total_time - b)
            outcomes.append(r.outcome.value)
        all_late += late
        killed = sum(o == Outcome.KILLED.value for o in outcomes)
        rows.append({"budget_s": b, "median_ms": 1e3 * median(late), "max_ms": 1e3 * max(late),
                     "late_jobs": sum(x > 0 for x in late), "killed": killed, "jobs": per_budget})
        print(f"budget {b:5.2f} s | lateness median {rows[-1]['median_ms']:+7.1f} ms, max {rows[-1]['max_ms']:+7.1f} ms | "
              f"late {rows[-1]['late_jobs']}/{per_budget} | killed {killed}/{per_budget}", flush=True)
    arr = np.array(all_late) * 1e3
    summary = {"jobs": len(arr), "median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
               "max_ms": float(arr.max()), "late_fraction": float(np.mean(arr > 0))}
    print(f"all {summary['jobs']} jobs: lateness median {summary['median_ms']:+.1f} ms, p90 {summary['p90_ms']:+.1f} ms, "
          f"max {summary['max_ms']:+.1f} ms, late {100 * summary['late_fraction']:.0f} %")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(arr, bins=30, color="#4477aa")
        ax.axvline(0, color="k", lw=1)
        ax.set_xlabel("result time - deadline (ms)  [< 0: early]")
        ax.set_ylabel("jobs")
        ax.set_title(f"Lateness under Kill, {loaded.name}, {len(arr)} jobs")
        fig.tight_layout()
        fig.savefig(out_dir / "lateness_kill.png", dpi=120)
        print(f"plot: {out_dir / 'lateness_kill.png'}")
    except ImportError:
        print("(matplotlib not installed: no plot)")
    return {"per_budget": rows, "all": summary}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budgets", default="0.5,1,1.5,2,3,4")
    ap.add_argument("--per-budget", type=int, default=5)
    ap.add_argument("--out", default="docs/bench")
    args = ap.parse_args(argv)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_model(args.model, threads=args.threads)
    print(f"model {loaded.name} | {platform.processor() or platform.machine()} | threads {args.threads} | "
          f"{time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    tm, ete = ete_accuracy(loaded, args.repeats)
    speed = decode_speed(loaded, tm, args.repeats)
    late = lateness(loaded, tm, [float(b) for b in args.budgets.split(",")], args.per_budget, out_dir)
    (out_dir / "core_bench.json").write_text(json.dumps({"model": loaded.name, "date": time.strftime("%Y-%m-%d %H:%M"),
                                                         "ete": ete, "decode_speed": speed, "lateness_kill": late}, indent=2))
    print(f"figures: {out_dir / 'core_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
