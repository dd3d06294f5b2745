"""Properties of the expandable SAGE and PI-GNN's isolation stage."""

from __future__ import annotations

import io

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_pignn.models import ProgressiveSAGE
from pk_pignn.trainers import train_stage
from torch_geometric.data import Data


def random_graph(seed: int, n: int = 30, f: int = 8, c: int = 3) -> Data:
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, 4 * n), generator=g)
    return Data(x=torch.randn(n, f, generator=g), edge_index=edge_index, y=torch.randint(0, c, (n,), generator=g),
                num_nodes=n)


def grown_model(seed: int, tasks: int, sizes: list[int], f: int = 8, c: int = 3) -> ProgressiveSAGE:
    torch.manual_seed(seed)
    model = ProgressiveSAGE(f, c, hidden=[5, 4])
    for _ in range(tasks):
        model.expand(sizes)
    return model.eval()


@given(st.integers(0, 10_000), st.integers(0, 3), st.lists(st.integers(1, 6), min_size=2, max_size=2))
def test_expand_keeps_old_units_and_logits_bitwise(seed, tasks, sizes):
    model = grown_model(seed, tasks, sizes)
    data = random_graph(seed)
    with torch.no_grad():
        before_hidden = model.hidden_states(data.x, data.edge_index)
        before_logits = model.predict(data)
        model.expand(sizes)
        model.classifier[-1].zero_()
        after_hidden = model.hidden_states(data.x, data.edge_index)
        after_logits = model.predict(data)
    old = before_hidden.shape[1]
    assert after_hidden.shape[1] == old + sizes[-1]
    # Before isolate(), blocks of one in-width share ONE matmul, whose BLAS blocking may change with
    # its width: equal to round-off. After isolate() (as PI-GNN trains), old blocks are projected on
    # their own: bitwise equal.
    assert torch.allclose(after_hidden[:, :old], before_hidden, atol=1e-6, rtol=0), "old units changed after expand()"
    assert torch.allclose(after_logits, before_logits, atol=1e-6, rtol=0), "W_cls_new = 0 must keep the logits"
    model.isolate()
    with torch.no_grad():
        isolated = model.hidden_states(data.x, data.edge_index)
    assert torch.equal(isolated[:, :old], before_hidden), "isolated old units must be bitwise unchanged"


@given(st.integers(0, 10_000), st.integers(1, 3))
def test_old_units_do_not_depend_on_new_parameters(seed, tasks):
    model = grown_model(seed, tasks, [3, 2])
    data = random_graph(seed + 1)
    widths_old = [layer.out_width - layer.lin_l[-1].shape[1] for layer in model.layers]
    with torch.no_grad():
        h_ref = model.hidden_states(data.x, data.edge_index)[:, : widths_old[-1]]
        for p in model.newest_parameters():
            p.add_(torch.randn_like(p) * 10)
        h_new = model.hidden_states(data.x, data.edge_index)[:, : widths_old[-1]]
    assert torch.equal(h_ref, h_new)
    # and the gradient of an old unit w.r.t. every new parameter is exactly zero
    model.zero_grad()
    model.hidden_states(data.x, data.edge_index)[:, : widths_old[-1]].sum().backward()
    for p in model.newest_parameters()[:-1]:
        assert p.grad is None or not bool(p.grad.any())


@given(st.integers(0, 10_000), st.integers(1, 4), st.lists(st.integers(1, 12), min_size=2, max_size=2))
def test_parameter_count_grows_by_exactly_the_configured_units(seed, tasks, sizes):
    f, c = 8, 3
    model = grown_model(seed, 0, sizes, f, c)
    for _ in range(tasks):
        widths = model.widths()
        count = sum(p.numel() for p in model.parameters())
        model.expand(sizes)
        assert model.widths() == [w + s for w, s in zip(widths, sizes)]
        layer1 = 2 * f * sizes[0] + sizes[0]
        layer2 = 2 * (widths[0] + sizes[0]) * sizes[1] + sizes[1]
        assert sum(p.numel() for p in model.parameters()) - count == layer1 + layer2 + sizes[1] * c


@settings(max_examples=10)
@given(st.integers(0, 10_000), st.booleans())
def test_frozen_parameters_bit_identical_after_expansion_stage(seed, reset):
    model = grown_model(seed, 1, [3, 3]).train()
    data = random_graph(seed)
    model.expand([3, 3])
    model.isolate()
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    newest = {id(p) for p in model.newest_parameters()}
    assert frozen and all(id(p) in newest for p in model.parameters() if p.requires_grad)
    new_before = [p.detach().clone() for p in model.newest_parameters()]
    idx = torch.arange(data.num_nodes)
    train_stage(model, [(data, idx, 1.0), (data, idx[:5], 0.1)], epochs=3, lr=0.05, weight_decay=0.0, chunks=2,
                reset_each_epoch=reset, generator=torch.Generator().manual_seed(seed))
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"{name} changed while frozen"
    assert any(not torch.equal(a, b) for a, b in zip(new_before, model.newest_parameters())), "new block did not train"


def test_open_parameters_makes_everything_trainable_again():
    model = grown_model(0, 2, [2, 2])
    model.isolate()
    assert sum(p.requires_grad for p in model.parameters()) == 2 * 3 + 1  # newest (Wl, Wr, b) per layer + W_cls_new
    model.open_parameters()
    assert all(p.requires_grad for p in model.parameters())


@given(st.integers(0, 1000), st.integers(0, 3))
def test_grown_state_dict_round_trips_into_a_fresh_model(seed, tasks):
    model = grown_model(seed, tasks, [4, 3])
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = ProgressiveSAGE(8, 3, hidden=[5, 4]).eval()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    data = random_graph(seed)
    with torch.no_grad():
        assert torch.equal(fresh.predict(data), model.predict(data))
    assert fresh.widths() == model.widths()


def test_sparse_features_give_the_dense_result():
    data = random_graph(3)
    data.x = (data.x > 1.0).float()
    model = grown_model(1, 2, [3, 3])
    with torch.no_grad():
        dense = model.predict(data)
        data.x_sparse = data.x.to_sparse_csr()
        sparse = model.predict(data)
    assert torch.allclose(dense, sparse, atol=1e-5)


def test_stage_with_tiny_and_empty_sets_does_not_crash():
    model = grown_model(0, 0, [2, 2]).train()
    data = random_graph(0)
    out = train_stage(model, [(data, torch.tensor([1, 2]), 1.0), (data, torch.tensor([], dtype=torch.long), -0.01)],
                      epochs=2, lr=0.01, weight_decay=0.0, chunks=4, reset_each_epoch=True, generator=torch.Generator())
    assert out["steps"] == 4.0  # 2 epochs x the 2 non-empty chunks of a 2-node set
    empty = train_stage(model, [(data, torch.tensor([], dtype=torch.long), 1.0)], epochs=2, lr=0.01, weight_decay=0.0,
                        chunks=4, reset_each_epoch=False, generator=torch.Generator())
    assert empty["steps"] == 0.0
