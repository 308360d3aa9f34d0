"""Build a ready engine from the configuration: model, timing model (profiled once if missing),
length predictor. Shared by the CLI, the ROS nodes and the benchmarks."""
from __future__ import annotations

import logging
import pathlib

from .backends import make_backend, resolve_backend
from .compute_thread import compute
from .engine import BudgetedEngine
from .estimator import Estimator
from .length_control import DEFAULT_LENGTH_CONTROL
from .length_predictor import ConstantLengthPredictor
from .models import EMBEDDED, LoadedModel, default_cache_dir, load_model
from .planner import DEFAULT_MIN_USEFUL_TOKENS, DEFAULT_PLANNER
from .retention import load_retention
from .profiler import DEFAULT_LENGTHS, FITTED_FOR, backend_of, fit_warning, profile, refit, summary
from .served_speed import recall, served_path
from .testing import TEST_TINY, tiny_test_model
from .time_model import TimeModel, TimeModelError, default_time_model_path

log = logging.getLogger("timebill")


@compute  # model work stays on one thread (timebill/compute_thread.py)
def load_configured_model(cfg: dict) -> LoadedModel:
    """The model the configuration names: ``embedded``, a model file or folder, or the test fixture
    ``test:tiny`` (random weights, for tests of the plumbing, e.g. nodes in subprocesses)."""
    spec = cfg.get("model") or EMBEDDED
    loaded = tiny_test_model() if spec == TEST_TINY else load_model(spec, cfg.get("cache_dir") or None, threads=cfg.get("threads"),
                                                                     dtype=str(cfg.get("torch_dtype") or "float32"))
    # The most one job may use (prompt + answer): requests beyond it are refused by the estimator,
    # and llama.cpp's context is this big, not the model's maximum (131,072 for Llama 3.2: GiB of
    # cache nobody asked for).
    cap = int(cfg.get("context_tokens") or 0)
    if cap > 0:
        loaded.max_context = min(loaded.max_context, cap)
    return loaded


def time_model_path(cfg: dict, loaded) -> pathlib.Path:
    """The configured file, else this machine's file for the model and the serving backend (a
    llama.cpp profile is not a torch one: the torch file keeps its name from before backends)."""
    if cfg.get("time_model"):
        return pathlib.Path(cfg["time_model"]).expanduser()
    backend = resolve_backend(cfg.get("backend"), loaded)
    name = loaded.name if backend == "torch" else f"{loaded.name}-{backend}"
    if getattr(loaded, "torch_dtype", "float32") != "float32":  # another speed: a profile of its own
        name += f"-{loaded.torch_dtype}"
    return default_time_model_path(name, int(cfg.get("threads") or 0), cfg.get("cache_dir") or None)


def distill_dir(cfg: dict, loaded) -> pathlib.Path:
    """Where `timebill rlp distill` keeps the model's labels, features and length head: in the cache
    beside the timing models, keyed by the model's name as its timing model is. Not by host, threads
    or backend as that file is: the head reads the model's own layers, the same on any machine."""
    return default_cache_dir(cfg.get("cache_dir") or None) / "rlp" / loaded.name


def distilled_head_path(cfg: dict, loaded) -> pathlib.Path:
    return distill_dir(cfg, loaded) / "head.pt"


def served_speed_path(cfg: dict, loaded) -> pathlib.Path:
    """Where a node keeps the speed it measured while serving: beside its timing model."""
    return served_path(time_model_path(cfg, loaded))


def _refitted(tm: TimeModel, path: pathlib.Path, say) -> TimeModel:
    """A cached timing model an earlier version fitted for absolute error, fitted again from its
    measured points and saved; as it was when it keeps no points or the new fit is unusable."""
    try:
        new = refit(tm)
    except ValueError:
        return tm
    if new.problems():
        return tm
    new.save(path)
    say(f"timing model {path}: fitted again from its measured points for {FITTED_FOR}")
    return new


