"""The goal commands, `timebill_ros query` and `timebill_ros estimate`: an action client that
streams the answer and prints the result, and the what-if estimate of the predictor node."""
from __future__ import annotations

import sys

from timebill.cli import answer_format_args

from .exit_codes import EXIT_GOAL_FAILED, EXIT_NO_SYSTEM, EXIT_OK
from .names import configured_names


def client_from_args(args, **kw):
    """A TimeBillClient on the names the nodes were configured with (``--config``, ``--namespace``)."""
    from .client import TimeBillClient

    names = configured_names(args.config)
    return TimeBillClient(namespace=args.namespace, action_name=names["action_name"],
                          estimate_service=names["estimate_service"], **kw)


def print_result(result, status_name: str, budget: float, out=sys.stdout):
    from .convert import OUTCOME_NAMES, seconds

    name = OUTCOME_NAMES.get(result.outcome, str(result.outcome))
    print(f"\n--- {name} (goal status {status_name}) ---", file=out)
    print(f"deadline {'met' if result.deadline_met else 'MISSED'}: {seconds(result.elapsed):.3f} s of a "
          f"{budget:.3f} s budget (predicted {seconds(result.predicted_time):.3f} s, "
          f"prefill {seconds(result.prefill_time):.3f} s)", file=out)
    print(f"tokens: prompt {result.prompt_tokens}, generated {result.generated_tokens} "
          f"(predicted {result.predicted_tokens}, bound {result.predicted_tokens_bound}); "
          f"eviction ratio {result.eviction_ratio:.2f}", file=out)
    print(f"at acceptance: {100 * result.completion_probability:.0f} % likely to complete, expected "
          f"{seconds(result.expected_time):.3f} s, 90th percentile {seconds(result.p90_time):.3f} s; a complete answer "
          f"keeps {100 * result.expected_quality:.0f} % of its quality at this ratio", file=out)
    if result.answer_word_limit:
        print(f"length control: the predicted answer did not fit; asked for at most {result.answer_word_limit} words",
              file=out)
    if result.closed_early:
        print(f"closed early: the answer was cut and closed with the shortest ending its format allows: {result.text}",
              file=out)
    if result.message:
        print(f"message: {result.message}", file=out)


def run_query(client, args, out=sys.stdout) -> int:
    def on_token(text, _fb):
        out.write(text)
        out.flush()

    h = client.query(args.prompt, args.budget, policy=args.policy, system_prompt=args.system,
                     max_new_tokens=args.max_new_tokens, max_eviction_ratio=args.max_eviction_ratio,
                     on_token=on_token, length_control=args.length_control, min_useful_tokens=args.min_useful_tokens,
                     **answer_format_args(args))
    try:
        h.wait_accepted(timeout=10.0)
    except Exception as exc:
        print(f"goal not accepted: {exc}", file=sys.stderr)
        return EXIT_GOAL_FAILED
    from .liveness import GoalLost

    try:
        # Skip-Next may run past the budget; the queue may hold others: wait generously.
        result = h.result(timeout=args.budget + 120.0)
    except KeyboardInterrupt:
        print("\ncanceling...", file=sys.stderr)
        h.cancel()
        result = h.result(timeout=10.0)
    except GoalLost as exc:
        print(f"\ngoal lost: {exc}", file=sys.stderr)
        return EXIT_GOAL_FAILED
    print_result(result, h.status_name, args.budget, out)
    from .convert import ERROR_OUTCOMES

    return EXIT_GOAL_FAILED if result.outcome in ERROR_OUTCOMES else EXIT_OK


def cmd_query(args) -> int:
    with client_from_args(args) as client:
        if not client.wait_until_ready(timeout=args.wait):
            print(f"no action server {client.action_name} within {args.wait} s: is the generation node running? "
                  f"(timebill_ros bringup)", file=sys.stderr)
            return EXIT_NO_SYSTEM
        return run_query(client, args)


def cmd_estimate(args) -> int:
    from .convert import seconds

    with client_from_args(args) as client:
        try:
            r = client.estimate(args.prompt, args.budget, system_prompt=args.system,
                                max_new_tokens=args.max_new_tokens, max_eviction_ratio=args.max_eviction_ratio,
                                timeout=args.wait, length_control=args.length_control,
                                min_useful_tokens=args.min_useful_tokens, **answer_format_args(args))
        except TimeoutError as exc:
            print(f"{exc}: is the predictor node running? (timebill_ros bringup)", file=sys.stderr)
            return EXIT_NO_SYSTEM
    if not r.valid:
        print(r.message)
        return EXIT_GOAL_FAILED
    print(f"prompt tokens {r.prompt_tokens}; predicted {r.predicted_tokens} tokens (bound {r.predicted_tokens_bound})")
    print(f"eviction ratio {r.eviction_ratio:.2f}; predicted {seconds(r.predicted_total):.3f} s "
          f"(prefill {seconds(r.predicted_prefill):.3f} s, worst case {seconds(r.predicted_worst_case):.3f} s) "
          f"of {args.budget:.3f} s")
    print("worst case fits the budget" if r.feasible else f"worst case does not fit: {r.reason}")
    print(f"{100 * r.completion_probability:.0f} % likely to complete in the budget; expected "
          f"{seconds(r.expected_time):.3f} s, 90th percentile {seconds(r.p90_time):.3f} s")
    if r.answer_word_limit:
        print(f"length control would ask for at most {r.answer_word_limit} words (the estimate is for that prompt)")
    if r.answer_format:
        print(f"the predicted length is bounded by the answer format ({r.answer_format})")
    return EXIT_OK
