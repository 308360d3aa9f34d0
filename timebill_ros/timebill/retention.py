"""Retention: how much of a complete answer's quality survives evicting a share of its prompt's KV cache.

The expected-score planner (``timebill.score_planner``) weighs each eviction ratio's odds of
finishing by the quality of the answer it finishes: ``Retention.at(ratio, kind)``, 1.0 at no
eviction. Quality falls differently for different requests, so a curve is kept per kind of
request, read from the request itself as its length is:

* ``choice``: the answer is decided by its first words (a goal that says one token is a useful
  answer, ``min_useful_tokens: 1``, as a yes/no question does, or an answer format of choices).
  Quality: how often the answer's yes/no (or first word) agrees with the unevicted answer's.
* ``long``: a free-text answer about a long prompt (a context: a story, a paper, a log). Quality:
  the answer's score against the data set's references, over the unevicted answer's.
* ``short``: a free-text answer to a short prompt (a question alone). Quality: ROUGE-L against the
  unevicted answer (short questions have no reference a right answer must match, and evicting part
  of a 40-token question changes what is asked).

Curves are measured per model and press by ``timebill retention`` (timebill/evaluation/retention.py)
on the evaluation data's ``train`` halves and stored as YAML. The embedded model's SnapKV curves
ship in ``timebill/data``. A model without a measured curve is planned with ``CONSERVATIVE``:
quality falls linearly to nothing at full eviction, which evicts only where it buys completion.
"""
from __future__ import annotations

import bisect
import pathlib
from dataclasses import dataclass, field

import yaml

KINDS = ("choice", "short", "long")
SHORT_PROMPT_TOKENS = 256   # prompts shorter than this are a question alone (``short``)


def request_kind(prompt_tokens: int, min_useful_tokens: int = 0, choices: bool = False) -> str:
    """The kind of request whose curve applies (see the module's docstring)."""
    if choices or int(min_useful_tokens) == 1:
        return "choice"
    return "short" if prompt_tokens < SHORT_PROMPT_TOKENS else "long"


@dataclass(frozen=True)
class RetentionCurve:
    """Quality relative to no eviction at each measured ratio, linear between them."""

    ratios: tuple            # increasing, from 0
    quality: tuple           # one per ratio, 1.0 at ratio 0
    prompts: int = 0         # how many prompts measured it (0: not measured)

    def __post_init__(self):
        if len(self.ratios) != len(self.quality) or len(self.ratios) < 2 or self.ratios[0] != 0.0:
            raise ValueError(f"a retention curve needs one quality per ratio, from ratio 0, got {self.ratios}")
        if any(b <= a for a, b in zip(self.ratios, self.ratios[1:])):
            raise ValueError(f"retention ratios must increase, got {self.ratios}")
        if any(not 0.0 <= q <= 1.0 for q in self.quality):
            raise ValueError(f"retention qualities must be in [0, 1], got {self.quality}")

    def at(self, ratio: float) -> float:
        r = min(max(float(ratio), 0.0), self.ratios[-1])
        i = bisect.bisect_right(self.ratios, r) - 1
        if i >= len(self.ratios) - 1:
            return float(self.quality[-1])
        a0, a1 = self.ratios[i], self.ratios[i + 1]
        return float(self.quality[i] + (self.quality[i + 1] - self.quality[i]) * (r - a0) / (a1 - a0))


_LINEAR = RetentionCurve((0.0, 1.0), (1.0, 0.0))


@dataclass(frozen=True)
class Retention:
    """One curve per kind of request, for one model and press."""

    curves: dict = field(default_factory=dict)   # kind -> RetentionCurve
    source: str = "conservative default (quality 1 - ratio)"

    def at(self, ratio: float, kind: str) -> float:
        if ratio <= 0.0:
            return 1.0
        return self.curves.get(kind, _LINEAR).at(ratio)

    def save(self, path, model: str, press: str, how: str) -> pathlib.Path:
        path = pathlib.Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"timebill_retention": 1, "model": model, "press": press, "measured": how,
                "curves": {k: {"ratios": list(c.ratios), "quality": [round(q, 4) for q in c.quality], "prompts": c.prompts}
                           for k, c in self.curves.items()}}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    @classmethod
    def load(cls, path) -> "Retention":
        """Read a file written by ``save``; a ValueError names the file and what is wrong."""
        path = pathlib.Path(path).expanduser()
        try:
            data = yaml.safe_load(path.read_text())
            curves = {str(k): RetentionCurve(tuple(float(a) for a in c["ratios"]), tuple(float(q) for q in c["quality"]),
                                             int(c.get("prompts", 0)))
                      for k, c in data["curves"].items()}
        except OSError as exc:
            raise ValueError(f"retention file {path}: {exc.strerror or exc} (measure one with `timebill retention`)") from None
        except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"retention file {path} is not usable: {exc} (measure it again with `timebill retention`)") from None
        unknown = set(curves) - set(KINDS)
        if unknown:
            raise ValueError(f"retention file {path}: unknown kinds {sorted(unknown)} (known: {', '.join(KINDS)})")
        return cls(curves, source=str(path))


CONSERVATIVE = Retention()


def shipped_path(model_name: str, press: str) -> pathlib.Path:
    return pathlib.Path(__file__).parent / "data" / f"retention_{model_name}_{press}.yaml"


def cached_path(model_name: str, press: str, cache_dir=None) -> pathlib.Path:
    from .models import default_cache_dir

    return default_cache_dir(cache_dir) / "retention" / f"{model_name}_{press}.yaml"


def load_retention(setting: str, model_name: str, press: str, cache_dir=None, say=print) -> Retention:
    """The configuration's ``retention``: ``auto`` (the curve measured for this model and press: the
    one `timebill retention` cached, else the shipped one, else ``CONSERVATIVE`` with a warning),
    ``conservative``, or a YAML file (a file named and not usable stops start-up)."""
    if setting == "conservative":
        return CONSERVATIVE
    if setting and setting != "auto":
        return Retention.load(setting)
    for path in (cached_path(model_name, press, cache_dir), shipped_path(model_name, press)):
        if path.is_file():
            try:
                return Retention.load(path)
            except ValueError as exc:
                say(f"warning: {exc}; trying the next")
    say(f"warning: no retention curve for {model_name} with press {press}: planning with the conservative default "
        f"(quality 1 - ratio); measure one with `timebill retention`")
    return CONSERVATIVE
