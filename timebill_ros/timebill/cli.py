"""`timebill`: the TimeBill core on the command line (no ROS).

  timebill generate "What is the capital of France?" --budget 3 --policy kill
  timebill profile                      # write this machine's timing model
  timebill rlp distill --model M.gguf   # a response-length head for your own model (cached)
  timebill rlp label|train|eval ...     # the response-length predictor's research commands
  timebill retention                    # the quality kept per eviction ratio (the score planner's curves)
  timebill eval --preset small          # the paper's experiment on this machine
"""
from __future__ import annotations

import argparse
import pathlib
import logging
import os
import sys

EXIT_INVALID = 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="configuration YAML (default: the package's config/timebill.yaml)")
    p.add_argument("--model", help="`embedded`, a Hugging Face model folder or a .gguf file")
    p.add_argument("--time-model", help="timing model YAML (default: this machine's, profiled if missing)")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--backend", help="serving path: auto, llamacpp or torch (default from the config)")


def _config(args) -> dict:
    from .config import load_config

    return load_config(args.config, overrides={"model": args.model, "time_model": args.time_model, "threads": args.threads,
                                               "backend": args.backend, **getattr(args, "extra_overrides", {})})


def add_answer_args(p: argparse.ArgumentParser) -> None:
    """A request's length-control, minimal-answer and answer-format options (this CLI and timebill_ros's)."""
    p.add_argument("--length-control", action=argparse.BooleanOptionalAction, default=None,
                   help="ask for a shorter answer when the predicted one does not fit the budget (default: configured, on)")
    p.add_argument("--min-useful-tokens", type=int, default=0,
                   help="the least answer worth starting, e.g. 1 for a yes/no question (0 = the configured default)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--choice", action="append", default=None, metavar="TEXT", dest="choices",
                     help="the answer is exactly one of these (repeat: --choice kitchen --choice hall)")
    fmt.add_argument("--json-schema", metavar="FILE", help="the answer is a JSON value valid against this JSON Schema file")
    fmt.add_argument("--grammar", metavar="FILE", help="the answer follows this GBNF grammar file (llama.cpp's format)")


def answer_format_args(args) -> dict:
    """The Request fields of ``add_answer_args``' format options, the files read."""
    from .request import InvalidRequest

    out = {"choices": tuple(args.choices or ()), "json_schema": "", "grammar": ""}
    for key, flag in (("json_schema", "--json-schema"), ("grammar", "--grammar")):
        path = getattr(args, key, None)
        if path:
            try:
                out[key] = pathlib.Path(path).expanduser().read_text()
            except OSError as exc:
                raise InvalidRequest(f"{flag} {path}: {exc.strerror or exc}") from None
    return out


def _say(msg: str) -> None:
    print(f"[timebill] {msg}", file=sys.stderr, flush=True)


def cmd_generate(args) -> int:
    from .models import ModelLoadError
    from .request import InvalidRequest, Request, check_request
    from .runtime import build_engine

    try:
        req = Request(prompt=args.prompt, budget=args.budget, system_prompt=args.system or "",
                      max_new_tokens=args.max_new_tokens, policy=args.policy, max_eviction_ratio=args.max_eviction_ratio,
                      raw=args.raw, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                      fixed_eviction_ratio=args.fixed_eviction_ratio, length_control=args.length_control,
                      min_useful_tokens=args.min_useful_tokens, **answer_format_args(args))
        check_request(req)  # before loading anything: a typo should cost milliseconds
        args.extra_overrides = {"press": args.press, "length_predictor": args.length_predictor}
        engine = build_engine(_config(args), say=_say)
    except InvalidRequest as exc:
        _say(f"invalid request: {exc}")
        return EXIT_INVALID
    except (ModelLoadError, FileNotFoundError, ValueError, RuntimeError) as exc:
        # One line that names the file and the fix (llama.cpp's and transformers' own reasons are in
        # it); the traceback only with TIMEBILL_LOG=DEBUG.
        logging.getLogger("timebill").debug("start-up failed", exc_info=True)
        _say(f"error: {exc}")
        return 1

    def on_token(ev):
        sys.stdout.write(ev.text)
        sys.stdout.flush()

    try:
        result = engine.generate(req, on_token=on_token)
    except InvalidRequest as exc:
        _say(f"invalid request: {exc}")
        return EXIT_INVALID
    print()
    if req.answer_format is not None:  # the closing of a cut answer is not streamed
        print(f"answer   {result.text}")
    print(format_result(result, req))
    return 0


