"""Why served decoding steps are slower than the profile's: the same prompt's steps timed three ways.

  python benchmarks/decode_step_probe.py --tokens 800 --rounds 3

In one process, on the default configuration's engine (llamacpp backend), a natural-text prompt of
about ``--tokens`` tokens (NarrativeQA-like prose from the package's own docs, repeated) is
prefilled and decoded 32 steps:

* ``profile``: as ``timebill.profiler.measure`` times them: ``backend.prefill`` then
  ``backend.decode_one`` of one token in a tight loop, on the calling thread;
* ``profile on the compute thread``: the same loop run through ``timebill.compute_thread`` (where
  the engine runs its jobs);
* ``engine``: ``BudgetedEngine.generate`` of the prompt at eviction ratio 0 with 32 new tokens
  (loops not ended), its recorded step times.

Printed per round: each way's median step (ms) and the timing model's prediction for that cache.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
from statistics import median

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "timebill_ros"))

STEPS = 32


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=800)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from timebill import compute_thread
    from timebill.config import load_config
    from timebill.request import Request
    from timebill.runtime import build_engine, load_configured_model

    cfg = load_config(overrides={"loop_window_tokens": 0})
    loaded = load_configured_model(cfg)
    engine = build_engine(cfg, loaded, learn_online=False)
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"][: args.tokens]
    prompt = loaded.tokenizer.decode(ids) + "\n\nSummarise the text above."
    tm = engine.estimator.calibration.base
    backend = engine.backend

    def profile_loop() -> list[float]:
        ids_now = loaded.encode_chat(prompt, "")
        backend.prefill(ids_now)
        steps, tok = [], ids_now[-1]
        for i in range(STEPS):
            t0 = time.perf_counter()
            backend.decode_one(tok, len(ids_now) + i)
            steps.append(time.perf_counter() - t0)
        return steps

    print(f"| round | cache | profile (ms) | profile on the compute thread (ms) | engine (ms) | timing model (ms) |")
    print("|---|---|---|---|---|---|")
    for r in range(args.rounds):
        plain = profile_loop()
        threaded = compute_thread.run(profile_loop)
        res = engine.generate(Request(prompt, budget=3600.0, max_new_tokens=STEPS + 1, fixed_eviction_ratio=0.0))
        n = res.prompt_tokens
        print(f"| {r + 1} | {n} | {1000 * median(plain):.2f} | {1000 * median(threaded):.2f} | "
              f"{1000 * median(res.step_times):.2f} ({len(res.step_times)} steps) | {1000 * tm.decode_step(n + STEPS // 2):.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
