"""Every architecture family on the fast path: tiny random models of each (timebill.families), made
by llama.cpp's own converter, served right through the carried cache or refused with the fix.

The first run converts each family once (~10 s each, cached under ~/.cache/timebill/families);
later runs take a few seconds per family.
"""
import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: scripts/setup.sh builds it")

from timebill.backends import make_backend, resolve_backend  # noqa: E402
from timebill.backends.llamacpp import CarryRefused, LlamaCppBackend, LlamaCppModel, LlamaCppUnavailable  # noqa: E402
from timebill.families import CARRIED, family_model  # noqa: E402
from timebill.gguf_cache import converted_folder  # noqa: E402
from timebill.models import ModelLoadError, load_model  # noqa: E402
from timebill.presses import make_press  # noqa: E402
from timebill.time_model import kept_positions  # noqa: E402

# Measured on these models (benchmarks/architectures_bench.py): carried vs native max |Δlogit|
# 0.0007-0.0013 on 49- and 182-token prompts; Qwen2/Qwen3/Phi-3 keys carried with Llama's interleave (before
# issue 19) were 4.5-4.7 off (correlation 0.18).
MAX_GAP, MIN_CORR = 0.05, 0.9999


def prompt(n: int, seed: int = 0) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(3, 390, n)]


def gap(a, b) -> tuple[float, float]:
    return float(np.max(np.abs(a - b))), float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def served():
    """family -> (loaded torch model from the GGUF, its llamacpp backend, HF folder), made once per module."""
    made = {}

    def get(family):
        if family not in made:
            hf, gguf = family_model(family)
            loaded = load_model(str(gguf), threads=1)
            made[family] = (loaded, make_backend("llamacpp", loaded, threads=1), hf)
        return made[family]

    yield get
    for _, backend, _ in made.values():
        backend.llama.close()


@pytest.mark.parametrize("family", CARRIED)
def test_a_carried_cache_decodes_like_llama_cpps_own_prefill(served, family):
    loaded, fast, _ = served(family)
    assert fast.check["correlation"] >= 0.9999  # the start-up check passed, and by far
    ids = prompt(60)
    native = fast.llama.prefill(ids)
    native_greedy = [int(np.argmax(native))]
    for i in range(7):
        native_greedy.append(int(np.argmax(fast.llama.decode_one(native_greedy[-1], len(ids) + i))))

    logits, _ = fast.prefill(ids[:-1])
    carried = fast.decode_one(ids[-1], len(ids) - 1).numpy()
    max_gap, corr = gap(carried, native)
    assert max_gap < MAX_GAP and corr > MIN_CORR, f"{family}: carried vs native {max_gap:.4f} / {corr:.6f}"
    carried_greedy = [int(np.argmax(carried))]
    for i in range(7):
        carried_greedy.append(int(np.argmax(fast.decode_one(carried_greedy[-1], len(ids) + i).numpy())))
    assert carried_greedy == native_greedy


@pytest.mark.parametrize("family", CARRIED)
def test_the_torch_side_loaded_from_the_gguf_is_the_hugging_face_model(served, family):
    """transformers' GGUF loader drops Llama-3 rope scaling and Qwen3's head_dim: both are put back
    from the file (timebill/gguf_meta.py). Without the rope frequencies, llama3-rope-scaling was 2.21 / 0.84
    off here (max |Δlogit| / correlation); without head_dim, qwen3 did not load."""
    import torch
    from transformers import AutoModelForCausalLM

    loaded, _, hf = served(family)
    ids = torch.tensor([prompt(60, seed=1)])
    ref = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    with torch.inference_mode():
        want, got = ref(ids).logits[0, -1].numpy(), loaded.model(ids).logits[0, -1].numpy()
    max_gap, corr = gap(got, want)
    assert max_gap < 1e-3, f"{family}: torch from the GGUF vs the HF model {max_gap:.4f} / {corr:.6f}"


