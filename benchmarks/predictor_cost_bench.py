"""What the length predictor adds to a job's time: read from the served prefill, or its own pass.

For prompts of several lengths, on the served path (the configured backend, the shipped head):
  prefill     the prefill with the press evicting inside it (ratio 0.5), no prediction
  in prefill  the prefill with DeferredPress: the press scores, the head reads the prompt's states,
              then the same ratio is applied (what `predict_in_prefill: true` serves)
  own pass    the head's own pass (`RLPPredictor.predict`: its first L layers over the prompt cut
              to its input bound), which runs before the prefill when `predict_in_prefill` is off
Medians of --repeats runs, alternated so that drifts of the machine's speed hit both alike.

    source scripts/env.sh
    python benchmarks/predictor_cost_bench.py --out docs/bench
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="40,128,512,1024")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from timebill.config import load_config
    from timebill.deferred_press import DeferredPress
    from timebill.presses import make_press
    from timebill.runtime import build_engine

    cfg = load_config()
    engine = build_engine(cfg, progress=False)
    predictor, backend, press = engine.estimator.length_predictor, engine.backend, engine.estimator.press
    if not hasattr(predictor, "from_state"):
        print(f"the configured length predictor ({predictor.name}) does not read hidden states", file=sys.stderr)
        return 2
    layer = predictor.state_layer
    vocab = int(engine.loaded.model.config.vocab_size)
    rows = []
    for n in [int(x) for x in args.lengths.split(",")]:
        ids = [(1000 + 7 * i) % vocab for i in range(n)]
        times = {"prefill": [], "in_prefill": [], "own_pass": []}
        for r in range(args.repeats + 1):  # the first round warms up, untimed
            t0 = time.perf_counter()
            backend.prefill(ids, make_press(press, 0.5, n))
            t1 = time.perf_counter()
            backend.prefill(ids, DeferredPress(press, n, layer, lambda s: (predictor.from_state(s, 256), 0.5)[1]))
            t2 = time.perf_counter()
            predictor.predict(ids, 256)
            t3 = time.perf_counter()
            if r:
                times["prefill"].append(t1 - t0)
                times["in_prefill"].append(t2 - t1)
                times["own_pass"].append(t3 - t2)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"prompt_tokens": n, **{f"{k}_s": round(v, 4) for k, v in med.items()},
               "in_prefill_added_pct": round(100 * (med["in_prefill"] - med["prefill"]) / med["prefill"], 2),
               "own_pass_added_pct": round(100 * med["own_pass"] / med["prefill"], 2),
               "reads_states": bool(predictor.reads_states_of(n))}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'prompt':>7} {'prefill s':>10} {'in prefill s':>13} {'added':>7} {'own pass s':>11} {'added':>7}")
    for r in rows:
        print(f"{r['prompt_tokens']:>7} {r['prefill_s']:>10.4f} {r['in_prefill_s']:>13.4f} {r['in_prefill_added_pct']:>6.1f}% "
              f"{r['own_pass_s']:>11.4f} {r['own_pass_added_pct']:>6.1f}%")
    print(f"(head: {predictor.name}, reads the state after layer {layer}; backend {backend.name}; press {press})")
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictor_cost_bench.json").write_text(json.dumps(
            {"rows": rows, "head": predictor.name, "backend": backend.name, "press": press, "repeats": args.repeats,
             "command": "python benchmarks/predictor_cost_bench.py " + " ".join(sys.argv[1:])}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
