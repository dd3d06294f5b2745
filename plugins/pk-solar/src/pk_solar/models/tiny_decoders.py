"""Tiny Hugging Face decoders built from config (no weights needed), for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import torch


def tiny_llama(layers: int, seed: int = 0, vocab: int = 37, tie: bool = False) -> Any:
    """A randomly initialised LlamaForCausalLM small enough for property tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=layers, max_position_embeddings=64, tie_word_embeddings=tie,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_qwen2(layers: int, seed: int = 0, vocab: int = 37) -> Any:
    """A Qwen2 decoder: same layer layout as Llama, plus a per-layer ``layer_types`` list."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    types = ["sliding_attention" if i % 2 else "full_attention" for i in range(layers)]
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=layers, max_position_embeddings=64, layer_types=types, use_sliding_window=True,
        sliding_window=8, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()
