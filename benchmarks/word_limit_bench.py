"""Does the model keep to length control's word limits? Read from the evaluation's own records.

Length control asks for "at most W words" and plans W x TOKENS_PER_WORD (1.3, a rule of thumb)
answer tokens. The evaluation records every prompt it ran, including each limited prompt (variant
"/wW") next to the same item's prompt as written at the same eviction ratio. This pairs them and
prints, per dataset and limit: the answer's median length in tokens as written and as limited, the
share of limited answers the model ended itself (EOS rather than the token cap), and the share
within the planned W x 1.3 tokens. Nothing is generated; the records come from

    python -m timebill.evaluation --preset full --out docs/eval

    source scripts/env.sh
    python benchmarks/word_limit_bench.py                      # docs/eval/records-*-full.jsonl
    python benchmarks/word_limit_bench.py --preset medium --plot /tmp/word_limits.png
"""
from __future__ import annotations

import argparse
import collections
import json
import pathlib
import statistics
import sys

from timebill.length_control import TOKENS_PER_WORD

REPO = pathlib.Path(__file__).resolve().parent.parent


def pairs(path: pathlib.Path) -> dict[int, list[tuple[dict, dict]]]:
    """word limit -> [(record as written, record as limited)] for the same item and ratio."""
    plain, limited = {}, collections.defaultdict(list)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        key = (r["item"], f"{r['alpha']:.4f}")  # the records' own name for the eviction ratio
        variant = r.get("variant", "")
        if not variant:
            plain[key] = r
        elif variant.startswith("/w"):
            limited[key].append((int(variant[2:]), r))
    out = collections.defaultdict(list)
    for key, recs in limited.items():
        if key in plain:
            for words, r in recs:
                out[words].append((plain[key], r))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="full", help="the records' preset (file suffix)")
    ap.add_argument("--records", default=str(REPO / "docs" / "eval"), help="folder of records-<task>-<preset>.jsonl")
    ap.add_argument("--plot", default=str(REPO / "docs" / "bench" / "word_limits.png"))
    args = ap.parse_args()
    files = sorted(pathlib.Path(args.records).glob(f"records-*-{args.preset}.jsonl"))
    if not files:
        print(f"no records-*-{args.preset}.jsonl in {args.records}: run python -m timebill.evaluation --preset "
              f"{args.preset} first", file=sys.stderr)
        return 2

    rows = []
    print(f"{'task':<12} {'limit':>6} {'pairs':>6} {'median as written':>18} {'median limited':>15} "
          f"{'ended by EOS':>13} {'within W x 1.3':>15}")
    for f in files:
        task = f.name[len("records-"):-len(f"-{args.preset}.jsonl")]
        for words, ps in sorted(pairs(f).items()):
            written = statistics.median(p["tokens"] for p, _ in ps)
            limited = statistics.median(r["tokens"] for _, r in ps)
            eos = sum(r["stop"] == "eos" for _, r in ps) / len(ps)
            within = sum(r["tokens"] <= words * TOKENS_PER_WORD for _, r in ps) / len(ps)
            rows.append((task, words, len(ps), written, limited))
            print(f"{task:<12} {words:>6} {len(ps):>6} {written:>18.0f} {limited:>15.0f} {eos:>12.0%} {within:>14.0%}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t for t, *_ in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r[0] == task]
        x = range(len(mine))
        ax.bar([i - 0.2 for i in x], [r[3] for r in mine], 0.4, label="as written")
        ax.bar([i + 0.2 for i in x], [r[4] for r in mine], 0.4, label="with the limit")
        ax.plot(list(x), [r[1] * TOKENS_PER_WORD for r in mine], "k_", ms=18, mew=2, label="W x 1.3 (planned)")
        ax.set_xticks(list(x), [f"W={r[1]}\n(n={r[2]})" for r in mine])
        ax.set_title(task)
        ax.set_ylabel("median answer tokens")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("Length control: answer length with 'Answer in at most W words.' (same items, same ratio)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