@pytest.mark.parametrize("family", ["qwen2", "llama"])  # one NEOX (keys as they are), one NORM (interleaved)
def test_eviction_leaves_exactly_the_kept_positions_in_llama_cpps_cache(served, family):
    from timebill.backends.torch_backend import TorchBackend

    loaded, fast, _ = served(family)
    ids = prompt(80, seed=2)
    n = len(ids)
    _, cached = fast.prefill(ids, make_press("streamingllm", 0.5, n))
    kept = kept_positions(n, 0.5)
    state = fast.llama.read_cache()
    assert cached == kept == len(state.positions)
    ref = TorchBackend(loaded)
    ref.prefill(ids)
    heads = loaded.model.config.num_key_value_heads
    expected = set(range(4)) | set(range(n - (kept - 4), n))  # StreamingLLM: 4 sinks + the most recent
    for layer, full in enumerate(ref.cache.layers):
        keys = full.keys[0]
        if fast.interleave:
            from timebill.backends.llamacpp import hf_to_llama_keys
            keys = hf_to_llama_keys(keys)
        keys = keys.half().numpy()  # [heads, n, dim]
        cells = state.keys[layer].reshape(kept, heads, -1).transpose(1, 0, 2)
        for h in range(heads):
            dist = np.abs(cells[h][:, None, :].astype(np.float32) - keys[h][None].astype(np.float32)).max(-1)
            assert np.all(dist.min(1) == 0) and set(dist.argmin(1)) == expected, f"layer {layer} head {h}"


def test_a_wrong_carry_is_refused_at_start_up_with_the_numbers_and_the_fix(served):
    """The start-up check is what makes an untested architecture fail loudly: here Qwen2's keys are
    carried with Llama's interleave, the layout every model got before issue 19."""
    loaded, _, _ = served("qwen2")
    backend = LlamaCppBackend(loaded, loaded.gguf, threads=1, check=False)
    backend.interleave = True
    with pytest.raises(CarryRefused, match=r"architecture qwen2.*disagree.*correlation 0\.\d+.*backend: torch"):
        backend.check_carry()
    backend.llama.close()


@pytest.fixture(scope="module")
def gemma3():
    """Gemma3 from its Hugging Face folder, beside its GGUF (transformers cannot read the test
    tokenizer back from a Gemma GGUF: it expects sentencepiece scores)."""
    hf, gguf = family_model("gemma3")
    loaded = load_model(str(hf), threads=1)
    loaded.gguf = gguf
    return loaded


def test_sliding_window_layers_are_refused_by_name_and_auto_serves_them_with_torch(gemma3, caplog):
    with pytest.raises(CarryRefused, match=r"model\.gguf \(architecture gemma3\).*sliding-window attention layers \(window 16\).*backend: torch"):
        make_backend("llamacpp", gemma3, threads=1)
    assert resolve_backend("auto", gemma3) == "llamacpp"
    with caplog.at_level("WARNING", logger="timebill"):
        backend = make_backend("auto", gemma3, threads=1)
    assert backend.name == "torch" and "serving" in caplog.text and "gemma3" in caplog.text
    assert resolve_backend("auto", gemma3) == "torch"  # the timing model follows the path really served
    gemma3.carry_refused = None


