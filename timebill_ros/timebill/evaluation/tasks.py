"""The evaluation's tasks (data set, prompt, score, budgets) and presets (how many prompts)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..request import Request
from . import datasets, metrics


@dataclass
class Task:
    name: str
    load: Callable[[int], list]
    system: str
    question_suffix: str
    max_new_tokens: int
    context_cap: int                         # context tokens kept (QASPER papers are long)
    score_name: str
    score: Callable[[str, "datasets.Item"], float]
    budgets: tuple[float, ...] = ()          # fixed budgets (s); empty: chosen from the no-eviction times
    min_useful_tokens: int = 0               # what the task's goals say is worth starting (0 = the default)
    # True: the set has no short gold answer a complete answer would match, so a job is scored by
    # ROUGE-L against the model's unhurried answer to the same prompt (no eviction, no deadline);
    # ``score`` (against the references) is reported beside it as a second column.
    scored_against_own_answer: bool = False

    def request(self, prompt: str, budget: float, **kw) -> Request:
        return Request(prompt, budget=budget, system_prompt=self.system, max_new_tokens=self.max_new_tokens,
                       min_useful_tokens=self.min_useful_tokens, **kw)

    def prompt(self, item, tokenizer) -> str:
        if not item.context:
            return item.question + self.question_suffix
        ids = tokenizer(item.context, add_special_tokens=False)["input_ids"]
        context = item.context if len(ids) <= self.context_cap else tokenizer.decode(ids[: self.context_cap])
        return f"{context}\n\nQuestion: {item.question}{self.question_suffix}"


TASKS = {
    "narrativeqa": Task(
        "narrativeqa", datasets.narrativeqa, "Answer the question about the story in one short sentence.", "",
        max_new_tokens=64, context_cap=1536, score_name="rouge_l",
        score=lambda pred, it: metrics.best(metrics.rouge_l, pred, list(it.references))),
    "qasper": Task(
        "qasper", datasets.qasper_yesno, "Answer the question about the paper with yes or no.",
        "\nAnswer yes or no.", max_new_tokens=32, context_cap=1536, score_name="accuracy",
        score=lambda pred, it: metrics.yes_no_accuracy(pred, it.references[0]),
        # A yes/no question's goal says so: one token is a useful answer (a goal field, min_useful_tokens).
        min_useful_tokens=1),
    # What a robot's user asks: a short question, no system prompt, the answer as long as the model
    # makes it (up to 128 tokens, ~1.2 s on the llamacpp backend), at budgets from 0.5 to 10 s
    # (from 1 s on, no eviction completes them nearly all).
    # TruthfulQA's short references reward the brief answers a damaged question gets (evicting half
    # of a 40-token question scored 0.303 against no eviction's 0.131), so the set is scored
    # against the model's own unhurried answer.
    "everyday": Task(
        "everyday", datasets.everyday, "", "", max_new_tokens=128, context_cap=0, score_name="rouge_l",
        score=lambda pred, it: metrics.best(metrics.rouge_l, pred, list(it.references)),
        budgets=(0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 10.0), scored_against_own_answer=True),
}

PRESETS = {
    "small": {"narrativeqa": 3, "qasper": 2, "everyday": 4, "context_cap": 768, "budgets": 2, "confirm": 2},
    "medium": {"narrativeqa": 12, "qasper": 8, "everyday": 12, "context_cap": 1024, "budgets": 6, "confirm": 2},
    "full": {"narrativeqa": 40, "qasper": 30, "everyday": 30, "context_cap": 1536, "budgets": 7, "confirm": 6},
    # Issue 20: enough prompts to resolve a completion-rate difference of 0.1. QASPER's eval half
    # holds 133 yes/no questions, all of them; the others 150. About 4x the full preset's prompts:
    # ~1.5 hours from an empty records cache on this 2-core machine (a prompt's prefill shared by
    # all its records), resumable (records-*.jsonl); the run of 2026-12-01: docs/RESULTS.md.
    "decide": {"narrativeqa": 150, "qasper": 133, "everyday": 150, "context_cap": 1536, "budgets": 7, "confirm": 6},
}
