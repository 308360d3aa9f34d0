"""Profile prefill and decoding-step times on this machine and fit the time model (ETE).

Times are taken through the serving backend (``timebill.backends``), so the model fitted is the
one of the path that serves: a llama.cpp decoding step costs a fraction of a torch one, and the
fitted model records its backend (``fit["backend"]``).

For each prompt length: warm-up, then ``repeats`` timed prefills (median), and after the last one
``decode_steps`` timed decoding steps at that cache length (median). Lengths are split
alternately into a fit set and a held-out set; the held-out mean absolute percentage error
(MAPE) is what the fit is worth on lengths it never saw. The saved model is refitted on all points.
"""
from __future__ import annotations

import itertools
import time
from statistics import median

import numpy as np

from .compute_thread import compute
from .presses import DEFAULT_PRESS
from .time_model import TimeModel, machine_id, today

DEFAULT_LENGTHS = (32, 64, 128, 192, 256, 384, 512, 640, 768, 1024, 1280, 1536, 2048)


# What the fit minimises, recorded in the file: a cached timing model fitted otherwise by an earlier
# version is fitted again from its points when loaded (runtime.load_or_profile_time_model).
FITTED_FOR = "relative error"


def nonnegative_least_squares(columns, t, relative: bool = False) -> list[float]:
    """Least squares with every coefficient >= 0: each is a cost (see ``TimeModel.problems``).

    Plain least squares on noisy timings gave negative terms (seen on the tiny model: b, p < 0
    in 4 of 8 profiles), which predict nonsense away from the measured points. The constrained
    optimum is the plain fit on some subset of the columns; with at most three, trying every
    subset is exact and instant.

    ``relative``: minimise the squared *relative* errors (each row divided by its time; every time
    must be positive). Planning reads relative errors, and on absolute ones the long prompts'
    seconds outweigh the short prompts robots send: the embedded model's llama.cpp profile fitted
    plainly was 73 % too slow at 32 tokens and 45 % at 64 (held-out MAPE 17.1 %), fitted
    relatively within 1 % there (held-out 4.7 %; docs/BENCHMARKS.md).
    """
    x, t = np.stack([np.asarray(col, dtype=float) for col in columns], 1), np.asarray(t, dtype=float)
    if relative:
        if not (t > 0).all():
            raise ValueError("a relative fit needs positive times")
        x, t = x / t[:, None], np.ones_like(t)
    best, best_err = [0.0] * x.shape[1], float(t @ t)
    for mask in itertools.product((False, True), repeat=x.shape[1]):
        keep = [i for i, on in enumerate(mask) if on]
        if not keep:
            continue
        coef = np.linalg.lstsq(x[:, keep], t, rcond=None)[0]
        err = float(((x[:, keep] @ coef - t) ** 2).sum())
        if (coef >= 0).all() and err < best_err:
            best, best_err = [0.0] * x.shape[1], err
            for i, v in zip(keep, coef):
                best[i] = float(v)
    return best


def fit_prefill(n, t) -> tuple[float, float, float]:
    n = np.asarray(n, dtype=float)
    a, b, c = nonnegative_least_squares([n * n, n, np.ones_like(n)], t, relative=_all_positive(t))
    return a, b, c


def fit_decode(n, t) -> tuple[float, float]:
    n = np.asarray(n, dtype=float)
    p, q = nonnegative_least_squares([n, np.ones_like(n)], t, relative=_all_positive(t))
    return p, q


def fit_linear(n, t) -> tuple[float, float]:
    """r*N + s by plain least squares: for the eviction overhead, a difference of two timings that
    can be zero or below on a short prompt, so it has no relative error to weigh."""
    n = np.asarray(n, dtype=float)
    r, s = nonnegative_least_squares([n, np.ones_like(n)], t)
    return r, s


def _all_positive(t) -> bool:
    return bool((np.asarray(t, dtype=float) > 0).all())