def load_or_profile_time_model(cfg: dict, loaded, progress: bool = True, say=log.info, backend=None) -> TimeModel:
    """The timing model: the file the configuration names, else this machine's cached one, profiled
    once when it is missing. A cached file that cannot be used is set aside and re-profiled; a file
    the user named is theirs to fix, so that stops with what is wrong and how to fix it.
    ``backend``: the serving backend to profile with, when the caller has one (else one is made)."""
    path = time_model_path(cfg, loaded)
    named = bool(cfg.get("time_model"))
    serving, backend = backend, resolve_backend(cfg.get("backend"), loaded)
    if path.is_file():
        try:
            tm = TimeModel.load(path)
            if backend_of(tm) != backend:
                raise TimeModelError(path, f"it is a timing model of the {backend_of(tm)} backend, but this engine "
                                           f"serves with {backend} (`timebill profile --backend {backend}`, or set "
                                           f"backend: {backend_of(tm)} in config/timebill.yaml)")
        except TimeModelError as exc:
            if named:
                raise TimeModelError(path, f"{exc.why}. It is the `time_model` setting: fix the file, make a new one "
                                           f"with `timebill profile --out {path}`, or remove the setting to use this "
                                           f"machine's own (profiled once and cached)") from None
            aside = path.with_name(path.name + ".invalid")
            path.replace(aside)
            log.warning("%s; moved it to %s and profiling again", exc, aside)
        else:
            if named or tm.fit.get("eviction_press") == configured_press(cfg):
                if not named and tm.fit.get("fitted_for") != FITTED_FOR:
                    tm = _refitted(tm, path, say)
                say(f"timing model: {path}")
                return tm
            # Sound, only out of date: its eviction overhead is for another press, or it predates
            # that term (2026-11-25). Kept, not called damaged.
            aside = path.with_name(path.name + ".old")
            path.replace(aside)
            say(f"timing model {path} has no eviction overhead for the press {configured_press(cfg)} (profiled for "
                f"another press, or before that term existed): kept as {aside.name}, profiling again (about two minutes)")
    else:
        say(f"no timing model for {loaded.name} ({backend} backend) on this machine at {path}: profiling once (about two minutes)")
    lengths = [n for n in DEFAULT_LENGTHS if n <= int(cfg.get("profile_max_tokens", 2048))]
    if serving is None:
        # The configured name, not the resolved one: under auto, a model the fast path turns out to
        # be wrong for is served (and so profiled) with torch, whose timing model has another file.
        serving = make_backend(cfg.get("backend"), loaded, threads=configured_threads(cfg))
        if serving.name != backend:
            return load_or_profile_time_model(cfg, loaded, progress, say, backend=serving)
    tm = profile(loaded, lengths=lengths, progress=progress, backend=serving, press=configured_press(cfg))
    if tm.problems():  # not saved: it would be rejected at the next start
        raise RuntimeError(f"profiling {loaded.name} gave an unusable timing model ({'; '.join(tm.problems())}): "
                           "re-run on a quiet machine with `timebill profile`")
    tm.save(path)
    say(f"saved {path}\n{summary(tm)}")
    if fit_warning(tm):
        say(fit_warning(tm))
    return tm


def make_length_predictor(cfg: dict, loaded):
    kind = str(cfg.get("length_predictor") or "constant")
    if kind == "constant":
        return ConstantLengthPredictor(expected=int(cfg.get("constant_expected_tokens", 64)))
    if kind == "rlp" or kind.endswith(".pt"):
        from .rlp.predictor import RLPPredictor

        bound, k = str(cfg.get("rlp_bound") or "calibrated"), float(cfg.get("rlp_k") or 5.0)
        if kind != "rlp":  # an explicit head file: it must fit the model
            return RLPPredictor(loaded, kind, bound=bound, k=k)
        head = rlp_head_for(cfg, loaded)
        if head is None:
            return ConstantLengthPredictor(expected=int(cfg.get("constant_expected_tokens", 64)))
        return RLPPredictor(loaded, head, bound=bound, k=k)
    raise ValueError(f"unknown length_predictor '{kind}' (known: constant, rlp, or a path to an RLP head .pt)")


def rlp_head_for(cfg: dict, loaded):
    """`length_predictor: rlp`: the head shipped in timebill/data/ when it was trained for this model
    (the embedded one), else the one `timebill rlp distill` wrote into the cache for it. Where
    neither serves (another model not distilled yet, a damaged file) None, with a warning naming the
    command: the constant predictor's bound is the hard cap, so deadlines stay safe, only eviction
    is coarser. A head of another model is refused here, not served: its layer states mean nothing
    to this model's head, even where the sizes happen to fit."""
    from .rlp.model import HeadLoadError, LengthHead
    from .rlp.predictor import default_head_path

    hidden = int(getattr(loaded.model.config, "hidden_size", 0))
    why = []
    for what, path in (("shipped", default_head_path()), ("distilled", distilled_head_path(cfg, loaded))):
        if not path.is_file():
            why.append(f"no {what} head at {path}")
            continue
        try:
            head = LengthHead.load(path)
        except HeadLoadError as exc:
            why.append(str(exc))
            continue
        if head.cfg.model_name == loaded.name and head.cfg.model_hidden in (0, hidden):
            return head
        why.append(f"the {what} head {path} is for {head.cfg.model_name or 'another model'} "
                   f"(hidden {head.cfg.model_hidden}), not {loaded.name} (hidden {hidden})")
    log.warning("length_predictor rlp: no length head for %s (%s); using the constant predictor meanwhile. "
                "Distill one for this machine's model: `timebill rlp distill --model %s`", loaded.name,
                "; ".join(why), cfg.get("model") or EMBEDDED)
    return None


