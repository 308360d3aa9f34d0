"""A labels file read back: the labelled records, their splits, and the cap they were made with.
Shared by `rlp label` (counts), `rlp train` and `rlp eval`."""
from __future__ import annotations

from .data import split_of
from .labels import read_labels

SPLITS = ("train", "val", "test")


def labelled(path) -> list[dict]:
    """The records of ``path`` that carry a length (a torn or unfinished one does not)."""
    return [r for r in read_labels(path).values() if "length" in r]


def split_indices(recs: list[dict]) -> dict[str, list[int]]:
    """split -> positions in ``recs`` of its records."""
    return {s: [i for i, r in enumerate(recs) if split_of(r["id"]) == s] for s in SPLITS}


def print_label_counts(path) -> dict:
    recs = labelled(path)
    counts = {s: sum(split_of(r["id"]) == s for r in recs) for s in SPLITS}
    print(f"labels in {path}: {len(recs)} ({counts})")
    return counts


def named_caps(recs: list[dict]) -> set[int]:
    """The label caps the records name (labels of the mix carry theirs; the first, ShareGPT-only ones none)."""
    return {int(r["cap"]) for r in recs if "cap" in r}


def label_cap(recs: list[dict], given: int | None, cfg: dict) -> int:
    """The cap the labels were made with: ``--max-new-tokens``, else the one the records name,
    else the config's ``default_max_new_tokens``."""
    if given:
        return int(given)
    caps = named_caps(recs)
    if len(caps) > 1:
        raise SystemExit(f"the labels were made with several caps {sorted(caps)}: give --max-new-tokens")
    return caps.pop() if caps else int(cfg.get("default_max_new_tokens", 256))