def test_llama_cpps_own_reason_is_in_the_load_error(tmp_path):
    _, gguf = family_model("qwen2")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(gguf.read_bytes()[: gguf.stat().st_size // 2])
    with pytest.raises(LlamaCppUnavailable, match=r"broken\.gguf: .*llama_model_load.*backend: torch"):
        LlamaCppModel(broken, n_ctx=128, threads=1)


def test_transformers_own_report_is_in_the_conversion_error(tmp_path):
    _, gguf = family_model("gemma3")
    with pytest.raises(ModelLoadError, match=r"model\.gguf \(architecture gemma3\): .*transformers reported: .+"):
        load_model(str(gguf), cache_dir=tmp_path, threads=1)


def test_conversions_are_cached_by_content_not_by_name_and_size(tmp_path):
    _, gguf = family_model("llama")
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for p in (a, b):
        p.parent.mkdir()
    data = bytearray(gguf.read_bytes())
    a.write_bytes(data)
    data[-100:] = bytes(100)  # the same name and size, other weights
    b.write_bytes(data)
    assert converted_folder(a, tmp_path) != converted_folder(b, tmp_path)
    assert converted_folder(a, tmp_path) == converted_folder(gguf, tmp_path).with_name(converted_folder(a, tmp_path).name)


def test_the_llama_cpp_context_is_what_a_job_can_use_not_the_models_maximum(tmp_path):
    from timebill.runtime import load_configured_model

    _, gguf = family_model("qwen2")
    loaded = load_configured_model({"model": str(gguf), "context_tokens": 512, "threads": 1})
    assert loaded.max_context == 512  # the estimator refuses longer jobs
    backend = make_backend("llamacpp", loaded, threads=1)
    assert int(backend.llama.L.llama_n_ctx(backend.llama.ctx)) == 512
    backend.llama.close()
    assert load_configured_model({"model": str(gguf), "context_tokens": 0, "threads": 1}).max_context == 4096


def test_generate_ends_with_one_line_naming_the_file_and_the_fix_when_the_fast_path_refuses(monkeypatch, capsys, tmp_path):
    from timebill import cli
    from timebill.backends import llamacpp

    _, gguf = family_model("qwen2")
    monkeypatch.setattr(llamacpp, "CHECK_MIN_CORRELATION", 1.5)  # no carry can pass: the refusal path
    rc = cli.main(["generate", "hi", "--budget", "5", "--model", str(gguf), "--backend", "llamacpp",
                   "--config", str(_config(tmp_path))])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # before it: only the one-off conversion's progress bar
    assert rc == 1 and "Traceback" not in err and err.count("[timebill] error: ") == 1
    assert last.startswith("[timebill] error: ") and "model.gguf (architecture qwen2)" in last and "backend: torch" in last


def _config(tmp_path):
    path = tmp_path / "timebill.yaml"
    path.write_text(f'/**:\n  ros__parameters:\n    cache_dir: "{tmp_path}"\n    length_predictor: constant\n')
    return path


def test_a_qwen2_gguf_answers_through_the_engine_exactly_as_its_hugging_face_original(tmp_path):
    """The whole default path (planner, torch prefill + press, carried cache, llama.cpp decoding)
    against greedy decoding of the original Hugging Face model."""
    import torch
    from transformers import AutoModelForCausalLM

    from timebill.request import Request
    from timebill.runtime import build_engine
    from timebill.time_model import TimeModel

    hf, gguf = family_model("qwen2")
    tm = tmp_path / "tm.yaml"
    TimeModel(a=0.0, b=1e-4, c=0.01, p=1e-6, q=0.01, fit={"backend": "llamacpp"}).save(tm)
    cfg = {"model": str(gguf), "backend": "llamacpp", "time_model": str(tm), "threads": 1,
           "length_predictor": "constant", "cache_dir": str(tmp_path)}
    engine = build_engine(cfg, progress=False)
    assert engine.backend.name == "llamacpp"
    text = "The robot moves to the kitchen and picks up the red cup."
    result = engine.generate(Request(text, budget=60.0, max_new_tokens=12, fixed_eviction_ratio=0.0, raw=True, length_control=False))

    loaded = engine.estimator.loaded
    ids = loaded.encode_chat(text, raw=True)
    ref = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for _ in range(12):
            nxt = int(ref(torch.tensor([ids + out])).logits[0, -1].argmax())
            if nxt in loaded.eos_token_ids:
                break
            out.append(nxt)
    assert result.generated_tokens == len(out) or result.stop_reason == "eos"
    assert result.text == loaded.decode(out)
    engine.backend.llama.close()


def test_the_metadata_tells_every_process_which_path_serves_a_sliding_window_model():
    """The predictor node never makes a backend: it must still pick the timing model of the path
    the generation node serves. A sliding window in the GGUF metadata decides it for both."""
    from timebill.gguf_meta import carry_blocker, read_facts

    _, gguf = family_model("gemma3")
    assert "sliding-window attention layers (window 16)" in carry_blocker(read_facts(gguf), gguf)
    for family in CARRIED:
        _, gguf = family_model(family)
        assert carry_blocker(read_facts(gguf), gguf) is None, family


def test_a_model_auto_finds_wrong_at_start_up_is_profiled_and_timed_on_torch(monkeypatch, tmp_path):
    from timebill.backends import llamacpp
    from timebill.runtime import load_or_profile_time_model, time_model_path

    loaded = load_model(str(family_model("qwen2")[1]), threads=1)
    monkeypatch.setattr(llamacpp, "CHECK_MIN_CORRELATION", 1.5)  # the start-up check fails
    cfg = {"backend": "auto", "threads": 1, "cache_dir": str(tmp_path), "profile_max_tokens": 128}
    assert "llamacpp" in time_model_path(cfg, loaded).name
    tm = load_or_profile_time_model(cfg, loaded, progress=False)
    assert tm.fit["backend"] == "torch" and loaded.carry_refused
    assert "llamacpp" not in time_model_path(cfg, loaded).name and time_model_path(cfg, loaded).is_file()
