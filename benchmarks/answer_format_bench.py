"""Constrained answers against free ones, through the nodes (issue 21): accuracy, time, completion
and the estimate's error, at budgets from tight to loose.

Starts `timebill_ros bringup` on the default configuration and sends, one at a time through
`TimeBillClient` (as a planner does), Kill goals of three kinds, each twice: with its answer
format (`choices=` / `json_schema=`) and free (the same prompt and the same instruction in the
system prompt, no constraint):

- `qasper`: QASPER's yes/no questions about a paper, eval half (timebill/evaluation; the paper
  cut to --context-cap tokens); choices yes / no; scored against the reference.
- `choice`: multiple-choice questions of our own making (benchmarks/data/choice_questions.json:
  rooms, objects, what a robot should do); a free answer counts when the first option it names is
  the right one.
- `json`: robot instructions to be answered as a JSON action (benchmarks/data/json_actions.json);
  valid = parses and validates against the schema; right = valid with the expected `action`.

Per kind, mode and budget: completion rate, valid-answer rate, accuracy, median end-to-end time,
and on completed goals the estimate's error |expected_time - elapsed| / elapsed (the expected time
the result says was estimated at acceptance).

    source scripts/env.sh
    python benchmarks/answer_format_bench.py --out docs/bench     # ~15 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def goals(qasper_n: int, context_cap: int):
    """(kind, id, prompt, system, format fields, judge(text) -> (valid, right)) of every question."""
    import dataclasses

    import jsonschema

    from timebill.config import load_config
    from timebill.evaluation import datasets
    from timebill.evaluation.metrics import yes_no
    from timebill.evaluation.tasks import TASKS
    from timebill.runtime import load_configured_model

    out = []
    task = dataclasses.replace(TASKS["qasper"], context_cap=context_cap)
    tok = load_configured_model(load_config()).tokenizer
    for item in datasets.qasper_yesno(qasper_n, split="eval"):
        ref = item.references[0]
        out.append(("qasper", item.id, task.prompt(item, tok), task.system, {"choices": ["yes", "no"]},
                    lambda text, ref=ref: (yes_no(text) in ("yes", "no"), yes_no(text) == ref)))
    for i, c in enumerate(json.loads((HERE / "data" / "choice_questions.json").read_text())):
        out.append(("choice", f"choice-{i}", c["q"], "", {"choices": c["options"]},
                    lambda text, c=c: _first_option(text, c["options"], c["answer"])))
    actions = json.loads((HERE / "data" / "json_actions.json").read_text())
    schema = actions["schema"]
    keys = ", ".join(schema["properties"]["action"]["enum"])
    for i, a in enumerate(actions["requests"]):
        prompt = f"{a['q']}\nReply as JSON with the keys action (one of {keys}) and object."

        def judge(text, want=a["action"]):
            try:
                value = json.loads(text)
                jsonschema.validate(value, schema)
            except (ValueError, jsonschema.ValidationError):
                return False, False
            return True, value["action"] == want
        out.append(("json", f"json-{i}", prompt, "", {"json_schema": json.dumps(schema)}, judge))
    return out


def _first_option(text: str, options, answer) -> tuple[bool, bool]:
    """(names an option, the first it names is ``answer``)."""
    low = text.lower()
    found = [(m.start(), o) for o in options for m in [re.search(r"\b" + re.escape(o.lower()) + r"\b", low)] if m]
    if not found:
        return False, False
    return True, min(found)[1] == answer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qasper", type=int, default=30, help="QASPER yes/no questions (eval half)")
    ap.add_argument("--context-cap", type=int, default=768, help="paper tokens kept in a QASPER prompt")
    ap.add_argument("--budgets", default="0.25,0.5,1,3", help="short prompts (choice, json)")
    ap.add_argument("--qasper-budgets", default="0.75,1.5,3,6")
    ap.add_argument("--kinds", default="qasper,choice,json")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="a node parameter")
    ap.add_argument("--domain", type=int, default=76)
    ap.add_argument("--out", default=None, help="folder for answer_format_bench.json and .png")
    ap.add_argument("--replot", default=None, metavar="JSON", help="only redraw the table and figure of an earlier run's file")
    args = ap.parse_args()
    if args.replot:
        summary = json.loads(pathlib.Path(args.replot).read_text())["summary"]
        print(table(summary))
        plot(pathlib.Path(args.replot).with_suffix(".png"), summary)
        return 0
    kinds = args.kinds.split(",")
    todo = [g for g in goals(args.qasper, args.context_cap) if g[0] in kinds]
    budgets = {"qasper": [float(b) for b in args.qasper_budgets.split(",")]}
    short = [float(b) for b in args.budgets.split(",")]

    from bringup_session import ready_session
    from timebill.answer_format import format_of
    from timebill.request import Request
    from timebill_ros.convert import OUTCOME_NAMES, seconds

    runs = [(g, mode, b) for g in todo for b in budgets.get(g[0], short) for mode in ("format", "free")]
    print(f"{len(todo)} questions, {len(runs)} goals (Kill), one at a time", flush=True)
    rows = []
    t_start = time.monotonic()
    with ready_session(args.domain, args.param) as (client, _log):
        client.ask("Hello!", 5.0, policy="kill", timeout=60)  # the first job teaches the served speed
        for i, ((kind, gid, prompt, system, fmt, judge), mode, budget) in enumerate(runs, 1):
            if mode == "free":  # the same instruction the format adds, without the constraint
                hint = format_of(Request(prompt, 1.0, **{k: tuple(v) if k == "choices" else v
                                                          for k, v in fmt.items()})).hint
                r = client.ask(prompt, budget, system_prompt=f"{system} {hint}".strip(), policy="kill",
                               timeout=budget + 60)
            else:
                r = client.ask(prompt, budget, system_prompt=system, policy="kill", timeout=budget + 60, **fmt)
            valid, right = judge(r.text)
            row = {"kind": kind, "id": gid, "mode": mode, "budget": budget, "outcome": OUTCOME_NAMES[r.outcome],
                   "text": r.text[:200], "valid": valid, "right": right, "closed_early": bool(r.closed_early),
                   "elapsed": seconds(r.elapsed), "expected_time": seconds(r.expected_time),
                   "predicted_time": seconds(r.predicted_time), "generated_tokens": r.generated_tokens,
                   "predicted_tokens": r.predicted_tokens, "prompt_tokens": r.prompt_tokens}
            rows.append(row)
            print(f"[{i}/{len(runs)}] {kind:6s} {mode:6s} {budget:4.2f} s {row['outcome']:10s} "
                  f"{'right' if right else 'valid' if valid else 'INVALID'} took {row['elapsed']:.3f} s, "
                  f"expected {row['expected_time']:.3f} s: {r.text[:50]!r}", flush=True)
    summary = summarise(rows)
    summary["duration_s"] = round(time.monotonic() - t_start, 1)
    summary["command"] = "python benchmarks/answer_format_bench.py " + " ".join(sys.argv[1:])
    print(table(summary))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "answer_format_bench.json").write_text(json.dumps({"summary": summary, "goals": rows}, indent=1))
        plot(out / "answer_format_bench.png", summary)
        print(f"wrote {out / 'answer_format_bench.json'} and {out / 'answer_format_bench.png'}")
    return 0


def summarise(rows: list[dict]) -> dict:
    cells = []
    for key in sorted({(r["kind"], r["mode"], r["budget"]) for r in rows}):
        sel = [r for r in rows if (r["kind"], r["mode"], r["budget"]) == key]
        done = [r for r in sel if r["outcome"] == "COMPLETED"]
        errs = [abs(r["expected_time"] - r["elapsed"]) / r["elapsed"] for r in done if r["elapsed"] > 0]
        cells.append({"kind": key[0], "mode": key[1], "budget": key[2], "goals": len(sel),
                      "completed": len(done) / len(sel), "valid": sum(r["valid"] for r in sel) / len(sel),
                      "accuracy": sum(r["right"] for r in sel) / len(sel),
                      "closed_early": sum(r["closed_early"] for r in sel),
                      "median_time": statistics.median(r["elapsed"] for r in sel),
                      "estimate_error_median": statistics.median(errs) if errs else None,
                      "estimate_error_mean": statistics.mean(errs) if errs else None})
    overall = {}
    for kind in sorted({r["kind"] for r in rows}):
        errs = [abs(r["expected_time"] - r["elapsed"]) / r["elapsed"] for r in rows
                if r["kind"] == kind and r["mode"] == "format" and r["outcome"] == "COMPLETED" and r["elapsed"] > 0]
        if errs:
            overall[kind] = {"completed_goals": len(errs), "estimate_error_median": statistics.median(errs),
                             "estimate_error_mean": statistics.mean(errs)}
    return {"cells": cells, "format_estimate_error": overall}


def table(summary: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f} %"

    lines = ["| kind | mode | budget (s) | goals | completed | valid | accuracy | closed early | median time (s) "
             "| estimate error, median / mean (completed) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in summary["cells"]:
        lines.append(f"| {c['kind']} | {c['mode']} | {c['budget']:g} | {c['goals']} | {pct(c['completed'])} | "
                     f"{pct(c['valid'])} | {pct(c['accuracy'])} | {c['closed_early']} | {c['median_time']:.3f} | "
                     f"{pct(c['estimate_error_median'])} / {pct(c['estimate_error_mean'])} |")
    lines.append("")
    for kind, o in summary["format_estimate_error"].items():
        lines.append(f"{kind} with its format, all budgets: estimate error median {pct(o['estimate_error_median'])}, "
                     f"mean {pct(o['estimate_error_mean'])} over {o['completed_goals']} completed goals")
    return "\n".join(lines)


def plot(path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({c["kind"] for c in summary["cells"]})
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 6.5), squeeze=False)
    for j, kind in enumerate(kinds):
        for mode, style in (("format", "-o"), ("free", "--s")):
            cs = [c for c in summary["cells"] if c["kind"] == kind and c["mode"] == mode]
            b = [c["budget"] for c in cs]
            axes[0][j].plot(b, [c["accuracy"] for c in cs], style, label=f"{mode}: right")
            axes[0][j].plot(b, [c["valid"] for c in cs], style, alpha=0.4, label=f"{mode}: valid")
            axes[1][j].plot(b, [c["completed"] for c in cs], style, label=f"{mode}: completed")
        axes[0][j].set_title(kind)
        ticks = sorted({c["budget"] for c in summary["cells"] if c["kind"] == kind})
        for ax in (axes[0][j], axes[1][j]):
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("budget (s)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        axes[1][0].legend(fontsize=7)
    axes[0][0].set_ylabel("share of goals")
    axes[1][0].set_ylabel("share completed")
    fig.suptitle("Answer formats through the nodes, under Kill: constrained vs free")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