def r2(pred, actual) -> float:
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    ss_res = float(((actual - pred) ** 2).sum())
    ss_tot = float(((actual - actual.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def mape(pred, actual) -> float:
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    return float(100.0 * np.mean(np.abs(pred - actual) / actual))


def measure(loaded, lengths=DEFAULT_LENGTHS, repeats: int = 3, decode_steps: int = 8, progress: bool = True,
            backend=None, press: str | None = None):
    """Time prefills and decoding steps; returns (prefill points, decode points, eviction points),
    each [(N, seconds)]. ``backend``: the serving path to time (default: ``auto`` for this model).
    ``press``: also time each prefill with this press evicting half the cache; an eviction point is
    the extra time over the plain prefill (none without a press)."""
    import torch

    from .backends import make_backend
    from .presses import make_press

    backend = backend if backend is not None else make_backend("auto", loaded)
    lengths = [n for n in lengths if n + decode_steps + 2 <= loaded.max_context]
    vocab = loaded.model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(lengths) + 1, desc="profiling", unit="length", dynamic_ncols=True)
    prefill_pts, decode_pts, evict_pts = [], [], []
    # Warm-up: the first calls after loading are slow (allocator, thread pool).
    warm = torch.randint(0, vocab, (min(256, lengths[-1]),), generator=gen).tolist()
    for _ in range(2):
        backend.prefill(warm)
        backend.decode_one(warm[0], len(warm))
    if bar:
        bar.update(1)
    for n in lengths:
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()

        def timed_prefills(pressed=None) -> float:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                backend.prefill(ids, pressed)
                times.append(time.perf_counter() - t0)
            return median(times)

        pressed = make_press(press, 0.5, n) if press else None
        # With the press first: the plain prefills after it leave the full cache the steps below are timed on.
        with_press = timed_prefills(pressed) if pressed is not None else None
        prefill_pts.append((n, timed_prefills()))
        if with_press is not None:
            evict_pts.append((n, max(0.0, with_press - prefill_pts[-1][1])))
        steps = []
        tok = int(torch.randint(0, vocab, (1,), generator=gen))
        for i in range(decode_steps):
            t0 = time.perf_counter()
            backend.decode_one(tok, n + i)
            steps.append(time.perf_counter() - t0)
        decode_pts.append((n + decode_steps // 2, median(steps)))
        if bar:
            bar.update(1)
            bar.set_postfix(N=n, prefill=f"{prefill_pts[-1][1]:.3f}s", step=f"{decode_pts[-1][1] * 1000:.1f}ms")
    if bar:
        bar.close()
    return prefill_pts, decode_pts, evict_pts


def fit(prefill_pts, decode_pts, model_name: str = "", threads: int = 0, backend: str = "torch",
        evict_pts=(), press: str = "") -> TimeModel:
    """Fit on alternate points, report held-out quality, then refit on all points."""
    fit_idx = [i for i in range(len(prefill_pts)) if i % 2 == 0]
    held_idx = [i for i in range(len(prefill_pts)) if i % 2 == 1]

    def cols(pts, idx):
        return [pts[i][0] for i in idx], [pts[i][1] for i in idx]

    pn, pt = cols(prefill_pts, fit_idx)
    dn, dt = cols(decode_pts, fit_idx)
    a, b, c = fit_prefill(pn, pt)
    p, q = fit_decode(dn, dt)
    trial = TimeModel(a, b, c, p, q)
    hpn, hpt = cols(prefill_pts, held_idx)
    hdn, hdt = cols(decode_pts, held_idx)
    a, b, c = fit_prefill(*zip(*prefill_pts))
    p, q = fit_decode(*zip(*decode_pts))
    r, s_ = fit_linear(*zip(*evict_pts)) if evict_pts else (0.0, 0.0)
    final = TimeModel(a, b, c, p, q, r=r, s=s_, model=model_name, machine=machine_id(), date=today(), threads=threads)
    final.fit = {
        "backend": backend,
        "prefill_r2": r2([final.prefill(n) for n, _ in prefill_pts], [t for _, t in prefill_pts]),
        "decode_r2": r2([final.decode_step(n) for n, _ in decode_pts], [t for _, t in decode_pts]),
        "prefill_heldout_mape_pct": mape([trial.prefill(n) for n in hpn], hpt) if hpn else float("nan"),
        "decode_heldout_mape_pct": mape([trial.decode_step(n) for n in hdn], hdt) if hdn else float("nan"),
        "eviction_press": press,
        "fitted_for": FITTED_FOR,
        "points": {"prefill": [[int(n), float(t)] for n, t in prefill_pts],
                   "decode_step": [[int(n), float(t)] for n, t in decode_pts],
                   "eviction": [[int(n), float(t)] for n, t in evict_pts]},
    }
    return final


@compute  # model work stays on one thread (timebill/compute_thread.py)
def profile(loaded, lengths=DEFAULT_LENGTHS, repeats: int = 3, decode_steps: int = 8, progress: bool = True,
            backend=None, press: str | None = DEFAULT_PRESS) -> TimeModel:
    """Profile the serving path and fit the timing model; ``press``: the configured press, whose
    eviction overhead is profiled too (None: not profiled, taken as 0)."""
    import torch

    from .backends import make_backend

    backend = backend if backend is not None else make_backend("auto", loaded)
    pre, dec, ev = measure(loaded, lengths, repeats, decode_steps, progress, backend=backend, press=press)
    return fit(pre, dec, model_name=loaded.name, threads=torch.get_num_threads(), backend=backend.name,
               evict_pts=ev, press=press or "")


def refit(tm: TimeModel) -> TimeModel:
    """``tm`` fitted again from the points it was measured at (``tm.fit["points"]``), with this
    version's fit; the machine and the date stay the measurement's."""
    import dataclasses

    pts = tm.fit.get("points") or {}
    if not pts.get("prefill") or not pts.get("decode_step"):
        raise ValueError("the timing model keeps no measured points to fit again: profile the machine (`timebill profile`)")
    new = fit([tuple(x) for x in pts["prefill"]], [tuple(x) for x in pts["decode_step"]], model_name=tm.model,
              threads=tm.threads, backend=backend_of(tm), evict_pts=[tuple(x) for x in pts.get("eviction") or []],
              press=str(tm.fit.get("eviction_press", "")))
    return dataclasses.replace(new, machine=tm.machine, date=tm.date)


def backend_of(tm: TimeModel) -> str:
    """The serving path a timing model was profiled on (files from before backends: torch)."""
    return str(tm.fit.get("backend") or "torch")


def summary(tm: TimeModel) -> str:
    f = tm.fit
    return (
        f"backend  {backend_of(tm)}\n"
        f"prefill  t = {tm.a:.3e}*N^2 + {tm.b:.3e}*N + {tm.c:.3e} s   R^2 {f.get('prefill_r2', float('nan')):.4f}  "
        f"held-out MAPE {f.get('prefill_heldout_mape_pct', float('nan')):.2f} %\n"
        f"decode   t = {tm.p:.3e}*N_kv + {tm.q:.3e} s          R^2 {f.get('decode_r2', float('nan')):.4f}  "
        f"held-out MAPE {f.get('decode_heldout_mape_pct', float('nan')):.2f} %\n"
        f"eviction t = {tm.r:.3e}*N + {tm.s:.3e} s added to the prefill ({f.get('eviction_press') or 'not profiled'})"
    )


def fit_warning(tm: TimeModel, max_mape_pct: float = 15.0) -> str:
    """A warning when the fit is poor: usually another process was using the CPU while profiling."""
    f = tm.fit
    bad = [k for k in ("prefill_heldout_mape_pct", "decode_heldout_mape_pct") if f.get(k, 0.0) > max_mape_pct]
    if not bad:
        return ""
    return ("WARNING: the timing model fits poorly (" + ", ".join(f"{k} {f[k]:.0f} %" for k in bad) + "). "
            "Was the CPU busy with something else? Deadlines planned with it will be wrong: "
            "re-run `timebill profile` on a quiet machine.")

