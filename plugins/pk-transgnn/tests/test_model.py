"""TransGNN model: permutation symmetry, batching, edge cases, contract-level CLI run."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_transgnn.models import TransGNN
from torch_geometric.data import Batch, Data


def random_graph(n: int, seed: int, density: float = 0.3, features: int = 5) -> Data:
    g = torch.Generator().manual_seed(seed)
    a = torch.triu(torch.rand(n, n, generator=g) < density, 1).nonzero().t()
    ei = torch.cat([a, a.flip(0)], dim=1)
    return Data(x=torch.randn(n, features, generator=g), edge_index=ei, y=torch.zeros(n, dtype=torch.long), num_nodes=n)


def permute(d: Data, perm: torch.Tensor) -> Data:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return Data(x=d.x[perm], edge_index=inv[d.edge_index], y=d.y[perm], num_nodes=d.num_nodes)


def model(task: str, update: str = "message-passing", **kw) -> TransGNN:
    torch.manual_seed(0)
    return TransGNN(5, 3, task, hidden=16, heads=2, samples=4, max_hops=3, update=update, **kw).eval()


@settings(max_examples=10)
@given(n=st.integers(2, 25), seed=st.integers(0, 10_000), update=st.sampled_from(["message-passing", "none"]))
def test_node_outputs_are_permutation_equivariant(n, seed, update):
    m = model("node-classification", update)
    d = random_graph(n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        out, out_p = m.predict(d), m.predict(permute(d, perm))
    assert out.shape == (n, 3)
    assert torch.allclose(out[perm], out_p, atol=1e-4)


@settings(max_examples=10)
@given(n=st.integers(1, 25), seed=st.integers(0, 10_000))
def test_graph_outputs_are_permutation_invariant(n, seed):
    m = model("graph-classification")
    d = random_graph(n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        a = m.predict(Batch.from_data_list([d]))
        b = m.predict(Batch.from_data_list([permute(d, perm)]))
    assert a.shape == (1, 3) and torch.allclose(a, b, atol=1e-4)


@settings(max_examples=8)
@given(sizes=st.lists(st.integers(1, 15), min_size=2, max_size=4), seed=st.integers(0, 10_000))
def test_batch_of_graphs_equals_each_graph_alone(sizes, seed):
    m = model("graph-classification")
    graphs = [random_graph(n, seed + i) for i, n in enumerate(sizes)]
    with torch.no_grad():
        together = m.predict(Batch.from_data_list(graphs))
        alone = torch.cat([m.predict(Batch.from_data_list([g])) for g in graphs])
    assert torch.allclose(together, alone, atol=1e-4)


def test_edgeless_and_disconnected_graphs_have_finite_encodings():
    m = model("graph-classification")
    empty = Data(x=torch.randn(4, 5), edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=4)
    isolated = random_graph(6, 1, density=0.0)
    pair = Data(x=torch.randn(5, 5), edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=5)  # nodes 2..4 isolated
    batch = Batch.from_data_list([empty, isolated, pair])
    s = m.structure(batch.x, batch.edge_index, batch.batch)
    n = batch.num_nodes
    assert s["samples"].shape == (n, 4) and s["hops"].shape == (n, 4)
    assert s["degree"].shape == (n,) and s["pagerank"].shape == (n, 1)
    assert all(bool(torch.isfinite(v.float()).all()) for v in s.values())
    with torch.no_grad():
        assert bool(torch.isfinite(m.predict(batch)).all())


def test_random_walk_model_is_deterministic_in_eval():
    m = model("node-classification", "random-walk")
    d = random_graph(20, 3)
    with torch.no_grad():
        assert torch.equal(m.predict(d), m.predict(d))


def onehot_graph(n: int, seed: int, classes: int = 2, density: float = 0.3) -> Data:
    d = random_graph(n, seed, density)
    labels = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed + 5))
    d.x = torch.nn.functional.one_hot(labels, 5).float()
    return d


@settings(max_examples=10)
@given(n=st.integers(3, 20), seed=st.integers(0, 10_000), update=st.sampled_from(["message-passing", "none"]))
def test_onehot_features_give_permutation_equivariant_samples_and_outputs(n, seed, update):
    """MUTAG/PROTEINS-style one-hot features tie massively. The old sampler (raw X, ``topk``) cut
    the ties by node index, so relabelling changed the sampled sets and the outputs."""
    m = model("node-classification", update)
    d = onehot_graph(n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    dp = permute(d, perm)
    with torch.no_grad():
        (_, used), (_, used_p) = m.node_representations(d, True), m.node_representations(dp, True)
        out, out_p = m.predict(d), m.predict(dp)
    for layer in range(len(used)):
        for j in range(n):
            expected = {int(inv[s]) for s in used[layer][int(perm[j])].tolist() if s >= 0}
            assert {s for s in used_p[layer][j].tolist() if s >= 0} == expected, (layer, j)
    assert torch.allclose(out[perm], out_p, atol=1e-4)


def _train_epochs(m: TransGNN, batches: list, epochs: int) -> list[list[torch.Tensor]]:
    """Run ``epochs`` epochs through the model's schedule hooks; the stored tables after each."""
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    m.train()
    history = []
    for epoch in range(epochs):
        m.begin_epoch(epoch)
        for b in batches:
            opt.zero_grad()
            m.loss(b).backward()
            opt.step()
        m.end_epoch(epoch)
        history.append([m.sample_table(b, i).clone() for b in batches for i in range(b.num_graphs)])
    return history


