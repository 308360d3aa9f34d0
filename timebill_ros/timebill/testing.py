"""Test fixtures. NOT a model: random weights, for fast tests of the plumbing only.

``tiny_test_model()`` builds, in well under a second and offline, a 2-layer Llama with random
weights and a byte-level BPE tokenizer trained on a few lines of local text, with the same
ChatML template and end-of-turn token as the embedded model. Its output is gibberish and its
timings say nothing about a real model. A configuration names it ``model: "test:tiny"``
(``timebill.runtime.load_configured_model``), so nodes started in subprocesses can use it.
"""
from __future__ import annotations

import functools

from .models import LoadedModel, _finish

TEST_TINY = "test:tiny"  # the configuration's name for tiny_test_model()

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The robot moves to the kitchen and picks up the red cup.",
    "What is the capital of France? The capital of France is Paris.",
    "A time budget limits how long the answer may take.",
    "Planners send goals; the node streams tokens back as feedback.",
    "Quick brown foxes jump over lazy dogs near the river bank at noon.",
    "0123456789 + - * / = ( ) [ ] { } , . ; : ! ? ' \" @ # $ % & _",
] * 4


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its bar prints blank lines into node logs
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return tok.to_str()


def tiny_tokenizer():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = CHATML
    return tok


def tiny_test_model(seed: int = 0, layers: int = 2, hidden: int = 64, max_context: int = 2048) -> LoadedModel:
    """A random 2-layer Llama for tests (see module docstring). Deterministic for a seed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    # One thread: a model this small gains nothing from two, and on a busy machine a forward pass
    # waiting for a descheduled second thread took 100x longer (seen here).
    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_context,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.config._attn_implementation = "sdpa"
    return _finish(model, tok, name="tiny-test-model")
