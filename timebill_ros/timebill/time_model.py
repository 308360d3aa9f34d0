"""Execution-time estimator (ETE): how long prefill and each decoding step take on this machine.

t_prefill(N) = a*N^2 + b*N + c  and  t_dec(N_kv) = p*N_kv + q  (TimeBill, from a FLOPs count), plus
t_evict(N) = r*N + s when a press evicts (scoring the cache and carrying the kept part costs time:
40-100 ms on this CPU, as much as evicting 95 % saves on a 64-token answer; the paper's model has
no such term, and without it the planner chose small ratios that made jobs slower).
The coefficients come from ``timebill.profiler`` and are stored in a YAML file that records the
model, the machine and the date. ``timebill.calibration`` follows the machine's real load from
the jobs it serves.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import os
import pathlib
import platform
from dataclasses import dataclass, field

import yaml


# A decoding step or a one-token prefill slower than this is a unit mistake or a corrupt file.
MAX_SANE_SECONDS = 30.0


def kept_positions(prompt_tokens: int, eviction_ratio: float) -> int:
    """Cached positions left after evicting ``eviction_ratio`` of a prompt's KV cache: kvpress keeps
    int(N * (1 - eviction_ratio)), at least 1 (kvpress.utils.compute_n_kept, the same float expression)."""
    return max(1, int(prompt_tokens * (1 - eviction_ratio)))


@dataclass
class TimeModel:
    a: float
    b: float
    c: float
    p: float
    q: float
    r: float = 0.0              # eviction overhead per prompt token (s); 0 in files from before it was profiled
    s: float = 0.0              # fixed eviction overhead (s)
    model: str = ""
    machine: str = ""
    date: str = ""
    threads: int = 0
    fit: dict = field(default_factory=dict)
    # (prompt tokens, seconds) of a prefill that has already run: a job planned inside its own
    # prefill (``Estimator.estimate(prefill_seconds=...)``) times it instead of modelling it.
    prefill_known: tuple = ()

    def prefill(self, prompt_tokens: int) -> float:
        if self.prefill_known and self.prefill_known[0] == int(prompt_tokens):
            return self.prefill_known[1]
        return self.modelled_prefill(prompt_tokens)

    def modelled_prefill(self, prompt_tokens: int) -> float:
        n = float(prompt_tokens)
        return max(0.0, self.a * n * n + self.b * n + self.c)

    def with_prefill(self, prompt_tokens: int, seconds: float) -> "TimeModel":
        """This model for a job whose prefill of ``prompt_tokens`` took ``seconds``: its end-to-end
        times then hold the prefill as it ran, the rest modelled. (Through the nodes, a short
        prompt's modelled prefill was off by a third or more for single goals on this shared
        machine: docs/BENCHMARKS.md, "The prefill as it ran".)"""
        return dataclasses.replace(self, prefill_known=(int(prompt_tokens), float(seconds)))

    def evict_overhead(self, prompt_tokens: int, eviction_ratio: float) -> float:
        """Extra prefill seconds when ``eviction_ratio`` > 0 (the press scores and cuts the cache)."""
        return max(0.0, self.r * float(prompt_tokens) + self.s) if eviction_ratio > 0 else 0.0

    def decode_step(self, cached: int) -> float:
        return max(0.0, self.p * cached + self.q)

    def decode(self, cached_first: int, new_tokens: int) -> float:
        """Seconds for the decoding steps after prefill: the first token comes from the prefill,
        so ``new_tokens`` tokens take new_tokens - 1 steps, step i seeing cached_first + i - 1."""
        steps = max(0, new_tokens - 1)
        return max(0.0, steps * (self.p * cached_first + self.q) + self.p * steps * (steps - 1) / 2.0)

    def end_to_end(self, prompt_tokens: int, new_tokens: int, eviction_ratio: float = 0.0) -> float:
        return (self.prefill(prompt_tokens) + self.evict_overhead(prompt_tokens, eviction_ratio)
                + self.decode(kept_positions(prompt_tokens, eviction_ratio), new_tokens))

    def scaled(self, prefill_scale: float, decode_scale: float) -> "TimeModel":
        return TimeModel(
            a=self.a * prefill_scale, b=self.b * prefill_scale, c=self.c * prefill_scale,
            p=self.p * decode_scale, q=self.q * decode_scale, r=self.r * prefill_scale, s=self.s * prefill_scale,
            model=self.model, machine=self.machine, date=self.date, threads=self.threads, fit=self.fit,
        )

    # --- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> pathlib.Path:
        path = pathlib.Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "timebill_time_model": 1,
            "model": self.model,
            "machine": self.machine,
            "date": self.date,
            "threads": self.threads,
            "prefill": {"a": self.a, "b": self.b, "c": self.c, "formula": "a*N^2 + b*N + c (seconds)"},
            "decode_step": {"p": self.p, "q": self.q, "formula": "p*N_kv + q (seconds)"},
            "eviction": {"r": self.r, "s": self.s, "formula": "r*N + s (seconds, added to the prefill when a press evicts)"},
            "fit": self.fit,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
        tmp.replace(path)
        return path

    def problems(self) -> list[str]:
        """What makes this model unusable for planning (empty when it is fine).

        Every coefficient is a cost (the quadratic and linear prefill terms, the per-position and
        the fixed decoding-step costs), so it is finite and not negative: a negative one predicted
        0.023 s for a 1.65 s job, a NaN failed every goal. The profiler's fit keeps them so.
        """
        coefficients = {"a": self.a, "b": self.b, "c": self.c, "p": self.p, "q": self.q, "r": self.r, "s": self.s}
        bad = [f"{k} = {v!r} is not a finite number" for k, v in coefficients.items() if not math.isfinite(v)]
        bad += [f"{k} = {v!r} is negative" for k, v in coefficients.items() if v < 0]
        if bad:
            return bad
        if not 0 < self.decode_step(1) <= MAX_SANE_SECONDS:
            bad.append(f"a decoding step is predicted to take {self.decode_step(1):.3g} s (sane: above 0, "
                       f"at most {MAX_SANE_SECONDS:g} s)")
        if not 0 < self.prefill(1) <= MAX_SANE_SECONDS:
            bad.append(f"a one-token prefill is predicted to take {self.prefill(1):.3g} s (sane: above 0, "
                       f"at most {MAX_SANE_SECONDS:g} s)")
        return bad

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TimeModel":
        """Read and validate a timing-model file; ``TimeModelError`` names the file and what is wrong."""
        path = pathlib.Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no timing model at {path} (run `timebill profile` to make one)")

        def invalid(why: str) -> TimeModelError:
            return TimeModelError(path, why)

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise invalid("it is not text (corrupt?)") from None
        except yaml.YAMLError as exc:
            raise invalid(f"it is not valid YAML ({str(exc).splitlines()[0]}; truncated?)") from None
        if not isinstance(data, dict):
            raise invalid("it is empty" if data is None else f"it holds a {type(data).__name__}, not a mapping")
        try:
            pre, dec = data["prefill"], data["decode_step"]
            ev = data.get("eviction") or {"r": 0.0, "s": 0.0}
            tm = cls(
                a=float(pre["a"]), b=float(pre["b"]), c=float(pre["c"]),
                p=float(dec["p"]), q=float(dec["q"]), r=float(ev["r"]), s=float(ev["s"]),
                model=str(data.get("model", "")), machine=str(data.get("machine", "")),
                date=str(data.get("date", "")), threads=int(data.get("threads", 0)),
                fit=dict(data.get("fit") or {}),
            )
        except KeyError as exc:
            raise invalid(f"the key {exc} is missing") from None
        except (TypeError, ValueError) as exc:
            raise invalid(f"a value has the wrong type ({exc})") from None
        problems = tm.problems()
        if problems:
            raise invalid("; ".join(problems))
        return tm


class TimeModelError(ValueError):
    """A timing-model file that cannot be used. ``path`` and ``why`` are kept for the caller, which
    knows the fix (re-profile a cached file; have the user fix or re-make one they named)."""

    def __init__(self, path: pathlib.Path, why: str):
        super().__init__(f"{path} is not a usable timebill timing model: {why}")
        self.path, self.why = path, why


def machine_id() -> str:
    """A short description of this machine, recorded with a timing model."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.node()} | {cpu} | {os.cpu_count()} cpus"


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_time_model_path(model_name: str, threads: int, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    from .models import default_cache_dir

    host = platform.node() or "host"
    return default_cache_dir(cache_dir) / "time_models" / f"{model_name}-{host}-{threads}t.yaml"