def _graph_batches(seed: int) -> list:
    graphs = [random_graph(n, seed + i, 0.25) for i, n in enumerate([14, 9, 17, 12])]
    for g in graphs:
        g.y = torch.tensor([g.num_nodes % 2])
    return [Batch.from_data_list(graphs[:2]), Batch.from_data_list(graphs[2:])]


def test_samples_evolve_between_epochs_and_stay_in_the_candidate_set():
    """The old model re-derived every forward's samples from raw features: nothing persisted or
    changed between epochs. Here each epoch's refresh must change some table (layer 0 and 1), and
    every new sample of node i must come from Smp(i) ∪ Smp(neighbours of i) of the previous table
    (the message-passing update's candidate set), inside i's graph, never i itself."""
    m = model("graph-classification", layers=2)
    batches = _graph_batches(3)
    history = _train_epochs(m, batches, 3)
    assert m.refreshes == 3
    graphs = [g for b in batches for g in b.to_data_list()]
    for before, after in zip(history, history[1:], strict=False):
        changed = [0, 0]
        for g, old, new in zip(graphs, before, after, strict=True):
            n = g.num_nodes
            nbrs: dict[int, set[int]] = {i: set() for i in range(n)}
            for a, b in g.edge_index.t().tolist():
                nbrs[b].add(a)
            for layer in range(2):
                o, w = old[:, layer], new[:, layer]
                changed[layer] += int((o != w).any())
                for i in range(n):
                    cand = {int(s) for s in o[i] if s >= 0}
                    for j in nbrs[i]:
                        cand |= {int(s) for s in o[j] if s >= 0}
                    got = {int(s) for s in w[i] if s >= 0}
                    assert got <= cand - {i}, (layer, i, got, cand)
                    assert all(0 <= s < n for s in got)
        assert changed[0] > 0 and changed[1] > 0, changed


def test_no_update_and_refresh_schedule():
    """``update="none"`` keeps the initial tables; ``refresh_every=2`` refreshes after epoch 1 only."""
    static = model("graph-classification", "none")
    hist = _train_epochs(static, _graph_batches(4), 2)
    assert static.refreshes == 0 and all(torch.equal(a, b) for a, b in zip(hist[0], hist[1], strict=True))
    every2 = model("graph-classification", refresh_every=2)
    hist = _train_epochs(every2, _graph_batches(4), 2)
    assert every2.refreshes == 1


def test_structure_is_computed_once_per_graph():
    """Batches re-collated in another order and composition still hit the per-graph cache
    (the old model recomputed sampling, BFS and PageRank for every graph batch)."""
    m = model("graph-classification")
    graphs = [g for b in _graph_batches(5) for g in b.to_data_list()]
    _train_epochs(m, [Batch.from_data_list(graphs[:2]), Batch.from_data_list(graphs[2:])], 1)
    assert m.structures.computed == 4
    m.eval()
    with torch.no_grad():
        m.predict(Batch.from_data_list([graphs[3], graphs[0], graphs[2]]))
    assert m.structures.computed == 4
    other = random_graph(11, 99)
    with torch.no_grad():
        m.predict(Batch.from_data_list([other]))
    assert m.structures.computed == 5, "a new graph is a cache miss"


