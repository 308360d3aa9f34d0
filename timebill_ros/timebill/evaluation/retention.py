"""Measure the retention curves the score planner plans with (timebill/retention.py), for any model and press.

  timebill retention                      # the configured model and press, 40 prompts per kind
  timebill retention --prompts 10 --out my_curves.yaml

Each prompt is answered to completion (greedy, no deadline) at each of the ratios the planner's
candidates are interpolated between; a prompt's prefill is computed once for all its ratios
(prefill_once.py). Prompts come from the ``train`` halves of the evaluation's data sets (never the
halves the evaluation scores), one set per kind of request:

* ``long`` (NarrativeQA: a story and a question, free text): mean ROUGE-L against the references
  at the ratio over the same at no eviction. Against the unevicted answer a paraphrase of an
  equally right answer scores ~0.6 already at ratio 0.25, while its score against the references
  does not fall at all; the planner weighs what the answer is worth, so the reference score.
* ``choice`` (QASPER yes/no: a paper and a yes/no question): how often the answer's yes/no agrees
  with the unevicted answer's.
* ``short`` (everyday questions, no context): ROUGE-L against the unevicted answer (references
  reward the brief answers a damaged question gets: evicting half of it scores higher).

Each curve is made non-increasing in the ratio (pool adjacent violators: more eviction never
measures as better beyond the noise of its prompts) and capped at 1. The answers are kept as JSON lines in the cache's
``retention/`` folder, so an interrupted run resumes. Needs the evaluation data: ``scripts/setup.sh --eval``.
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import numpy as np

from . import metrics
from .methods import recorder_engine
from .records import Recorder
from .tasks import TASKS

RATIOS = (0.0, 0.25, 0.5, 0.75, 0.95)
KIND_TASKS = {"long": "narrativeqa", "choice": "qasper", "short": "everyday"}


def quality_per_ratio(kind: str, items, answers: dict) -> list[float]:
    """``answers[(item id, ratio)]``: the answer text. Quality relative to no eviction, per ratio."""
    by_id = {it.id: it for it in items}
    if kind == "long":
        def score(i, a):
            return metrics.best(metrics.rouge_l, answers[(i, a)], list(by_id[i].references))
        base = float(np.mean([score(i, 0.0) for i in by_id]))
        return [1.0] + [float(np.mean([score(i, a) for i in by_id])) / base if base > 0 else 0.0 for a in RATIOS[1:]]
    if kind == "choice":
        return [1.0] + [float(np.mean([metrics.yes_no(answers[(i, a)]) == metrics.yes_no(answers[(i, 0.0)]) for i in by_id]))
                        for a in RATIOS[1:]]
    return [1.0] + [float(np.mean([metrics.rouge_l(answers[(i, a)], answers[(i, 0.0)]) for i in by_id])) for a in RATIOS[1:]]


def monotone(quality: list[float]) -> list[float]:
    """The closest non-increasing curve (least squares: pool adjacent violators), from 1 at ratio 0,
    in [0, 1]. A running minimum instead would carry one noisy low point to every larger ratio."""
    blocks = []  # [mean, count]
    for q in [min(max(q, 0.0), 1.0) for q in quality]:
        blocks.append([q, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            (m2, n2), (m1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    return [m for m, n in blocks for _ in range(n)]


def measure(cfg: dict, prompts: int, out: pathlib.Path | None = None, context_cap: int = 1536, say=print):
    """Measure and write the curves to ``out`` (None: the cache's curve for the model and press,
    which `retention: auto` reads); the answers are kept beside that cached curve."""
    from tqdm import tqdm

    from ..retention import Retention, RetentionCurve, cached_path
    from ..runtime import configured_press, load_configured_model

    loaded = load_configured_model(cfg)
    press = configured_press(cfg)
    cached = cached_path(loaded.name, press, cfg.get("cache_dir") or None)
    out = out or cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    engine = recorder_engine(cfg, loaded, say)
    curves, table = {}, []
    for kind, tname in KIND_TASKS.items():
        task = TASKS[tname]
        if task.context_cap:  # a copy: the evaluation's task keeps its own cap
            task = dataclasses.replace(task, context_cap=context_cap)
        items = task.load(prompts, split="train")
        recorder = Recorder(engine, cached.parent / f"records-{loaded.name}-{press}-{tname}.jsonl")
        answers = {}
        for it in tqdm(items, desc=f"retention {kind} ({tname}, train half)", dynamic_ncols=True):
            prompt = task.prompt(it, loaded.tokenizer)
            for a in RATIOS:
                answers[(it.id, a)] = recorder.get(it.id, prompt, task.system, a, task.max_new_tokens)["text"]
        raw = quality_per_ratio(kind, items, answers)
        curves[kind] = RetentionCurve(RATIOS, tuple(monotone(raw)), len(items))
        table.append((kind, tname, len(items), raw))
    retention = Retention(curves, source=str(out))
    how = (f"`timebill retention --prompts {prompts}`: train halves of NarrativeQA (long), QASPER yes/no (choice), "
           f"everyday questions (short); context cap {context_cap} tokens")
    retention.save(out, loaded.name, press, how)
    say(f"| kind | data (train half) | prompts | " + " | ".join(f"ratio {a:.2f}" for a in RATIOS) + " |")
    say("|---|---|---|" + "---|" * len(RATIOS))
    for kind, tname, n, raw in table:
        say(f"| {kind} | {tname} | {n} | " + " | ".join(f"{q:.3f}" for q in raw) + " |")
    say(f"(as measured; the curves written to {out} are made non-increasing and capped at 1)")
    return retention, table


def main(argv=None) -> int:
    from ..config import load_config

    ap = argparse.ArgumentParser(prog="timebill retention", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=40, help="prompts per kind of request")
    ap.add_argument("--out", help="YAML to write (default: the cache's curve for the model and press, which `retention: auto` reads)")
    ap.add_argument("--config")
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)
    if args.prompts < 2:
        print("--prompts must be at least 2", file=sys.stderr)
        return 2
    cfg = load_config(args.config, overrides={"model": args.model, "threads": args.threads})
    try:
        measure(cfg, args.prompts, pathlib.Path(args.out) if args.out else None)
    except FileNotFoundError as exc:
        print(f"error: {exc} (the evaluation data: scripts/setup.sh --eval)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
