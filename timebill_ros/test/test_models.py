"""Loading models: the embedded SmolLM2, paths that are wrong, the tiny test fixture."""
import os
import time

import pytest

from timebill.models import EMBEDDED, ModelLoadError, load_model


def test_a_missing_model_path_is_a_clear_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=f"does not exist: {missing}"):
        load_model(str(missing))


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_model(str(tmp_path))


def test_a_file_that_is_not_a_gguf_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "weights.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ModelLoadError, match="weights.gguf"):
        load_model(str(bad), cache_dir=tmp_path / "cache")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_an_unreadable_model_path_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    with pytest.raises(ModelLoadError, match="not readable"):
        load_model(str(locked))


def test_the_tiny_test_model_builds_in_under_a_second(tiny):
    from timebill.testing import tiny_test_model

    t0 = time.perf_counter()
    m = tiny_test_model(seed=1)
    assert time.perf_counter() - t0 < 1.0
    assert m.name == "tiny-test-model" and m.eos_token_ids == [m.tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_the_embedded_model_answers_and_stops_at_end_of_turn(tmp_path):
    """The real embedded model (converted once into the user cache; ~20 s the first time)."""
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator
    from timebill.request import Outcome, Request
    from timebill.time_model import TimeModel

    loaded = load_model(EMBEDDED, threads=2)
    assert loaded.name == "SmolLM2-135M-Instruct" and loaded.model.config.num_hidden_layers == 30
    im_end = loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in loaded.eos_token_ids and loaded.tokenizer.convert_tokens_to_ids("<|im_start|>") not in loaded.eos_token_ids
    # Weights live in ordinary memory, not in the mmapped cache file.
    assert all(p.data.is_contiguous() for p in loaded.model.parameters())
    generous = TimeModel(a=0, b=1e-3, c=0.1, p=1e-5, q=0.06)
    engine = BudgetedEngine(Estimator(loaded, generous, default_max_new_tokens=32), learn_online=False)
    r = engine.generate(Request("What is the capital of France?", budget=60))
    assert r.outcome is Outcome.COMPLETED and r.stop_reason == "eos"
    assert "Paris" in r.text
