"""What an answer cut at the deadline is worth against the complete one (the value of a KILLED answer).

  python benchmarks/cut_answer_value.py          # docs/eval/records-{narrativeqa,qasper}-decide.jsonl

Each unevicted answer of the evaluation's records is cut after 25, 50 and 75 % of its words (Kill
stops between tokens, so the partial text is a prefix) and scored as the evaluation scores a complete
one (NarrativeQA: ROUGE-L against the references; QASPER: yes/no accuracy). Printed: the mean score
of the cut answers over the mean score of the complete ones. The score planner counts a cut answer
as worth nothing under Kill, as the evaluation does; this says what that leaves out.
"""
from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "timebill_ros"))


def main() -> int:
    from timebill.evaluation import datasets, metrics

    scorers = {
        "narrativeqa": (datasets.narrativeqa, lambda text, it: metrics.best(metrics.rouge_l, text, list(it.references))),
        "qasper": (datasets.qasper_yesno, lambda text, it: metrics.yes_no_accuracy(text, it.references[0])),
    }
    print("| data set | answers | cut after 25 % of the words | 50 % | 75 % |")
    print("|---|---|---|---|---|")
    for name, (load, score) in scorers.items():
        path = ROOT / "docs" / "eval" / f"records-{name}-decide.jsonl"
        recs = {r["item"]: r for r in map(json.loads, path.read_text().splitlines())
                if r["alpha_key"] == "0.0000" and not r.get("variant")}
        items = [it for it in load(10_000) if it.id in recs]
        full = sum(score(recs[it.id]["text"], it) for it in items)
        cells = []
        for share in (0.25, 0.5, 0.75):
            cut = 0.0
            for it in items:
                words = recs[it.id]["text"].split()
                cut += score(" ".join(words[: int(len(words) * share)]), it)
            cells.append(f"{cut / full:.3f}" if full else "-")
        print(f"| {name} | {len(items)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