@compute
def build_estimator(cfg: dict, loaded=None, progress: bool = True, say=log.info, backend=None,
                    served: bool = False, time_model=None, length_predictor=None) -> Estimator:
    """``served``: for a node, which plans from the speed it measured while serving before its
    last restart (timebill/served_speed.py); a one-off run alone on the machine does not.
    ``time_model`` (a TimeModel or an OnlineCalibration) and ``length_predictor``: ones the caller
    already has, to share between estimators (the evaluation's planners learn from one
    calibration), instead of the configured ones."""
    loaded = loaded or load_configured_model(cfg)
    if time_model is None:
        time_model = load_or_profile_time_model(cfg, loaded, progress=progress, say=say, backend=backend)
    est = Estimator(
        loaded, time_model, length_predictor if length_predictor is not None else make_length_predictor(cfg, loaded),
        default_max_new_tokens=int(cfg.get("default_max_new_tokens", 256)),
        max_eviction_ratio=float(cfg.get("max_eviction_ratio", 0.95)), press=configured_press(cfg),
        worst_case_quantile=float(cfg.get("worst_case_quantile", 0.5)),
        planner=str(cfg.get("planner", DEFAULT_PLANNER)),
        min_useful_tokens=int(cfg.get("min_useful_tokens", DEFAULT_MIN_USEFUL_TOKENS)),
        length_control=bool(cfg.get("length_control", DEFAULT_LENGTH_CONTROL)),
        retention=load_retention(str(cfg.get("retention") or "auto"), loaded.name, configured_press(cfg),
                                 cfg.get("cache_dir") or None, say=log.warning),
        fixed_eviction_ratio=configured_fixed_ratio(cfg),
    )
    if served:
        line = recall(served_speed_path(cfg, loaded), est.calibration)
        if line:
            say(line)
    return est


def configured_fixed_ratio(cfg: dict) -> float | None:
    """`fixed_eviction_ratio`: the ratio every goal runs at, the planner off; None (negative) to plan."""
    ratio = float(cfg.get("fixed_eviction_ratio", -1.0))
    return ratio if ratio >= 0 else None


def configured_threads(cfg: dict) -> int:
    return int(cfg.get("threads") or 2)


def configured_loop_window(cfg: dict) -> int:
    """Tokens of verbatim repetition that end an answer as a loop (0 = never)."""
    from .repetition import DEFAULT_LOOP_WINDOW

    return int(cfg.get("loop_window_tokens", DEFAULT_LOOP_WINDOW) or 0)


def configured_press(cfg: dict) -> str:
    """The press the configuration names (the timing model's eviction term is profiled for it)."""
    from .presses import DEFAULT_PRESS

    return str(cfg.get("press", DEFAULT_PRESS))


@compute
def build_engine(cfg: dict, loaded=None, progress: bool = True, say=log.info, served: bool = False,
                 length_predictor=None, learn_online: bool = True) -> BudgetedEngine:
    """``length_predictor``: as for ``build_estimator``. ``learn_online``: False for an engine whose
    runs must not move its timing model (the evaluation's recorder replays them itself)."""
    # One backend (for llamacpp: one llama.cpp context) both profiles, when that is needed, and serves.
    loaded = loaded or load_configured_model(cfg)
    backend = make_backend(cfg.get("backend"), loaded, threads=configured_threads(cfg))
    estimator = build_estimator(cfg, loaded, progress, say, backend=backend, served=served,
                                length_predictor=length_predictor)
    engine = BudgetedEngine(estimator, reject_infeasible=bool(cfg.get("reject_infeasible", True)),
                            learn_online=learn_online, backend=backend,
                            predict_in_prefill=bool(cfg.get("predict_in_prefill", True)),
                            loop_window=configured_loop_window(cfg))
    engine.warm_up()
    return engine
