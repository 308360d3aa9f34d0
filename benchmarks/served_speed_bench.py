"""How well is the first goal after a start predicted? The served speed across restarts.

Starts `timebill_ros bringup` (the embedded model, this machine's cached timing model) --starts
times in a row, sends --goals goals to each, and prints each goal's predicted and measured time.
The timing model is profiled with the machine idle; served, decoding shares the CPU with the
action server, the predictor node and the client. Within one start the online calibration
learns that from the first job on; the generation node also writes it next to the timing model
(`<timing model>.served.json`), so the next start begins from it (timebill/served_speed.py).
``--forget`` sets the served-speed files aside first, to see a start without one.

    source scripts/env.sh
    python benchmarks/served_speed_bench.py --forget --starts 2 --goals 3     # ~2 minutes
    python benchmarks/served_speed_bench.py --starts 1 --goals 4 --long --param threads:=1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

PROMPT = "What should a robot do when its battery is low?"
# About 1,000 tokens: prefill-bound, where more threads pay even while serving.
LONG_PROMPT = " ".join(["The robot moved from the kitchen to the hallway and checked the red cup on the table."] * 50
                       ) + " Where is the cup?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--goals", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--budget", type=float, default=8.0)
    ap.add_argument("--forget", action="store_true", help="set this machine's *.served.json files aside first")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="a node parameter")
    ap.add_argument("--long", action="store_true", help="every second goal asks about a ~1,000-token text")
    ap.add_argument("--domain", type=int, default=74)
    args = ap.parse_args()

    from timebill.time_model import default_time_model_path

    if args.forget:
        folder = default_time_model_path("any", 0, None).parent
        for f in folder.glob("*.served.json"):
            aside = f.with_name(f.name + f".{int(time.time())}.aside")
            f.replace(aside)
            print(f"set aside {f} -> {aside.name}")

    from bringup_session import ready_session
    from timebill_ros.convert import seconds

    rows = []  # (start, goal, predicted, measured)
    log_dir = tempfile.mkdtemp(prefix="timebill-served-")
    for start in range(1, args.starts + 1):
        with ready_session(args.domain, args.param, log_dir, f"bringup-{start}.log") as (client, log):
            for goal in range(1, args.goals + 1):
                prompt = LONG_PROMPT if args.long and goal % 2 == 0 else PROMPT
                r = client.ask(prompt, args.budget, max_new_tokens=args.max_new_tokens, policy="skip_next",
                               timeout=args.budget + 60)
                rows.append((start, goal, seconds(r.predicted_time), seconds(r.elapsed), r.generated_tokens,
                             r.prompt_tokens, seconds(r.prefill_time)))
                print(f"  start {start} goal {goal}: predicted {rows[-1][2]:.3f} s, took {rows[-1][3]:.3f} s "
                      f"({r.prompt_tokens} prompt tokens, prefill {rows[-1][6]:.3f} s, {r.generated_tokens} "
                      f"tokens)", flush=True)
        with open(log) as f:
            said = [line.strip() for line in f if "served speed" in line]
        print(f"  start {start}: {said[0] if said else 'no served speed on record'}", flush=True)

    print(f"\n'{PROMPT}', {args.max_new_tokens} new tokens, Skip-Next, budget {args.budget} s"
          f"{', ' + ' '.join(args.param) if args.param else ''}")
    print(f"{'start':>5} {'goal':>4} {'prompt':>6} {'prefill s':>9} {'predicted s':>11} {'took s':>7} "
          f"{'took/predicted':>14} {'tokens':>6}")
    for start, goal, pred, took, tokens, prompt_tokens, prefill in rows:
        print(f"{start:>5} {goal:>4} {prompt_tokens:>6} {prefill:>9.3f} {pred:>11.3f} {took:>7.3f} "
              f"{took / pred if pred else float('nan'):>14.2f} {tokens:>6}")
    for label, sel in (("first goal of the first start", lambda s, g: s == 1 and g == 1),
                       ("first goal of later starts", lambda s, g: s > 1 and g == 1),
                       ("later goals", lambda s, g: g > 1)):
        ratios = [took / pred for s, g, pred, took, *_ in rows if sel(s, g) and pred > 0]
        if ratios:
            print(f"{label}: median took/predicted {statistics.median(ratios):.2f} ({len(ratios)} goals)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
