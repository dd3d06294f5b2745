"""Hypothesis strategies and seeded builders: draw small shapes and a seed, then make the
tensors with a torch generator (fast, and reproducible from the drawn seed)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def _gen(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(int(seed))


def model_state(seed: int, shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """A small float32 state dict (a 2-layer MLP's shapes) drawn from N(0, 1)."""
    import torch

    shapes = shapes or {"0.weight": (8, 4), "0.bias": (8,), "2.weight": (3, 8), "2.bias": (3,)}
    g = _gen(seed)
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def client_updates(seed: int, n: int) -> list[tuple[dict[str, Any], float, dict[str, Any]]]:
    """``n`` updates ``(state, weight, meta)`` with positive integer-like weights."""
    import torch

    g = _gen(seed)
    out = []
    for i in range(n):
        weight = float(torch.randint(1, 50, (1,), generator=g))
        out.append((model_state(seed * 31 + i + 1), weight, {"client": i, "num_examples": int(weight)}))
    return out


def server_context(seed: int = 0) -> Any:
    """A ServerContext whose model is the MLP of :func:`model_state` and 100 proxy samples."""
    import torch
    from torch import nn

    from pk.core.contracts import DatasetInfo, ServerContext

    def build_model() -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    g = _gen(seed)
    proxy = {"x": torch.randn(100, 4, generator=g), "y": torch.randint(0, 3, (100,), generator=g)}
    info = DatasetInfo(task="classification", num_features=4, num_classes=3)
    return ServerContext(build_model=build_model, device="cpu", generator=_gen(seed + 1), proxy_data=proxy, info=info)


def attention_example(seed: int, num_heads: int | None = None, max_len: int | None = None, batch: int = 2,
                      length: int | None = None, causal: bool = True) -> tuple[Any, Any, int]:
    """Scores ``[B, h, L, L]`` with extreme values mixed in, a boolean mask ``[B, 1, L, L]``
    (causal and key padding; every row keeps at least its diagonal) and a layer index 0."""
    import torch

    g = _gen(seed)
    h = num_heads or 2
    L = length or min(max_len or 6, 6)
    scores = torch.randn(batch, h, L, L, generator=g) * 5
    scores[..., 0] += 30.0 * (torch.rand(batch, h, L, generator=g) > 0.8)
    lengths = torch.randint(1, L + 1, (batch,), generator=g)
    pos = torch.arange(L)
    valid = pos[None, :] >= (L - lengths[:, None])  # left padding: real items at the end
    mask = valid[:, None, None, :] & torch.ones(L, L, dtype=torch.bool)
    if causal:
        mask = mask & torch.tril(torch.ones(L, L, dtype=torch.bool))
    mask = mask | torch.eye(L, dtype=torch.bool)
    return scores, mask, 0


@st.composite
def attention_inputs(draw: Any, num_heads: int | None = None, max_len: int | None = None) -> tuple[Any, Any, int]:
    seed = draw(st.integers(0, 2**31 - 1))
    batch = draw(st.integers(1, 4))
    length = draw(st.integers(1, min(max_len or 8, 8)))
    causal = draw(st.booleans())
    scores, mask, _ = attention_example(seed, num_heads, max_len, batch=batch, length=length, causal=causal)
    layer = draw(st.integers(0, 3))
    return scores, mask, layer


def _bounds(meta: Any, is_int: bool) -> tuple[float | None, float | None]:
    lo = meta.get("ge", meta["gt"] + (1 if is_int else 1e-3) if "gt" in meta else None)
    hi = meta.get("le", meta["lt"] - (1 if is_int else 1e-3) if "lt" in meta else None)
    return lo, hi


@st.composite
def config_values(draw: Any, config_cls: type, base: dict[str, Any]) -> dict[str, Any]:
    """Overrides for ``config_cls``: each int or float field with a declared lower bound keeps
    its value in ``base`` (or its default) or is drawn within its declared range, capped at
    that value so a drawn component is never bigger than the tested one. Budget and protocol
    fields, booleans, strings and lists are left alone."""
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        meta = dict(f.metadata)
        if meta.get("budget") or meta.get("protocol") or f.type not in ("int", "float", int, float):
            continue
        is_int = f.type in ("int", int)
        current = base.get(f.name, f.default)
        if not isinstance(current, (int, float)) or isinstance(current, bool):
            continue
        lo, hi = _bounds(meta, is_int)
        if lo is None:
            continue
        top = min(hi, current) if hi is not None else current
        if top < lo:
            continue
        value = draw(st.one_of(st.just(current), st.integers(int(lo), int(top)) if is_int else
                               st.floats(float(lo), float(top), allow_nan=False, allow_infinity=False)))
        if value != current:
            out[f.name] = value
    return out