def test_sample_tables_round_trip_through_state_dict():
    """Resume must restore the evolved tables (not re-sample from scratch)."""
    import io

    m = model("graph-classification")
    batches = _graph_batches(6)
    _train_epochs(m, batches, 2)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = model("graph-classification")
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for b in batches:
        for i in range(b.num_graphs):
            assert torch.equal(fresh.sample_table(b, i), m.sample_table(b, i))
    m.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(m.predict(batches[0]), fresh.predict(batches[0]))


def test_unseen_graphs_are_not_stored_at_evaluation():
    m = model("graph-classification")
    m.eval()
    b = _graph_batches(7)[0]
    with torch.no_grad():
        first = m.predict(b)
        assert m.sample_table(b) is None
        assert torch.equal(first, m.predict(b))


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="update"):
        TransGNN(5, 3, "node-classification", update="sometimes")
    with pytest.raises(ValueError, match="encodings"):
        TransGNN(5, 3, "node-classification", encodings=("laplacian",))


def test_cli_trains_transgnn_on_csbm(tmp_path, monkeypatch):
    from pk.cli.main import cli

    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    # the quick recipe's settings on the default CSBM (600 nodes, 3 classes), fewer epochs
    args = ["train", "-c", "model.name=transgnn", "-c", "model.hidden=32", "-c", "model.samples=10",
            "-c", "model.dropout=0.2", "-c", "dataset.name=csbm", "-c", "trainer.name=node-classification",
            "-c", "trainer.max_epochs=40", "-c", "trainer.lr=0.005", "-c", f"run.out_dir={tmp_path}",
            "-c", "run.threads=1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run_dir = next(p for p in tmp_path.iterdir() if (p / "result.json").exists())
    metrics = json.loads((run_dir / "result.json").read_text())["metrics"]
    assert metrics["test.accuracy"] > 0.5, metrics  # 3 classes: chance is 1/3


def test_resume_restores_evolved_tables_exactly(tmp_path, monkeypatch):
    """An interrupted run resumed from its checkpoint ends with the same metrics and the same sample
    tables as an uninterrupted one (tables not in the checkpoint would be re-sampled from H0)."""
    import contextlib

    from pk.cli.main import cli
    from pk.core.io import load_tensors
    from pk.core.run import Run

    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    base = ["train", "-c", "model.name=transgnn", "-c", "model.hidden=16", "-c", "model.samples=4",
            "-c", "model.heads=2",
            "-c", "dataset.name=motif-graphs", "-c", "dataset.num_graphs=40", "-c", "trainer.name=graph-classification",
            "-c", "trainer.max_epochs=3", "-c", "trainer.batch_size=8", "-c", "run.threads=1"]
    full = CliRunner().invoke(cli, [*base, "-c", f"run.out_dir={tmp_path / 'full'}"])
    assert full.exit_code == 0, full.output
    original = Run.save_checkpoint
    calls = {"n": 0}

    def interrupting(self, state, tag="last"):  # type: ignore[no-untyped-def]
        out = original(self, state, tag)
        calls["n"] += 1
        if tag == "last" and calls["n"] == 2:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(Run, "save_checkpoint", interrupting)
    with contextlib.suppress(KeyboardInterrupt):
        CliRunner().invoke(cli, [*base, "-c", f"run.out_dir={tmp_path / 'cut'}"], catch_exceptions=False)
    monkeypatch.setattr(Run, "save_checkpoint", original)
    cut_dir = next(p for p in (tmp_path / "cut").iterdir() if p.is_dir())
    resumed = CliRunner().invoke(cli, ["train", "--resume", str(cut_dir)])
    assert resumed.exit_code == 0, resumed.output
    full_dir = next(p for p in (tmp_path / "full").iterdir() if (p / "result.json").exists())
    a = json.loads((full_dir / "result.json").read_text())["metrics"]
    b = json.loads((cut_dir / "result.json").read_text())["metrics"]
    assert a == b
    sa = load_tensors(full_dir / "checkpoints" / "model.pt")["model"]
    sb = load_tensors(cut_dir / "checkpoints" / "model.pt")["model"]
    assert sa["sample_tables"].shape[0] > 0 and torch.equal(sa["sample_tables"], sb["sample_tables"])
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
