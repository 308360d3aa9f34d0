"""``timebill rlp distill|label|train|eval`` (also ``python -m timebill.rlp ...``).

  distill  a head for your own model, on this machine: labels a served-like mix, trains, and puts
           the head into the cache, where `length_predictor: rlp` finds it (timebill/rlp/distill.py)
  label  generate distillation labels (the target model's own greedy response lengths), resumable
         (timebill/rlp/label_runs.py)
  train  extract backbone features, choose L on the validation split, train the B=16 classifier,
         calibrate its bound on the validation split, save the head (timebill/rlp/train.py)
  eval   the test-split table (bucket classifiers, regression head, constant), bounds' coverage, PNG
         (timebill/rlp/head_report.py)

Nothing is written into the repository's tracked files unless a flag says so (`distill` writes only
into the cache, <cache>/rlp/<model>/): `label` needs
``--labels``, `train` needs ``--out`` or ``--ship``, `eval` needs ``--out-dir`` or ``--write-docs``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from .features import CANDIDATE_LAYERS

REPO = pathlib.Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"
# The served-like mix as served since loops end answers (loop_window_tokens 32); the same prompts with
# loops run to the cap: rlp_labels_mix_SmolLM2-135M-Instruct.jsonl (docs/RLP.md)
DEFAULT_LABELS = DOCS / "data" / "rlp_labels_loops_SmolLM2-135M-Instruct.jsonl"
SHAREGPT_LABELS = DOCS / "data" / "rlp_labels_SmolLM2-135M-Instruct.jsonl"  # the first head's (torch, cap 256)
DEFAULT_MIX = "sharegpt=150,narrativeqa=130,qasper=100,everyday=220,piqa=120,nq_open=80,brief=100"
DEFAULT_WORK = REPO / "runs" / "rlp"  # not tracked (.gitignore)
_DEFAULT_LAYERS = ",".join(map(str, CANDIDATE_LAYERS))


def _common(p):
    p.add_argument("--config", default=None, help="timebill.yaml (default: the package's)")
    p.add_argument("--model", default=None, help="model spec (default: config `model`, i.e. embedded)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: config `threads`)")
    p.add_argument("--labels", default=None, help=f"labels file (JSON lines: id, length). train and eval read "
                   f"{DEFAULT_LABELS.name} by default; label appends to it, so there it must be given (the "
                   f"tracked files: {DEFAULT_LABELS.name} for --mix, {SHAREGPT_LABELS.name} without)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="timebill rlp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("distill", help="label, train and cache a head for the model (resumable)")
    p.add_argument("--config", default=None, help="timebill.yaml (default: the package's); its cache_dir is where the head goes")
    p.add_argument("--model", default=None, help="model spec (default: config `model`, i.e. embedded)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: config `threads`)")
    p.add_argument("--prompts", type=int, default=None, help="prompts to label (default 200; more take longer "
                   "and make a better head)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="label cap (default: config default_max_new_tokens)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p = sub.add_parser("label", help="generate labels (resumable)")
    _common(p)
    p.add_argument("--max-new-tokens", type=int, default=None, help="label cap (default: config default_max_new_tokens)")
    p.add_argument("--mix", nargs="?", const=DEFAULT_MIX, default=None,
                   help=f"label the served-like mix (timebill/rlp/sources.py) one prompt at a time on the serving "
                        f"backend: SOURCE=COUNT,... (default {DEFAULT_MIX}); without it: the ShareGPT-only batched torch labelling")
    p.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="skip longer chat-encoded prompts (default 512; with --mix 2048, the longest the timing model is profiled for)")
    p.add_argument("--slots", type=int, default=1,
                   help="with --mix: answers decoded together in one llama.cpp context (timebill/rlp/batch_label.py; "
                        "1 = one at a time on the serving engine, as a goal is served)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batch-tokens", type=int, default=4096, help="cap on batch size x longest prompt")
    p.add_argument("--limit", type=int, default=None, help="label at most this many new prompts")
    p.add_argument("--work", default=str(DEFAULT_WORK), help="where the prefill's predictor features are cached")
    p.add_argument("--shard", default="0/1", help="K/N: label only prompts with index %% N == K (run N processes, "
                   "e.g. one thread each on a shared machine; they append to the same labels file)")
    p.add_argument("--no-features", action="store_true", help="do not keep the prefill's features for `train`")
    p.add_argument("--verify", type=int, default=0,
                   help="only re-generate this many labelled prompts one at a time (batch size 1, as served) "
                        "and compare with the batched labels")
    p.add_argument("--measure-steps", default="",
                   help="only time full-batch decoding steps at these batch sizes, e.g. 1,16,32,64")
    p.add_argument("--measure-batching", default="", help="only measure throughput at these batch sizes, e.g. 1,8,16,32")
    p = sub.add_parser("train", help="choose L, train and save the shipped head")
    _common(p)
    p.add_argument("--layers", default=_DEFAULT_LAYERS, help=f"candidate L values (default {_DEFAULT_LAYERS})")
    p.add_argument("--fixed-layers", type=int, default=None, help="skip the sweep and use this L")
    p.add_argument("--width", type=int, default=16, help="bucket width B (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="label cap the labels were made with (default: config default_max_new_tokens)")
    p.add_argument("--coverage", type=float, default=0.95, help="target coverage of the calibrated bound")
    p.add_argument("--max-input-tokens", type=int, default=512)
    p.add_argument("--tolerance", type=float, default=None,
                   help="choose the smallest L whose validation MAE is within this fraction of the best "
                        "(default: within one standard error of the best's MAE)")
    p.add_argument("--work", default=str(DEFAULT_WORK), help="feature cache and sweep results")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", default=None, help="head file to write (one of --out and --ship is required)")
    out.add_argument("--ship", action="store_true",
                     help="replace the head shipped with the package (in timebill/data/, tracked in git)")
    p = sub.add_parser("eval", help="test-split table, bounds, figure")
    _common(p)
    p.add_argument("--head", default=None, help="head file (default: the shipped one)")
    p.add_argument("--work", default=str(DEFAULT_WORK))
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out-dir", default=None,
                     help="writes data/rlp_eval.json and the figures (rlp_eval.png, rlp_per_source.png, "
                          "rlp_reliability.png, rlp_remaining.png) here (one of --out-dir and --write-docs is required)")
    out.add_argument("--write-docs", action="store_true",
                     help="write them into the repository's docs/, replacing the tracked ones docs/RLP.md shows")
    p.add_argument("--folds", type=int, default=5, help="folds of the per-source out-of-fold table (default 5)")
    return ap


def _check_outputs(ap, args) -> None:
    """Where a command would write into the repository's tracked files, the user must have said so;
    the old usage fails with the flag that now says it."""
    writes_labels = args.cmd == "label" and not (args.verify or args.measure_steps or args.measure_batching)
    if writes_labels and args.labels is None:
        ap.error(f"label appends to a labels file: give --labels FILE (to continue the tracked labels: "
                 f"--labels {(DEFAULT_LABELS if args.mix else SHAREGPT_LABELS).relative_to(REPO)})")
    if args.cmd == "train" and not (args.out or args.ship):
        ap.error("train writes a head: give --out FILE, or --ship to replace the one shipped with the package")
    if args.cmd == "eval" and not (args.out_dir or args.write_docs):
        ap.error(f"eval writes a report and figures: give --out-dir DIR, or --write-docs for {DOCS.relative_to(REPO)}/")


def _load(args, loaded):
    """The configuration, and the model: ``loaded`` when given (tests pass the tiny model), else the configured one."""
    from ..config import load_config
    from ..models import load_model
    from ..testing import TEST_TINY, tiny_test_model

    # --model and --threads in the configuration too: the timing model and the distilled head are
    # found by them (runtime.time_model_path, runtime.distill_dir).
    cfg = load_config(args.config, overrides={"model": args.model, "threads": args.threads})
    if loaded is not None:
        return cfg, loaded
    spec = cfg.get("model") or "embedded"
    return cfg, tiny_test_model() if spec == TEST_TINY else load_model(spec, cfg.get("cache_dir") or None,
                                                                       threads=cfg.get("threads"))


def cmd_distill(args, cfg, loaded) -> int:
    from .distill import DEFAULT_PROMPTS, distill

    return distill(loaded, cfg, prompts=args.prompts or DEFAULT_PROMPTS, cap=args.max_new_tokens,
                   progress=not args.quiet)


def cmd_label(args, cfg, loaded) -> int:
    from . import label_runs

    cap = int(args.max_new_tokens or cfg.get("default_max_new_tokens", 256))
    if args.mix:
        return label_runs.label_mix(loaded, cfg, args.labels, cap, label_runs.parse_mix(args.mix),
                                    max_prompt_tokens=args.max_prompt_tokens or 2048, work=pathlib.Path(args.work),
                                    slots=args.slots, progress=not args.quiet)
    max_prompt_tokens = args.max_prompt_tokens or 512
    prompts = label_runs.sharegpt_prompts(loaded, cap, max_prompt_tokens)
    if args.verify:
        return label_runs.verify(loaded, prompts, args.labels, cap, args.verify)
    if args.measure_steps or args.measure_batching:
        return label_runs.measure(loaded, prompts, cap, max_prompt_tokens,
                                  steps=_ints(args.measure_steps), batching=_ints(args.measure_batching))
    shard, num_shards = (int(x) for x in args.shard.split("/"))
    return label_runs.label_sharegpt(loaded, prompts, args.labels, cap, max_prompt_tokens, batch_size=args.batch_size,
                                     max_batch_tokens=args.max_batch_tokens, limit=args.limit,
                                     work=pathlib.Path(args.work), shard=shard, num_shards=num_shards,
                                     keep_features=not args.no_features, progress=not args.quiet)


def cmd_train(args, cfg, loaded) -> int:
    from .predictor import default_head_path
    from .train import train

    layers = [args.fixed_layers] if args.fixed_layers else _ints(args.layers)
    out = default_head_path() if args.ship else pathlib.Path(args.out)
    return train(loaded, cfg, args.labels, out, pathlib.Path(args.work), layers=layers, width=args.width,
                 max_new_tokens=args.max_new_tokens, coverage=args.coverage, max_input_tokens=args.max_input_tokens,
                 tolerance=args.tolerance, progress=not args.quiet)


def cmd_eval(args, cfg, loaded) -> int:
    from .head_report import evaluate_head
    from .predictor import default_head_path

    out = DOCS if args.write_docs else pathlib.Path(args.out_dir)
    return evaluate_head(loaded, args.head or default_head_path(), args.labels, pathlib.Path(args.work), out,
                         folds=args.folds, progress=not args.quiet)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")] if text else []


def main(argv=None, loaded=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _check_outputs(ap, args)
    if getattr(args, "labels", "") is None:  # distill keeps its labels in the cache
        args.labels = str(SHAREGPT_LABELS if args.cmd == "label" and not args.mix else DEFAULT_LABELS)
    if args.cmd == "distill":
        # Loading, labelling and training on the one compute thread, as a node runs its model work:
        # model code run from a second thread costs every llama.cpp decoding step an OpenMP wake-up
        # (timebill/compute_thread.py), and the labels are served generations timed as such.
        from ..compute_thread import run

        return run(_run, args, loaded)
    return _run(args, loaded)


def _run(args, loaded) -> int:
    cfg, loaded = _load(args, loaded)
    return {"distill": cmd_distill, "label": cmd_label, "train": cmd_train, "eval": cmd_eval}[args.cmd](args, cfg, loaded)


if __name__ == "__main__":
    sys.exit(main())
