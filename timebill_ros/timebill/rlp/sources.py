"""The served-like mix the length predictor is distilled on: what robots and their operators send.

Sources (each a public data set from the evaluation extra, read at run time, never copied here):

  sharegpt     ShareGPT first turns: open chat requests, many asking for long texts
  narrativeqa  a question about a story, with the evaluation's system prompt and context cap
  qasper       a yes/no question about an NLP paper, likewise
  everyday     TruthfulQA's short questions ("Where did fortune cookies originate?")
  piqa         physical how-to goals ("How do I sharpen a knife without a sharpener?")
  nq_open      Natural Questions, short factual questions
  brief        PIQA and NQ-open questions with the system prompt "Answer in one short sentence."
  asks         the same questions asked the way robots and operators ask: with an explicit length
               ("In one sentence, ...", "In about 100 words, ...", "Write a detailed 500-word essay
               ..."), step by step, for a yes/no or one-word answer, or as a robot-arm task
  limited      everyday, PIQA, NQ-open and ShareGPT requests as length control sends them: with
               the system prompt "Answer in at most W words." (W of ``length_control.WORD_LIMITS``)

The evaluation scores the ``eval`` halves of NarrativeQA, QASPER and the everyday questions
(``evaluation.datasets.half_of``, by story / paper / text); only their ``train`` halves are here.
Within the mix, the predictor's own train / val / test split is ``data.split_of`` of the prompt id.
A prompt's text and system prompt are exactly what the evaluation (and so the engine) is given.
"""
from __future__ import annotations

import dataclasses
import random

from .data import Prompt, first_turn_prompts

SOURCES = ("sharegpt", "narrativeqa", "qasper", "everyday", "piqa", "nq_open", "brief", "asks", "limited")
BRIEF_SYSTEM = "Answer in one short sentence."
CONTEXT_CAP = 1536  # the full evaluation's context cap (tokens)


def source_of(prompt_id: str) -> str:
    """The source named in a mix prompt id (``source/...``); bare ids are ShareGPT's (the first labels)."""
    return prompt_id.split("/", 1)[0] if "/" in prompt_id else "sharegpt"


def load_source(name: str, tokenizer=None, limit: int | None = None, seed: int = 0) -> list[Prompt]:
    """Up to ``limit`` prompts of a source, a seeded sample in a fixed order (all when None).

    ``tokenizer`` is needed for the sources with contexts (capped in tokens as the evaluation does)."""
    from ..evaluation import datasets
    from ..evaluation.tasks import TASKS

    if name == "sharegpt":
        prompts = [Prompt(f"sharegpt/{p.id}", p.text, "", name) for p in first_turn_prompts()]
    elif name in ("narrativeqa", "qasper"):
        if tokenizer is None:
            raise ValueError(f"the {name} prompts need the tokenizer (their contexts are capped in tokens)")
        task = dataclasses.replace(TASKS[name], context_cap=CONTEXT_CAP)  # a copy: TASKS is shared
        load = datasets.narrativeqa if name == "narrativeqa" else datasets.qasper_yesno
        items = load(limit or 10 ** 9, seed=seed, split="train")
        prompts = [Prompt(f"{name}/{it.id}", task.prompt(it, tokenizer), task.system, name) for it in items]
    elif name == "everyday":
        items = datasets.everyday(10 ** 9, split="train")
        prompts = [Prompt(f"everyday/{it.id}", it.question, "", name) for it in items]
    elif name in ("piqa", "nq_open"):
        prompts = [Prompt(f"{name}/{it.id}", it.question, "", name) for it in datasets.requests(name)]
    elif name == "brief":
        # The same questions as piqa / nq_open under other ids: a brief-answer instruction is what
        # changes, so the predictor must learn to read it.
        items = datasets.requests("piqa") + datasets.requests("nq_open")
        prompts = [Prompt(f"brief/{it.id}", it.question, BRIEF_SYSTEM, name) for it in items]
    elif name == "asks":
        prompts = ask_prompts()
    elif name == "limited":
        prompts = limited_prompts()
    else:
        raise ValueError(f"unknown prompt source '{name}': use one of {', '.join(SOURCES)}")
    if limit is not None and len(prompts) > limit:
        prompts = random.Random(f"{seed}:{name}").sample(prompts, limit)
    return prompts


