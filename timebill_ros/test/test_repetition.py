"""An answer caught in a loop ends there (timebill.repetition, config `loop_window_tokens`): what
counts as a loop, and what a goal that loops gets back, on the real embedded model."""
import pytest

from timebill.constrained import token_pieces
from timebill.engine import BudgetedEngine
from timebill.estimator import Estimator
from timebill.repetition import LoopGuard
from timebill.request import Outcome, Request


def first_catch(loaded, text: str, window: int = 32):
    """(tokens read when the guard caught a loop or None, the text before the repeated span)."""
    ids = loaded.encode_text(text)
    guard = LoopGuard(window, token_pieces(loaded))
    for n, token in enumerate(ids, 1):
        if guard.push(token):
            return n, loaded.decode(ids[:guard.repeat_start])
    return None, text


def test_a_paragraph_said_again_is_a_loop_caught_when_a_window_has_repeated(embedded):
    said = "The robot moved the red umbrella from the hall closet to the kitchen so that it could dry near the window. "
    n, kept = first_catch(embedded, "Here is what happened. " + said * 4)
    # caught once a whole window (32 tokens: more than the sentence) has come again
    assert n is not None and n <= len(embedded.encode_text("Here is what happened. " + said)) + 32
    assert kept.count("umbrella") == 1 and kept.startswith("Here is what happened.")


def test_a_numbered_list_repeating_one_item_is_a_loop(embedded):
    text = "Steps:\n" + "".join(f"{i}. {i}.\nA robotic arm can pick up a cup with a robotic arm.\n" for i in range(1, 12))
    n, kept = first_catch(embedded, text)
    assert n is not None
    assert kept.count("robotic arm can pick up") <= 2


def test_a_number_that_runs_on_is_a_loop(embedded):
    n, kept = first_catch(embedded, "There are 123,245,920" + ",000" * 60)
    assert n is not None and kept.startswith("There are 123,245,920")


def test_counting_and_a_sound_answer_are_not_loops(embedded):
    assert first_catch(embedded, "\n".join(f"{i}. {i}" for i in range(1, 101)))[0] is None
    assert first_catch(embedded, " ".join(str(7 * i) for i in range(1, 300)))[0] is None
    answer = ("To pick up a cup, the arm first moves above it with the gripper open. It then lowers until the "
              "fingers surround the cup, closes the gripper with a light force, checks the grip with its force "
              "sensor, and lifts slowly. If the cup slips, the arm sets it down, opens the gripper and tries "
              "again from a slightly lower height, closer to the cup's centre of mass.")
    assert first_catch(embedded, answer)[0] is None


def test_a_window_under_one_token_is_refused(embedded):
    with pytest.raises(ValueError, match="at least 1 token"):
        LoopGuard(0, token_pieces(embedded))


# --- a goal that loops --------------------------------------------------------------------------

LOOPING = "List the steps to pick up a cup with a robot arm."  # the embedded model repeats its list item


def engine(embedded, fast_backend, tm, loop_window):
    return BudgetedEngine(Estimator(embedded, tm, default_max_new_tokens=256), reject_infeasible=False,
                          learn_online=False, backend=fast_backend, loop_window=loop_window)


def test_a_goal_caught_in_a_loop_completes_early_without_the_repeat(embedded, fast_backend, embedded_fast_time_model):
    req = Request(LOOPING, budget=60.0, policy="skip_next", fixed_eviction_ratio=0.0)
    looping = engine(embedded, fast_backend, embedded_fast_time_model, 0).generate(req)
    assert looping.stop_reason == "max_tokens"  # left alone, it runs to its cap

    streamed = []
    r = engine(embedded, fast_backend, embedded_fast_time_model, 32).generate(req, on_token=lambda e: streamed.append(e.text))
    assert r.outcome is Outcome.COMPLETED and r.stop_reason == "loop"
    assert "stopped a loop" in r.message
    assert r.generated_tokens < looping.generated_tokens
    # the same answer up to the loop and what was streamed, its repeated span once
    assert looping.text.startswith(r.text) and r.text == "".join(streamed)
    # The repeated item is the looping answer's most frequent line; its words depend on the CPU's
    # llama.cpp kernels (an AMX Xeon and an AMD EPYC decode different greedy paths), so read it.
    lines = [x for x in looping.text.splitlines() if x.strip()]
    item = max(set(lines), key=lines.count)
    assert lines.count(item) >= 3
    assert r.text.count(item) < looping.text.count(item)


def test_answers_kept_to_a_format_are_not_watched(embedded, fast_backend, embedded_fast_time_model):
    r = engine(embedded, fast_backend, embedded_fast_time_model, 1).generate(
        Request("Is a robot arm a machine? Answer yes or no.", budget=60.0, policy="skip_next", fixed_eviction_ratio=0.0,
                choices=("yes", "no")))
    assert r.completed and r.text in ("yes", "no") and r.stop_reason != "loop"


def test_batched_labels_end_loops_as_serving_does(embedded):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: scripts/setup.sh builds it")
    from timebill.rlp.batch_label import BatchLabeller

    # llama.cpp's own prefill takes another near-tie on LOOPING (it ends at 96 tokens); this one loops there
    ids = embedded.encode_chat("Explain step by step how a robot arm picks up a box.")
    ended = {}
    for window in (0, 32):
        labeller = BatchLabeller(embedded.gguf, embedded.eos_token_ids, slots=2, cap=256, max_prompt_tokens=len(ids),
                                 threads=1, loop_window=window, pieces=token_pieces(embedded))
        try:
            labeller.lengths([("a", ids)], lambda key, n, stop, s: ended.__setitem__(window, (n, stop)))
        finally:
            labeller.close()
    assert ended[0] == (256, "max_tokens")
    assert ended[32][1] == "loop" and ended[32][0] < 256
