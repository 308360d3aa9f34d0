"""How often a goal is answered INFEASIBLE: the old default against the new one (issue 11).

24 short everyday requests of the kind a robot's user sends (written here, in no data set of the
project; about 40-120 prompt tokens with the chat template), at budgets of 3 s and 10 s, planned with the
real model, the shipped length predictor and this machine's timing model, through the `timebill`
core API, as configured by default (config/timebill.yaml) except for the planner:

* old default: `planner: paper`, INFEASIBLE when the expected answer does not fit at the chosen
  ratio (the engine's admission rule before issue 11: `not plan.expected_fits`);
* new default: `planner: budget`, INFEASIBLE only when nothing useful fits (`not plan.useful_fits`).

With `--generate` the new default also serves every goal under Kill (the engine, for real) and the
outcomes, tokens and ratios are reported.

  python benchmarks/infeasible_bench.py [--generate] [--prompts N] [--config my.yaml] [--out /tmp/infeasible.json]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections import Counter
from statistics import mean

from timebill.config import load_config
from timebill.engine import BudgetedEngine
from timebill.request import Request
from timebill.runtime import build_estimator

BUDGETS = (3.0, 10.0)
ROOM = ("The robot is in a two-room flat: a kitchen with a fridge, a sink, a cupboard over the sink and a "
        "drawer of cutlery, and a living room with a sofa, a low table, a bookshelf and a window to the "
        "street. The owner is on the sofa. ")
PROMPTS = (
    "Where is the red cup usually kept in a kitchen?",
    "What should I do if I smell gas at home?",
    "How long should I boil an egg for a soft yolk?",
    "Is it safe to put a metal bowl in the microwave?",
    "What is a good way to fold a fitted sheet?",
    "Why does bread go stale?",
    "How do I remove a coffee stain from a white shirt?",
    "Can you suggest a quick breakfast without eggs?",
    "What temperature should a fridge be set to?",
    "How often should houseplants be watered?",
    "Name three things to pack for a day at the beach.",
    "What is the difference between baking soda and baking powder?",
    "Should I turn off the lights when I leave a room for five minutes?",
    "How can I tell if milk has gone bad?",
    "What is a polite way to decline an invitation?",
    "Explain in one sentence what a robot vacuum does.",
    ROOM + "Where would you look first for a spoon?",
    ROOM + "The owner asks for a glass of water. List the steps you would take.",
    ROOM + "Which room is better for reading a book in the afternoon, and why?",
    ROOM + "The owner dropped a book behind the sofa. What should you do?",
    ROOM + "Is there anything in the kitchen that could be dangerous for a small child? Answer briefly.",
    ROOM + "The doorbell rings while the owner is asleep on the sofa. What do you do?",
    ROOM + "Describe the living room to someone who cannot see it.",
    ROOM + "What could you do to make the flat tidier before guests arrive? Give a short list.",
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generate", action="store_true", help="also serve every goal with the new default under Kill")
    ap.add_argument("--config", help="configuration file (default: the shipped config/timebill.yaml)")
    ap.add_argument("--out", help="write the per-goal figures as JSON here")
    ap.add_argument("--prompts", type=int, default=len(PROMPTS), help="only the first N prompts (a quick check)")
    args = ap.parse_args(argv)
    prompts = PROMPTS[: max(1, args.prompts)]
    cfg = load_config(args.config)
    old = build_estimator({**cfg, "planner": "paper"})
    new = build_estimator({**cfg, "planner": "budget"}, loaded=old.loaded)
    rows = []
    for prompt in prompts:
        for budget in BUDGETS:
            req = Request(prompt, budget=budget, policy="kill")
            ids = new.encode(req)
            length = new.length_predictor.predict(ids, new.max_new_tokens(req))  # one prediction, both planners
            o = old.estimate(req, prompt_ids=ids, length=length).plan
            n = new.estimate(req, prompt_ids=ids, length=length).plan
            rows.append({"prompt_tokens": len(ids), "budget": budget, "predicted_tokens": n.predicted_tokens,
                         "bound": n.predicted_tokens_bound,
                         "old_eviction_ratio": o.eviction_ratio, "old_infeasible": not o.expected_fits,
                         "new_eviction_ratio": n.eviction_ratio, "new_infeasible": not n.useful_fits,
                         "tokens_that_fit": n.tokens_that_fit, "predicted_total": n.predicted_total})
    print(f"{len(prompts)} prompts, {min(r['prompt_tokens'] for r in rows)}-{max(r['prompt_tokens'] for r in rows)} "
          f"prompt tokens; predicted length {mean(r['predicted_tokens'] for r in rows):.1f} tokens on average "
          f"(bound {mean(r['bound'] for r in rows):.1f}); length predictor: {getattr(new.length_predictor, 'name', '?')}")
    for b in BUDGETS:
        rs = [r for r in rows if r["budget"] == b]
        print(f"budget {b:g} s: INFEASIBLE old default {sum(r['old_infeasible'] for r in rs)}/{len(rs)} "
              f"(eviction ratio {mean(r['old_eviction_ratio'] for r in rs):.2f} on average), new default "
              f"{sum(r['new_infeasible'] for r in rs)}/{len(rs)} (eviction ratio {mean(r['new_eviction_ratio'] for r in rs):.2f}); "
              f"tokens expected to fit {mean(r['tokens_that_fit'] for r in rs):.1f} on average")
    if args.generate:
        engine = BudgetedEngine(new, reject_infeasible=bool(cfg.get("reject_infeasible", True)))
        engine.warm_up()
        for r, (prompt, budget) in zip(rows, [(p, b) for p in prompts for b in BUDGETS]):
            res = engine.generate(Request(prompt, budget=budget, policy="kill"))
            r.update(outcome=res.outcome.value, tokens=res.generated_tokens, eviction_ratio=res.eviction_ratio,
                     late=max(0.0, res.total_time - budget), text=res.text[:120])
        for b in BUDGETS:
            rs = [r for r in rows if r["budget"] == b]
            counts = Counter(r["outcome"] for r in rs)
            print(f"served at {b:g} s (new default, Kill): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                  + f"; {mean(r['tokens'] for r in rs):.1f} tokens on average; latest result "
                  f"{1e3 * max(r['late'] for r in rs):.0f} ms after the deadline; eviction ratio > 0 in "
                  f"{sum(r['eviction_ratio'] > 0 for r in rs)}")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
