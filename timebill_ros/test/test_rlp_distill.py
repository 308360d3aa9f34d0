"""`timebill rlp distill` on the tiny random model (plumbing only: its head says nothing about
accuracy), and how `length_predictor: rlp` finds the head it wrote."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from timebill.length_predictor import ConstantLengthPredictor
from timebill.rlp.model import HeadConfig, LengthHead, train_head
from timebill.rlp.predictor import RLPPredictor
from timebill.runtime import distilled_head_path, make_length_predictor, time_model_path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache of its own: the CLI finds it through $TIMEBILL_CACHE, the runtime through cache_dir."""
    monkeypatch.setenv("TIMEBILL_CACHE", str(tmp_path))
    return tmp_path


def _need_prompt_sources():
    from timebill.evaluation import datasets
    from timebill.rlp.data import sharegpt_path

    try:
        sharegpt_path()
        datasets.requests("piqa")
    except FileNotFoundError:
        pytest.skip("the evaluation data sets are not installed (scripts/setup.sh --eval)")


def _rlp(cache) -> dict:
    return {"length_predictor": "rlp", "cache_dir": str(cache), "model": "test:tiny", "constant_expected_tokens": 64}


def test_distill_writes_a_head_into_the_cache_that_rlp_then_serves(tiny, tiny_time_model, cache, capsys):
    _need_prompt_sources()
    from timebill.config import load_config
    from timebill.rlp import cli

    # This machine's timing model for the tiny model, where the labelling looks for it (else it
    # would profile one: seconds more, nothing more tested).
    tiny_time_model.save(time_model_path(load_config(), tiny))
    argv = ["distill", "--prompts", "40", "--max-new-tokens", "8", "--quiet"]
    assert cli.main(argv, loaded=tiny) == 0
    out = capsys.readouterr().out
    head_path = distilled_head_path({"cache_dir": str(cache)}, tiny)
    assert head_path == cache / "rlp" / tiny.name / "head.pt" and head_path.is_file()
    assert f"head for {tiny.name}: {head_path}" in out and "validation MAE" in out and "the constant predictor" in out
    assert "took" in out and "note: the head shipped" not in out
    labels = [json.loads(line) for line in (head_path.parent / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 40 and all(r.get("cap") == 8 for r in labels if "length" in r)

    pred = make_length_predictor(_rlp(cache), tiny)
    assert isinstance(pred, RLPPredictor) and pred.head.cfg.model_name == tiny.name
    est = pred.predict(tiny.encode_chat("Where is the red cup?"), 8)
    assert 0 <= est.predicted_tokens <= est.predicted_tokens_bound <= 8

    # Run again: every prompt is labelled already, only the head is trained again.
    assert cli.main(argv, loaded=tiny) == 0
    assert "40 already labelled, 0 to label" in capsys.readouterr().out


def test_without_a_distilled_head_the_constant_predictor_serves_and_the_warning_names_the_command(tiny, cache, caplog):
    with caplog.at_level("WARNING", logger="timebill"):
        pred = make_length_predictor(_rlp(cache), tiny)
    assert isinstance(pred, ConstantLengthPredictor)
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "`timebill rlp distill --model test:tiny`" in msg
    assert str(distilled_head_path({"cache_dir": str(cache)}, tiny)) in msg   # where it looked
    assert "the shipped head" in msg and "is for SmolLM2-135M-Instruct" in msg


def _head_for(model_name: str, hidden: int) -> LengthHead:
    feats = torch.randn(40, 2 * hidden)
    y = np.arange(40) * 6 + 1
    cfg = HeadConfig(layers=1, hidden=8, max_input_tokens=32, model_name=model_name, model_hidden=hidden, bound_factor=2.0)
    return train_head(cfg, feats, y, feats, y, epochs=1)[0]


@pytest.mark.parametrize("name, hidden", [("another-model", 64), ("tiny-test-model", 32)])
def test_a_distilled_head_of_another_model_is_refused_naming_it(tiny, cache, caplog, name, hidden):
    """A head copied in by hand, or one of another model file of the same name: its layer states
    are not this model's, so it is not served, whatever its size."""
    path = distilled_head_path({"cache_dir": str(cache)}, tiny)
    _head_for(name, hidden).save(path)
    with caplog.at_level("WARNING", logger="timebill"):
        pred = make_length_predictor(_rlp(cache), tiny)
    assert isinstance(pred, ConstantLengthPredictor)
    assert any(f"the distilled head {path} is for {name} (hidden {hidden})" in r.getMessage() for r in caplog.records)


def test_labels_of_another_cap_stop_distill_before_any_work(tiny, cache, capsys):
    from timebill.rlp import cli

    labels = distilled_head_path({"cache_dir": str(cache)}, tiny).parent / "labels.jsonl"
    labels.parent.mkdir(parents=True)
    labels.write_text(json.dumps({"id": "piqa/1", "source": "piqa", "length": 3, "cap": 16}) + "\n")
    assert cli.main(["distill", "--max-new-tokens", "8", "--quiet"], loaded=tiny) == 1
    out = capsys.readouterr().out
    assert f"{labels} holds labels made with the cap [16], not 8" in out and "--max-new-tokens 16" in out


def test_the_prompts_are_drawn_from_every_source_in_the_shipped_heads_proportions():
    from timebill.rlp.distill import DISTILL_MIX, scaled_mix

    assert set(DISTILL_MIX) == {"sharegpt", "narrativeqa", "qasper", "everyday", "piqa", "nq_open", "brief", "asks"}
    assert scaled_mix(1500) == DISTILL_MIX
    small = scaled_mix(10)
    assert min(small.values()) == 1 and small["asks"] == max(small.values())
    assert sum(scaled_mix(200).values()) == 200 and sum(scaled_mix(37).values()) == 37
