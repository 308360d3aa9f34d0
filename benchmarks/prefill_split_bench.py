"""How much of a prefill is left after the plan made inside it? The bare engine, default configuration.

A goal whose length is read from its own prefill is planned once the prefill's forward pass has run
(`Result.forward_time`); what follows (the plan itself, the eviction, the cache carried into
llama.cpp) is the rest of `Result.prefill_time`. The plan times the forward pass as it ran and adds
that rest as it took in the recent jobs nearest in prompt length (`OnlineCalibration.whole_prefill`):
this prints both parts per prompt length, to show how the rest grows with the length (and why a
share of the prefill does not describe it).

    source scripts/env.sh
    python benchmarks/prefill_split_bench.py --repeats 3      # about a minute
"""
from __future__ import annotations

import argparse
import statistics

PROMPTS = {
    "question": "What is the capital of France?",
    "yes/no": "Is the sky blue? Answer yes or no.",
    "steps": "Give me step by step instructions to pick up a red cup from the table and place it in the sink.",
    "report": "The robot moved. " * 100 + "Why?",
    "log": "The robot moved from the kitchen to the hallway and checked the red cup on the table. " * 50 + "Summarise.",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from timebill.config import load_config
    from timebill.request import Request
    from timebill.runtime import build_engine

    engine = build_engine(load_config(), progress=False)
    rows: dict[str, list] = {name: [] for name in PROMPTS}
    for r in range(args.repeats):
        for name, prompt in PROMPTS.items():
            res = engine.generate(Request(prompt=prompt, budget=60.0, max_new_tokens=4, policy="kill",
                                          length_control=False))
            rows[name].append(res)
        print(f"repeat {r + 1}/{args.repeats} done", flush=True)
    print("\n| prompt | prompt tokens | prefill (ms) | forward pass to the plan (ms) | after it (ms) | share after |")
    print("|---|---|---|---|---|---|")
    for name, results in rows.items():
        pre = statistics.median(x.prefill_time for x in results)
        fwd = statistics.median(x.forward_time for x in results)
        tail = statistics.median(x.prefill_time - x.forward_time for x in results)
        share = statistics.median((x.prefill_time - x.forward_time) / x.prefill_time for x in results)
        print(f"| {name} | {results[0].prompt_tokens} | {1e3 * pre:.0f} | {1e3 * fwd:.0f} | {1e3 * tail:.1f} | {100 * share:.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
