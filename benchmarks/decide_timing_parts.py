"""Where the evaluation's recorded runs depart from the profiled timing model, part by part.

  python benchmarks/decide_timing_parts.py                       # docs/eval/records-*-decide.jsonl
  python benchmarks/decide_timing_parts.py --records A.jsonl B.jsonl --time-model TM.yaml

A record's time is its prefill (for a prefill shared by the prompt's ratios, the shared prefill's
seconds plus this ratio's eviction and carry), its decoding steps, and what the loop did around
them. Each part is divided by what the profiled model (no online correction) predicts for it, per
data set and eviction ratio: measured/predicted medians. A part whose ratio is far from 1 is where
the planner's times go wrong; the online calibration corrects for the prefill and decoding scales
while serving, so this says what it has to correct.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from statistics import median

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "timebill_ros"))


def parts(rec: dict, tm) -> dict:
    n, kv, tokens, ratio = rec["prompt_tokens"], rec["cached"], rec["tokens"], rec["alpha"]
    steps = rec.get("steps") or []
    step_sum = sum(steps)
    around = rec["total"] - rec["prefill"] - step_sum
    predicted_steps = tm.decode(kv, tokens)  # tokens - 1 steps from the kept cache
    return {"total": rec["total"] / tm.end_to_end(n, tokens, ratio),
            "prefill": rec["prefill"] / (tm.prefill(n) + tm.evict_overhead(n, ratio)),
            "steps": step_sum / predicted_steps if predicted_steps > 0 and steps else None,
            "around_steps_ms_per_token": 1000 * around / max(tokens, 1)}


def main(argv=None) -> int:
    from timebill.runtime import default_time_model_path
    from timebill.models import EMBEDDED_NAME
    from timebill.time_model import TimeModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", nargs="*", default=sorted(str(p) for p in (ROOT / "docs/eval").glob("records-*-decide.jsonl")))
    ap.add_argument("--time-model", default=str(default_time_model_path(f"{EMBEDDED_NAME}-llamacpp", 2)))
    args = ap.parse_args(argv)
    tm = TimeModel.load(args.time_model)
    print(f"timing model {args.time_model}: prefill {tm.a:.3g} N^2 + {tm.b:.3g} N + {tm.c:.3g}; step {tm.p:.3g} N_kv + {tm.q:.3g}; "
          f"eviction {tm.r:.3g} N + {tm.s:.3g}")
    print("| records | ratio | runs | total | prefill (+ eviction, carry) | decoding steps | around the steps (ms a token) |")
    print("|---|---|---|---|---|---|---|")
    for path in args.records:
        recs = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
        recs = [r for r in recs if r["tokens"] > 0 and not r.get("variant")]
        for ratio in sorted({r["alpha"] for r in recs}):
            got = [parts(r, tm) for r in recs if r["alpha"] == ratio]
            if len(got) < 5:
                continue
            steps = [g["steps"] for g in got if g["steps"] is not None]
            print(f"| {pathlib.Path(path).stem} | {ratio:.2f} | {len(got)} | {median(g['total'] for g in got):.3f} | "
                  f"{median(g['prefill'] for g in got):.3f} | {median(steps) if steps else float('nan'):.3f} | "
                  f"{median(g['around_steps_ms_per_token'] for g in got):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