# How robots and their operators phrase a request, {q} the question or goal. Each kind names what
# it asks for; the predictor must learn to read the ask, whatever the question.
ASK_TEMPLATES = {
    "one_sentence": ("In one sentence: {q}", "{q} Answer in one sentence.", "Explain in a single sentence. {q}"),
    "sentences": ("{q} Answer in two sentences.", "In three sentences: {q}"),
    "words": ("In about {n} words, answer this: {q}", "{q} Reply in at most {n} words.",
              "Answer in roughly {n} words. {q}"),
    "essay": ("Write a detailed {n}-word essay on this question: {q}", "{q} Write a long, detailed answer of about {n} words."),
    "steps": ("{q} Explain step by step.", "Give me numbered step-by-step instructions. {q}"),
    "robot_task": ("You control a robot arm with a gripper. List the steps to do this: {q}",
                   "Plan the motions for a mobile manipulator to carry out this task, step by step: {q}"),
    "yes_no": ("{q} Answer yes or no.", "Answer only yes or no: {q}"),
    "one_word": ("{q} Answer with one word.", "Reply with a single word or number: {q}"),
    "brief": ("Briefly: {q}", "{q} Keep it short."),
    "detailed": ("{q} Please explain in detail.", "Tell me everything you know about this: {q}"),
}
ASK_WORDS = {"words": (10, 20, 50, 100, 150, 200), "essay": (300, 500, 800)}


def _stable_hash(key: str) -> int:
    """A hash of ``key`` that is the same in every process and run (Python's ``hash`` of a str is not)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def ask_prompts() -> list[Prompt]:
    """Every PIQA / NQ-open question (train-side sources, like ``brief``) asked one way each: a
    kind, template and length chosen by a hash of the question's id, so the set is fixed."""
    from ..evaluation import datasets

    kinds = sorted(ASK_TEMPLATES)
    out = []
    for it in datasets.requests("piqa") + datasets.requests("nq_open"):
        h = _stable_hash(f"asks:{it.id}")
        kind = kinds[h % len(kinds)]
        templates = ASK_TEMPLATES[kind]
        template = templates[(h // 16) % len(templates)]
        words = ASK_WORDS.get(kind, (0,))
        n = words[(h // 256) % len(words)]
        q = it.question if it.question.endswith(("?", ".", "!")) else it.question + "."
        out.append(Prompt(f"asks/{kind}/{it.id}", template.format(q=q, n=n), "", "asks"))
    return out


def limited_prompts() -> list[Prompt]:
    """Requests of the open sources with the word limit length control asks for, one limit each
    (chosen by a hash of the request's id). The limited prompt is what a served goal runs once
    length control has limited it. Without these the head read a system-prompt limit it had never
    been shown: it over-predicted 53-63 % of 992 such prompts, by limit (docs/RLP.md).
    A variant is kept only where its own split is its request's, so no request of the test split
    has a variant among the training prompts."""
    from ..evaluation import datasets
    from ..length_control import WORD_LIMITS, instructed
    from .data import split_of

    requests = [(f"everyday/{it.id}", it.question) for it in datasets.everyday(10 ** 9, split="train")]
    requests += [(f"{name}/{it.id}", it.question) for name in ("piqa", "nq_open") for it in datasets.requests(name)]
    requests += [(f"sharegpt/{p.id}", p.text) for p in first_turn_prompts()]
    out = []
    for rid, text in requests:
        h = _stable_hash(f"limited:{rid}")
        if rid.startswith("sharegpt/") and (h // 64) % 4:
            continue  # a quarter of ShareGPT's many first turns: robots mostly ask short questions
        words = WORD_LIMITS[h % len(WORD_LIMITS)]
        pid = f"limited/{words}/{rid}"
        if split_of(pid) == split_of(rid):
            out.append(Prompt(pid, text, instructed("", words), "limited"))
    return out


def interleave(groups: list[list[Prompt]]) -> list[Prompt]:
    """Round-robin over the sources: a labelling run stopped early still has every source."""
    out, i = [], 0
    while any(i < len(g) for g in groups):
        out.extend(g[i] for g in groups if i < len(g))
        i += 1
    return out


def prompts_by_id(ids, tokenizer) -> dict[str, Prompt]:
    """The prompts behind labelled ids (to recompute features), loading only the sources named.
    A bare id is a ShareGPT prompt of the first, ShareGPT-only labels."""
    wanted = set(ids)
    out = {}
    for name in sorted({source_of(i) for i in wanted}):
        for p in load_source(name, tokenizer):
            bare = p.id.split("/", 1)[1]
            if p.id in wanted:
                out[p.id] = p
            elif name == "sharegpt" and bare in wanted:
                out[bare] = Prompt(bare, p.text, p.system, name)
    return out
