"""Dataset and model checks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pk.core.testing.cases import Case
from pk.core.testing.checks.common import (
    _build_data_model,
    _config,
    _first_batch,
    _stack,
    _state_equal,
    _tensor_equal,
)


# -- datasets --------------------------------------------------------------------------
def dataset_is_deterministic(case: Case) -> None:
    """The same seed gives the same data (fingerprint), for seeds drawn by hypothesis."""
    from pk.core.runner import Components

    assert case.registration is not None
    parts = {"dataset": case.registration}

    @settings(max_examples=3, deadline=None)
    @given(st.integers(0, 2**16))
    def prop(seed: int) -> None:
        a = Components(_config(parts, seed=seed)).dataset()
        b = Components(_config(parts, seed=seed)).dataset()
        assert a.fingerprint() == b.fingerprint(), f"seed {seed} gave different data twice"
        assert tuple(a.splits), "a dataset needs at least one split"

    prop()


def dataset_splits_are_disjoint(case: Case) -> None:
    from pk.core.runner import Components

    data = Components(_config({"dataset": case.registration})).dataset()  # type: ignore[dict-item]
    if not hasattr(data, "split_keys"):
        pytest.skip("dataset does not expose split_keys()")
    raw = {s: data.split_keys(s) for s in data.splits}
    if any(v is None for v in raw.values()):
        pytest.skip("dataset has no example ids for its splits")
    keys = {s: set(v) for s, v in raw.items()}
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = keys[a] & keys[b]
            assert not both, f"splits {a} and {b} share {len(both)} examples, e.g. {sorted(both, key=repr)[:3]}"


def dataset_batches_fit_info(case: Case) -> None:
    """``info.task`` is set and registered; item ids in batches lie in ``[0, num_items]``,
    for drawn seeds and batch sizes."""
    from pk.core.runner import Components

    reg = case.registration
    assert reg is not None
    parts = {"dataset": reg}

    @settings(max_examples=3, deadline=None)
    @given(st.integers(0, 2**16), st.integers(1, 16))
    def prop(seed: int, size: int) -> None:
        data = Components(_config(parts, seed=seed)).dataset()
        info = data.info
        assert info.task, "DatasetInfo.task must be set"
        if reg.tasks:
            assert info.task in reg.tasks, f"info.task {info.task!r} not among registered tasks"
        batch = _first_batch(data, size)
        assert batch is not None
        if isinstance(batch, dict) and info.num_items:
            for key in ("seq", "target"):
                if key in batch:
                    t = batch[key]
                    assert int(t.min()) >= 0 and int(t.max()) <= info.num_items, (
                        f"{key} ids outside [0, num_items] (seed {seed}, batch size {size})")

    prop()


# -- models ----------------------------------------------------------------------------
def _check_task_shape(task: str, out: Any, batch: Any, info: Any) -> None:
    import torch

    if task == "classification":
        n = batch["y"].shape[0]
        assert tuple(out.shape) == (n, info.num_classes), (
            f"classification output {tuple(out.shape)} != ({n}, {info.num_classes})"
        )
    elif task.endswith("next-item") and out.dim() == 2:
        assert out.shape[-1] == info.num_items + 1, f"next-item output last dim {out.shape[-1]} != num_items+1"
        assert bool(torch.isneginf(out[:, 0]).all()), "next-item padding column 0 must be -inf"
        out = out[:, 1:]
    elif task == "node-classification":
        assert tuple(out.shape) == (batch.num_nodes, info.num_classes)
    elif task == "graph-classification":
        assert tuple(out.shape) == (batch.num_graphs, info.num_classes)
    assert bool(torch.isfinite(out).all()), "model output has non-finite values"


def model_output_has_task_shape(case: Case) -> None:
    import torch

    parts = _stack(case, ("dataset",))
    data, model = _build_data_model(parts)
    model.eval()
    batch = _first_batch(data)
    with torch.no_grad():
        out = model.predict(batch)
    _check_task_shape(data.info.task, out, batch, data.info)


def model_is_deterministic(case: Case) -> None:
    """Same seed, same initial parameters and outputs, for drawn seeds and batch sizes."""
    import torch

    parts = _stack(case, ("dataset",))

    @settings(max_examples=3, deadline=None)
    @given(st.integers(0, 2**16), st.integers(1, 8))
    def prop(seed: int, size: int) -> None:
        data1, m1 = _build_data_model(parts, seed=seed)
        data2, m2 = _build_data_model(parts, seed=seed)
        assert _state_equal(m1.state_dict(), m2.state_dict()), "same seed gave different initial parameters"
        m1.eval()
        m2.eval()
        with torch.no_grad():
            a, b = m1.predict(_first_batch(data1, size)), m2.predict(_first_batch(data2, size))
        assert _tensor_equal(a, b), "same seed and input gave different outputs"

    prop()


def model_accepts_drawn_configs(case: Case) -> None:
    """Any config within the declared bounds (int and float fields drawn up to the tested
    size) builds a model whose output has the task's shape and whose loss is finite, or the
    builder refuses it (a pk error such as ConfigError, or ValueError: e.g. a width the heads do not divide).
    Catches bounds that admit values the model then breaks on while running."""
    import torch

    from pk.core.errors import PkError
    from pk.core.runner import Components
    from pk.core.testing.checks.common import _test_params
    from pk.core.testing.strategies import config_values

    reg = case.registration
    assert reg is not None
    if reg.config is None:
        pytest.skip("model has no config")
    parts = _stack(case, ("dataset",))

    @settings(max_examples=4, deadline=None)
    @given(config_values(reg.config, _test_params(reg, "model")))
    def prop(overrides: dict[str, Any]) -> None:
        torch.manual_seed(0)
        try:
            comps = Components(_config(parts, extra={"model": overrides}))
            data = comps.dataset()
            model = comps.model(data.info)
        except (PkError, ValueError):  # the builder refused this combination (one line, exit 2)
            return
        batch = _first_batch(data, 4)
        try:
            model.eval()
            with torch.no_grad():
                out = model.predict(batch)
            model.train()
            loss = model.loss(batch)
        except Exception as exc:
            raise AssertionError(f"the model accepted {overrides} (within the declared bounds) and then failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        _check_task_shape(data.info.task, out, batch, data.info)
        assert bool(torch.isfinite(loss)), f"loss is not finite with {overrides}"

    prop()


def model_state_dict_round_trips(case: Case) -> None:
    import io

    import torch

    parts = _stack(case, ("dataset",))
    data, m1 = _build_data_model(parts, seed=1)
    _, m2 = _build_data_model(parts, seed=2)
    buf = io.BytesIO()
    torch.save(m1.state_dict(), buf)
    buf.seek(0)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    m1.eval()
    m2.eval()
    batch = _first_batch(data)
    with torch.no_grad():
        assert _tensor_equal(m1.predict(batch), m2.predict(batch)), "outputs differ after state_dict save/load"


def model_loss_backpropagates(case: Case) -> None:
    import torch

    parts = _stack(case, ("dataset",))
    data, model = _build_data_model(parts)
    model.train()
    loss = model.loss(_first_batch(data, 8))
    assert loss.dim() == 0, f"loss must be a scalar, got shape {tuple(loss.shape)}"
    assert bool(torch.isfinite(loss)), "loss is not finite"
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"no gradient reached {len(missing)} trainable parameter(s), e.g. {missing[:3]}"
    if params:
        assert any(bool(p.grad.abs().sum() > 0) for _, p in params), "every gradient is zero"


def _slice(batch: Any, i: int) -> Any:
    return {k: v[i : i + 1] for k, v in batch.items()}


def model_batch_independent(case: Case) -> None:
    """In eval mode, an example's output does not depend on the other examples in its batch
    (no leakage across rows, e.g. through batch statistics or a wrong mask)."""
    import torch

    parts = _stack(case, ("dataset",))
    data, model = _build_data_model(parts)
    batch = _first_batch(data, 6)
    sizes = ({v.shape[0] for v in batch.values() if hasattr(v, "shape") and v.dim() > 0} if isinstance(batch, dict)
             else set())
    if not isinstance(batch, dict) or len(sizes) != 1 or any(not hasattr(v, "shape") for v in batch.values()):
        pytest.skip("batches are not dicts of tensors sharing a batch dimension")
    model.eval()
    with torch.no_grad():
        full = model.predict(batch)
        for i in range(sizes.pop()):
            alone = model.predict(_slice(batch, i))
            a, b = full[i : i + 1].double().nan_to_num(), alone.double().nan_to_num()
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), f"row {i}'s output changed with the rest of its batch"


def model_padding_invariant(case: Case) -> None:
    """Next-item models: more left padding (id 0) leaves the scores unchanged: the same items
    scored with ``k`` fewer or more padding columns (k drawn) give the same output. Catches a
    model that numbers positions from the batch's left edge instead of from the real items."""
    import torch

    parts = _stack(case, ("dataset",))
    data, model = _build_data_model(parts)
    batch = _first_batch(data, 6)
    if not isinstance(batch, dict) or "seq" not in batch or batch["seq"].dim() != 2 or batch["seq"].shape[1] < 2:
        pytest.skip("batches carry no [B, L] 'seq' of item ids")
    seq = batch["seq"]
    width = seq.shape[1]
    model.eval()

    @settings(max_examples=3, deadline=None)
    @given(st.integers(1, width - 1))
    def prop(k: int) -> None:
        short = seq[:, k:]
        padded = torch.cat([torch.zeros_like(seq[:, :k]), short], dim=1)
        with torch.no_grad():
            a = model.predict({**batch, "seq": short}).double().nan_to_num()
            b = model.predict({**batch, "seq": padded}).double().nan_to_num()
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), f"{k} more padding columns changed the scores"

    prop()


def _permuted_graph(data: Any, perm: Any) -> Any:
    import torch

    n = int(data.num_nodes)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    out = data.clone()
    for key, value in data.items():
        if key == "edge_index":
            out[key] = inverse[value]
        elif hasattr(value, "shape") and value.dim() > 0 and value.shape[0] == n:
            out[key] = value[perm]
    return out


def model_permutation_equivariant(case: Case) -> None:
    """Node-classification models: renumbering the nodes renumbers the outputs, nothing else
    (drawn permutations)."""
    import torch

    parts = _stack(case, ("dataset",))
    data, model = _build_data_model(parts)
    graph = _first_batch(data)
    if not hasattr(graph, "edge_index") or not hasattr(graph, "num_nodes"):
        pytest.skip("batches are not graphs")
    model.eval()
    with torch.no_grad():
        base = model.predict(graph)

    @settings(max_examples=3, deadline=None)
    @given(st.integers(0, 2**16))
    def prop(seed: int) -> None:
        perm = torch.randperm(int(graph.num_nodes), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            moved = model.predict(_permuted_graph(graph, perm))
        assert torch.allclose(moved.double(), base[perm].double(), atol=1e-4, rtol=1e-4), \
            "renumbering the nodes changed their outputs"

    prop()
