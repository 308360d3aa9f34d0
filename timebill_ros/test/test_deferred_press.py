"""Evicting after the prefill: the same positions the press keeps inside it, and the states a
length predictor reads, with the ratio chosen in between."""
import pytest
import torch

from timebill.backends import make_backend
from timebill.deferred_press import DeferredPress, pool
from timebill.presses import make_press
from timebill.rlp.model import layer_features
from timebill.time_model import kept_positions

PROMPT = "The robot moves to the kitchen and picks up the red cup. " * 6
SCORER_PRESSES = ["snapkv", "streamingllm", "knorm", "expected_attention", "tova"]


def cache_after(backend, ids, press):
    backend.prefill(ids, press)
    return [(layer.keys.clone(), layer.values.clone()) for layer in backend.cache.layers]


@pytest.mark.parametrize("press", SCORER_PRESSES)
def test_evicting_after_the_prefill_keeps_exactly_what_the_press_keeps_inside_it(tiny, press):
    ids = tiny.encode_chat(PROMPT)
    backend = make_backend("torch", tiny)
    inside = cache_after(backend, ids, make_press(press, 0.5, len(ids)))
    deferred = DeferredPress(press, len(ids), state_layer=1, decide=lambda state: 0.5)
    after = cache_after(backend, ids, deferred)
    assert deferred.ratio == 0.5
    assert len(after) == len(inside)
    for (k1, v1), (k2, v2) in zip(inside, after):
        assert k2.shape == k1.shape and k1.shape[2] < len(ids)
        assert torch.equal(k1, k2) and torch.equal(v1, v2)


def test_the_ratio_is_chosen_from_the_prompt_states_the_prefill_computed(tiny):
    ids = tiny.encode_chat(PROMPT)
    seen = []

    def decide(state):
        seen.append(state)
        return 0.25

    backend = make_backend("torch", tiny)
    backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=1, decide=decide))
    assert len(seen) == 1
    assert torch.allclose(seen[0], layer_features(tiny.model, ids, [1], len(ids))[1], atol=1e-5)
    assert backend.cached() == kept_positions(len(ids), 0.25)


def test_the_last_layer_is_read_after_the_final_norm(tiny):
    ids = tiny.encode_chat(PROMPT)
    seen = []
    backend = make_backend("torch", tiny)
    last = tiny.num_layers
    backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=last, decide=lambda s: seen.append(s) or 0.0))
    with torch.inference_mode():
        h = tiny.model.model(torch.tensor([ids])).last_hidden_state[0]
    assert torch.allclose(seen[0], pool(h), atol=1e-5)
    assert backend.cached() == len(ids)  # ratio 0: nothing evicted


def test_a_ratio_outside_its_range_and_a_layer_the_model_lacks_are_refused(tiny):
    ids = tiny.encode_chat(PROMPT)
    backend = make_backend("torch", tiny)
    with pytest.raises(ValueError, match="outside"):
        backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=1, decide=lambda s: 1.0))
    with pytest.raises(ValueError, match="no hidden state after layer 9"):
        backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=9, decide=lambda s: 0.0))


def test_llama_cpp_decodes_from_the_cache_evicted_after_the_prefill(embedded, fast_backend):
    ids = embedded.encode_chat(PROMPT)
    fast_backend.prefill(ids, make_press("snapkv", 0.5, len(ids)))
    inside = fast_backend.decode_one(ids[-1], len(ids)).clone()
    fast_backend.prefill(ids, DeferredPress("snapkv", len(ids), state_layer=embedded.num_layers, decide=lambda s: 0.5))
    assert fast_backend.cached() == kept_positions(len(ids), 0.5)
    after = fast_backend.decode_one(ids[-1], len(ids))
    assert torch.allclose(inside, after, atol=1e-3)
