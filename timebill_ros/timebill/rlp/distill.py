"""`timebill rlp distill`: a length head for the configured model, made on this machine by one command.

It labels a served-like mix of prompts (``label_runs.label_mix``: each served one at a time by the
serving engine, greedy, no eviction, as a goal is), trains the head on those labels
(``train.train``: the depth L chosen on the validation split among those the labelling kept
features for, then the bucket classifier and its calibrated bound) and writes labels, features
and head into the cache (``runtime.distill_dir``: <cache>/rlp/<model>/), where
``length_predictor: rlp`` finds the head at the next start. Nothing goes into the repository.
Stopped, it resumes where it was: labels are appended one prompt at a time, and the same
``--prompts`` draws the same prompts again.
"""
from __future__ import annotations

import time

from .features import MIX_LAYERS
from .cli import DEFAULT_MIX
from .label_runs import label_mix, parse_mix

# The shipped head's labels (docs/RLP.md): the served-like mix and 600 `asks` prompts; a distilled
# head draws its prompts from the sources in the same proportions.
DISTILL_MIX = {**parse_mix(DEFAULT_MIX), "asks": 600}
DEFAULT_PROMPTS = 200  # the run README.md times; more prompts, a better head (the shipped one had 1,499)


def scaled_mix(total: int, mix: dict[str, int] = DISTILL_MIX) -> dict[str, int]:
    """``total`` prompts from the mix's sources in its proportions, at least one from each (so a
    total below the number of sources gives a few more)."""
    whole = sum(mix.values())
    exact = {name: total * n / whole for name, n in mix.items()}
    counts = {name: max(1, int(x)) for name, x in exact.items()}
    # What rounding down left over goes to the sources that lost most by it: `--prompts 200` labels 200.
    short = max(0, total - sum(counts.values()))
    for name in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True)[:short]:
        counts[name] += 1
    return counts


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def distill(loaded, cfg: dict, prompts: int = DEFAULT_PROMPTS, cap: int | None = None, progress: bool = True,
            say=print) -> int:
    """Label ``prompts`` prompts with the answer-length cap ``cap`` (default: the config's
    ``default_max_new_tokens``), train, save the head where the runtime looks for it. 0 on success."""
    from ..runtime import distill_dir, distilled_head_path
    from .labelled import labelled, named_caps, split_indices
    from .model import LengthHead
    from .train import train

    t0 = time.monotonic()
    cap = int(cap or cfg.get("default_max_new_tokens", 256))
    folder = distill_dir(cfg, loaded)
    labels, work, head_path = folder / "labels.jsonl", folder / "work", distilled_head_path(cfg, loaded)
    # Labels of another cap would train a head whose top bucket means two different things.
    other = named_caps(labelled(labels)) - {cap}
    if other:
        say(f"error: {labels} holds labels made with the cap {sorted(other)}, not {cap}: run again with "
            f"--max-new-tokens {min(other)}, or remove {folder} to start afresh")
        return 1
    work.mkdir(parents=True, exist_ok=True)
    shipped = _shipped_is_for(loaded)
    if shipped:  # said before the run, not only after it: the user may not want to spend it
        say(f"note: the head shipped with the package is {loaded.name}'s, and `length_predictor: rlp` serves it "
            f"first; the one made here serves only where the config names its file")
    mix = scaled_mix(prompts)
    say(f"distilling a length head for {loaded.name} into {folder}\n"
        f"step 1/2, labels: {sum(mix.values())} prompts, each served as a goal is (greedy, no eviction, answers "
        f"capped at {cap} tokens); stopped, the same command resumes")
    try:
        rc = label_mix(loaded, cfg, labels, cap, mix, max_prompt_tokens=2048, work=work, slots=1, progress=progress)
    except FileNotFoundError as exc:  # the prompts' data sets: their message names the setup step
        say(f"error: {exc}")
        return 1
    if rc:
        return rc
    t_label = time.monotonic() - t0
    layers = [L for L in MIX_LAYERS if L < loaded.num_layers]  # the depths the labelling kept features for
    say(f"step 2/2, training: depth L among {layers} on the validation split, then the head and its bound")
    rc = train(loaded, cfg, labels, head_path, work, layers=layers, max_new_tokens=cap, progress=progress)
    if rc:
        say(f"error: too few labelled prompts to train on: run again with more, e.g. --prompts {2 * prompts}")
        return rc
    extra = LengthHead.load(head_path).cfg.extra
    total = time.monotonic() - t0
    # The constant predictor's error on the same prompts: what the head is better than, or not.
    recs = labelled(labels)
    val = [min(int(recs[i]["length"]), cap) for i in split_indices(recs)["val"]]
    constant = int(cfg.get("constant_expected_tokens", 64))
    constant_mae = sum(abs(y - constant) for y in val) / len(val)
    say(f"head for {loaded.name}: {head_path}\nvalidation MAE {extra['val_mae']:.1f} tokens, the constant "
        f"predictor's ({constant} tokens) {constant_mae:.1f} ({extra['train_prompts']} training, "
        f"{extra['val_prompts']} validation prompts); took {_minutes(total)} "
        f"(labelling {_minutes(t_label)}, training {_minutes(total - t_label)})")
    if shipped:
        say(f"the shipped head serves {loaded.name} under `length_predictor: rlp`; to serve this one instead: "
            f"length_predictor: {head_path}")
    else:
        say("`length_predictor: rlp` (the default) serves it from the next start of the node or CLI")
    return 0


def _shipped_is_for(loaded) -> bool:
    """Whether the head shipped in timebill/data/ is this model's (``runtime.rlp_head_for`` serves it first)."""
    from .model import HeadLoadError, LengthHead
    from .predictor import default_head_path

    path = default_head_path()
    try:
        return path.is_file() and LengthHead.load(path).cfg.model_name == loaded.name
    except HeadLoadError:
        return False
