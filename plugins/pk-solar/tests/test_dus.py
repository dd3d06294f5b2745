"""Properties of the layer map and of the in-memory DUS transform."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_solar.models.dus import depth_upscale, layer_map, upscale_config_dict
from pk_solar.models.tiny_decoders import tiny_llama, tiny_qwen2

from pk.core.errors import UsageError


@given(st.integers(1, 96).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n // 2))))
def test_layer_map_shape_and_multiplicity(nm: tuple[int, int]) -> None:
    n, m = nm
    src = layer_map(n, m)
    assert len(src) == 2 * (n - m)
    assert src[: n - m] == list(range(n - m)) and src[n - m :] == list(range(m, n))
    counts = Counter(src)
    assert set(counts) == set(range(n)), "every base layer is used"
    for i in range(n):
        assert counts[i] == (2 if m <= i <= n - m - 1 else 1), f"layer {i} of n={n}, m={m}"


@given(st.integers(1, 64))
def test_layer_map_edge_cases(n: int) -> None:
    assert layer_map(n, 0) == list(range(n)) * 2  # m = 0: plain duplication
    if n % 2 == 0:
        assert layer_map(n, n // 2) == list(range(n))  # m = n/2: the identity


@given(st.integers(1, 64).flatmap(lambda n: st.tuples(st.just(n), st.integers(n // 2 + 1, 3 * n))))
def test_layer_map_rejects_shrinks_and_m_ge_n(nm: tuple[int, int]) -> None:
    n, m = nm
    with pytest.raises(UsageError) as err:
        layer_map(n, m)
    assert ("every layer" in str(err.value)) == (m >= n)
    assert "\n" not in str(err.value)


def test_layer_map_solar_and_negative() -> None:
    src = layer_map(32, 8)
    assert len(src) == 48 and src[:24] == list(range(24)) and src[24:] == list(range(8, 32))
    with pytest.raises(UsageError):
        layer_map(8, -1)


def test_config_dict_rebuilds_per_layer_fields() -> None:
    config = {"num_hidden_layers": 4, "hidden_size": 8, "layer_types": ["a", "b", "c", "d"],
              "per_layer_config": {"3": {"x": 1}}}
    out = upscale_config_dict(config, layer_map(4, 1))
    assert out["num_hidden_layers"] == 6 and out["hidden_size"] == 8
    assert out["layer_types"] == ["a", "b", "c", "b", "c", "d"]
    assert out["per_layer_config"] == {"5": {"x": 1}}
    assert config["num_hidden_layers"] == 4, "input left untouched"


def test_solar_parameter_arithmetic_on_meta() -> None:
    """Mistral-7B shapes: 7,241,732,096 parameters; DUS n=32, m=8 -> 48 layers, 10,731,524,096."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                           num_hidden_layers=32, vocab_size=32000, tie_word_embeddings=False)
    with torch.device("meta"):
        base = MistralForCausalLM(config)
    up = depth_upscale(base, 8)
    assert sum(p.numel() for p in base.parameters()) == 7_241_732_096
    assert sum(p.numel() for p in up.parameters()) == 10_731_524_096
    assert up.config.num_hidden_layers == 48 and base.config.num_hidden_layers == 32
    assert up.config.hidden_size == 4096 and up.config.vocab_size == 32000


@settings(max_examples=6)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n // 2))), st.booleans())
def test_upscaled_layers_are_real_copies(nm: tuple[int, int], tie: bool) -> None:
    n, m = nm
    base = tiny_llama(n, tie=tie)
    up = depth_upscale(base, m)
    src = layer_map(n, m)
    assert up.config.num_hidden_layers == len(src) == len(up.model.layers)
    assert base.config.num_hidden_layers == n and len(base.model.layers) == n, "base untouched"
    ptrs = [p.data_ptr() for p in up.parameters()]
    assert len(ptrs) == len(set(ptrs)), "no shared storage inside the up-scaled model"
    base_ptrs = {p.data_ptr() for p in base.parameters()}
    assert not base_ptrs & set(ptrs), "no storage shared with the base"
    for j, i in enumerate(src):
        new_layer, old_layer = up.model.layers[j], base.model.layers[i]
        assert new_layer is not old_layer
        assert all(torch.equal(a, b) for a, b in zip(new_layer.state_dict().values(), old_layer.state_dict().values()))
        indices = [s.layer_idx for s in new_layer.modules() if hasattr(s, "layer_idx")]
        assert indices and set(indices) == {j}, f"layer_idx of new layer {j} is {indices}"
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(up.state_dict()[name], base.state_dict()[name])
    names = [k for k in up.state_dict() if not k.startswith("model.layers.")]
    assert sorted(names) == sorted(k for k in base.state_dict() if not k.startswith("model.layers."))


@settings(max_examples=6)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n // 2))), st.integers(1, 12))
def test_first_layers_reproduce_base_hidden_states(nm: tuple[int, int], length: int) -> None:
    n, m = nm
    base = tiny_llama(n)
    up = depth_upscale(base, m)
    x = torch.randint(0, 37, (2, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        hb = base(x, output_hidden_states=True, use_cache=False).hidden_states
        hu = up(x, output_hidden_states=True, use_cache=False).hidden_states
    assert len(hu) == 2 * (n - m) + 1
    for depth in range(n - m):  # depth 0 = embeddings; depth k = output of layer k-1
        assert torch.equal(hb[depth], hu[depth]), f"hidden state at depth {depth} differs"
    assert bool(torch.isfinite(hu[-1]).all())


@settings(max_examples=5)
@given(st.integers(2, 5).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n // 2))), st.integers(2, 10))
def test_cache_forward_incremental_and_generate_agree(nm: tuple[int, int], length: int) -> None:
    n, m = nm
    up = depth_upscale(tiny_llama(n, seed=n + m), m)
    x = torch.randint(0, 37, (1, length), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        with_cache = up(x, use_cache=True).logits
        without = up(x, use_cache=False).logits
        assert torch.equal(with_cache, without)
        prefix = up(x[:, :-1], use_cache=True)
        step = up(x[:, -1:], cache=prefix.cache, use_cache=True).logits
    assert torch.allclose(step[:, -1], without[:, -1], atol=1e-5), "incremental decoding differs from a full forward"
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(up.generate(x, use_cache=True, **kwargs), up.generate(x, use_cache=False, **kwargs))


def test_causal_masking_holds() -> None:
    up = depth_upscale(tiny_llama(4), 1)
    x = torch.randint(0, 37, (1, 10), generator=torch.Generator().manual_seed(3))
    y = x.clone()
    y[0, 6:] = (y[0, 6:] + 1) % 37
    with torch.no_grad():
        assert torch.equal(up(x, use_cache=False).logits[:, :6], up(y, use_cache=False).logits[:, :6])


def test_save_reload_round_trip_is_exact(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    up = depth_upscale(tiny_llama(5), 2)
    up.save_pretrained(tmp_path)
    back, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert back.config.num_hidden_layers == 6
    a, b = up.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randint(0, 37, (2, 9))
    with torch.no_grad():
        assert torch.equal(up(x).logits, back.eval()(x).logits)


def test_layer_types_rebuilt_for_qwen2() -> None:
    base = tiny_qwen2(4)
    up = depth_upscale(base, 1)
    assert up.config.layer_types == [base.config.layer_types[i] for i in layer_map(4, 1)]
    assert len(up.config.layer_types) == up.config.num_hidden_layers == 6
    x = torch.randint(0, 37, (1, 12))
    with torch.no_grad():
        assert torch.equal(up(x, use_cache=True).logits, up(x, use_cache=False).logits)