def format_result(result, req) -> str:
    plan = result.plan
    lines = []
    if plan is not None:
        lines.append(
            f"plan     prompt {plan.prompt_tokens} tokens | predicted length {plan.predicted_tokens} (bound {plan.predicted_tokens_bound}) | "
            f"eviction ratio {plan.eviction_ratio:.3f} | predicted prefill {plan.predicted_prefill:.3f} s, "
            f"total {plan.predicted_total:.3f} s, worst case {plan.predicted_worst_case:.3f} s | budget {float(req.budget):.3f} s, "
            f"{plan.tokens_that_fit} tokens fit | {'feasible' if plan.feasible else 'NOT feasible: ' + plan.reason}"
        )
        lines.append(f"odds     {100 * plan.completion_probability:.0f} % likely to complete | expected "
                     f"{plan.expected_time:.3f} s, 90th percentile {plan.p90_time:.3f} s | a complete answer keeps "
                     f"{100 * plan.expected_quality:.0f} % of its quality at this ratio")
        if plan.answer_words:
            lines.append(f"brevity  the predicted answer did not fit: asked for at most {plan.answer_words} words")
    lines.append(
        f"outcome  {result.outcome.value.upper()} ({result.stop_reason}) | {result.generated_tokens} tokens | "
        f"prefill {result.prefill_time:.3f} s, decode {result.decode_time:.3f} s, total {result.total_time:.3f} s | "
        f"deadline {'met' if result.deadline_met else 'MISSED'}"
    )
    if result.generated_tokens > 1 and result.decode_time > 0:
        lines[-1] += f" | {(result.generated_tokens - 1) / result.decode_time:.1f} tokens/s"
    if result.message:
        lines.append(f"message  {result.message}")
    return "\n".join(lines)


def cmd_profile(args) -> int:
    from .backends import make_backend
    from .models import ModelLoadError
    from .profiler import DEFAULT_LENGTHS, fit_warning, profile, refit, summary
    from .runtime import configured_press, configured_threads, load_configured_model, time_model_path
    from .time_model import TimeModel

    if args.refit:
        try:
            tm = refit(TimeModel.load(args.refit))
        except (ValueError, OSError) as exc:  # TimeModelError is a ValueError
            _say(f"error: cannot refit {args.refit}: {exc}")
            return 1
        path = tm.save(args.out or args.refit)
        print(f"timing model refitted from its measured points, written to {path}")
        print(summary(tm))
        return 0
    cfg = _config(args)
    try:
        loaded = load_configured_model(cfg)
    except (ModelLoadError, ValueError) as exc:
        _say(f"error: {exc}")
        return 1
    lengths = [n for n in DEFAULT_LENGTHS if n <= args.max_tokens]
    try:
        backend = make_backend(cfg.get("backend"), loaded, threads=configured_threads(cfg))
    except (ValueError, RuntimeError) as exc:
        _say(f"error: {exc}")
        return 1
    tm = profile(loaded, lengths=lengths, repeats=args.repeats, backend=backend, press=configured_press(cfg))
    path = tm.save(args.out or time_model_path(cfg, loaded))
    print(f"timing model for {loaded.name} written to {path}")
    print(summary(tm))
    if fit_warning(tm):
        print(fit_warning(tm))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["rlp"]:
        from .rlp.cli import main as rlp_main

        return rlp_main(argv[1:])
    if argv[:1] == ["retention"]:
        from .evaluation.retention import main as retention_main

        return retention_main(argv[1:])
    if argv[:1] == ["eval"]:
        from .evaluation.run import main as eval_main

        return eval_main(argv[1:])
    parser = argparse.ArgumentParser(prog="timebill", description="Time-budgeted LLM answers (TimeBill), no ROS.")
    sub = parser.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="answer a prompt within a time budget, streaming tokens")
    g.add_argument("prompt")
    g.add_argument("--budget", type=float, required=True, help="seconds, end to end")
    g.add_argument("--policy", default="kill", help="kill | skip_next")
    g.add_argument("--system", help="system prompt")
    g.add_argument("--max-new-tokens", type=int, default=0, help="0 = the configured default")
    # One name for the eviction ratio, as in BudgetedQuery, `timebill_ros query` and the config;
    # --alpha-max and --fixed-alpha, the names these flags had here before, still work (unlisted).
    g.add_argument("--max-eviction-ratio", dest="max_eviction_ratio", type=float,
                   help="largest eviction ratio the planner may choose for this request "
                        "(default: the config's max_eviction_ratio)")
    g.add_argument("--alpha-max", dest="max_eviction_ratio", type=float, help=argparse.SUPPRESS)
    g.add_argument("--fixed-eviction-ratio", dest="fixed_eviction_ratio", type=float,
                   help="skip the planner: evict exactly this ratio")
    g.add_argument("--fixed-alpha", dest="fixed_eviction_ratio", type=float, help=argparse.SUPPRESS)
    g.add_argument("--press", help="kvpress press by name (default from the config: snapkv)")
    g.add_argument("--length-predictor", help="`constant` or `rlp`")
    g.add_argument("--raw", action="store_true", help="no chat template")
    add_answer_args(g)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int)
    _common(g)
    g.set_defaults(func=cmd_generate)

    p = sub.add_parser("profile", help="profile this machine and write the timing model")
    p.add_argument("--out", help="where to write it (default: this machine's file in the cache)")
    p.add_argument("--max-tokens", type=int, default=2048, help="longest prompt to profile")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--refit", metavar="FILE", help="fit a timing model again from the points it keeps, measuring "
                                                   "nothing (a file profiled by an earlier version); written back "
                                                   "unless --out")
    _common(p)
    p.set_defaults(func=cmd_profile)

    sub.add_parser("rlp", help="response-length predictor: distill | label | train | eval (see `timebill rlp -h`)")
    sub.add_parser("retention", help="measure the quality kept per eviction ratio, for the score planner (`timebill retention -h`)")
    sub.add_parser("eval", help="the paper's experiment: completion rate and score against budget (`timebill eval -h`)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("TIMEBILL_LOG", "WARNING"))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
