"""Snapshot streams: cumulative, no leakage, pure construction; the official Cora stream."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_pignn.data import drifting_stream, stream_from_graph

from pk.core.paths import shared_data_dir


def small_stream(seed: int, tasks: int = 4):
    return drifting_stream(160, tasks, 3, 8, 4.0, 0.8, 1.5, 1.0, 0.3, torch.Generator().manual_seed(seed))


def pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in edge_index.t().tolist() if a != b}


@settings(max_examples=15)
@given(st.integers(0, 10_000), st.integers(2, 5))
def test_snapshots_are_cumulative_and_leak_no_future_nodes(seed, tasks):
    stream = small_stream(seed, tasks)
    seen: set[tuple[int, int]] = set()
    prev_nodes: set[int] = set()
    for t in range(tasks):
        seen |= pairs(stream.arrivals[t])
        snap = stream.snapshot(t)
        ids = snap.node_ids
        assert pairs(ids[snap.edge_index]) == seen, "snapshot t must be the undirected union of arrivals 0..t"
        nodes = set(ids.tolist())
        assert nodes == {v for e in seen for v in e}, "a node is present iff one of its edges has arrived"
        assert prev_nodes <= nodes
        prev_nodes = nodes
        g = stream.task(t, 16, seed)
        assert set(g.affected.tolist()) == {v for e in pairs(stream.arrivals[t]) for v in e}
        if t:
            assert set(g.memory.tolist()) <= set(stream.nodes_until(t - 1).tolist()), \
                "memory drawn from the previous snapshot"
            for graph in (g.rec, g.ret):
                assert set(graph.node_ids.tolist()) <= nodes, "task graphs must not contain future nodes"
            old_pairs = pairs(stream.edges_until(t - 1))
            assert pairs(g.rec.node_ids[g.rec.edge_index]) <= old_pairs, "rectification graph uses the OLD topology"
            new_only = pairs(stream.arrivals[t]) - old_pairs
            assert not pairs(g.rec.node_ids[g.rec.edge_index]) & new_only


@given(st.integers(0, 10_000))
def test_task_construction_is_a_pure_function_of_t_and_seed(seed):
    a, b = small_stream(seed), small_stream(seed)
    b.task(1, 16, seed)  # indexing other tasks first must not change anything
    for t in (2, 3):
        ga, gb = a.task(t, 16, seed), b.task(t, 16, seed)
        assert torch.equal(ga.memory, gb.memory)
        for x, y in ((ga.rec, gb.rec), (ga.ret, gb.ret), (ga.now, gb.now)):
            assert torch.equal(x.edge_index, y.edge_index) and torch.equal(x.node_ids, y.node_ids)
    assert torch.equal(a.task(2, 16, seed).memory, a.task(2, 16, seed).memory)


def test_memory_is_redrawn_per_task_from_training_nodes():
    stream = small_stream(0)
    mems = [stream.task(t, 16, 7).memory for t in range(1, 4)]
    for t, mem in enumerate(mems, 1):
        assert mem.numel() == 16 and bool(stream.train_mask[mem].all())
        assert set(mem.tolist()) <= set(stream.nodes_until(t - 1).tolist())
    assert not torch.equal(mems[0], mems[1]), "memory must be replaced, not kept"


@pytest.mark.parametrize("order", ["edge", "node"])
def test_generic_builder_splits_a_graph_into_cumulative_snapshots(order):
    g = torch.Generator().manual_seed(0)
    n = 50
    edges = torch.randint(0, n, (2, 200), generator=g)
    stream = stream_from_graph(torch.randn(n, 4), torch.randint(0, 2, (n,)), edges, 5, order, True, g)
    full = pairs(edges)
    assert pairs(stream.edges_until(4)) == full
    assert sum(len(pairs(a)) for a in stream.arrivals) == len(full), "each pair arrives exactly once"
    with pytest.raises(ValueError):
        stream_from_graph(torch.randn(n, 4), torch.randint(0, 2, (n,)), edges, 5, "time", True, g)


# -- the official Cora stream (needs ../shared/data) ---------------------------------------------
GROWTH = [(1084, 735, 430, 154), (1663, 1097, 648, 231), (1950, 1270, 755, 266), (2052, 1319, 784, 276),
          (2483, 1533, 917, 312), (2603, 1560, 934, 320), (3108, 1822, 1098, 366), (3372, 1949, 1178, 389),
          (3847, 2135, 1283, 429), (4004, 2176, 1308, 439), (4823, 2508, 1508, 499), (4861, 2526, 1522, 501),
          (5220, 2691, 1617, 534), (5278, 2708, 1625, 541)]


@pytest.fixture(scope="module")
def cora_stream():
    shared = shared_data_dir()
    if shared is None or not (shared / "PIGNN_cora_stream").is_dir() or not (shared / "Cora").is_dir():
        pytest.skip("needs PIGNN_cora_stream and Cora under the shared data dir (PK_SHARED_DATA or ../shared/data)")
    from pk_pignn.data import load_cora_stream

    return load_cora_stream(shared / "PIGNN_cora_stream")


def test_cora_stream_growth_matches_the_release(cora_stream):
    stream, _ = cora_stream
    assert stream.num_tasks == 14
    for t, (edges, nodes, train, test) in enumerate(GROWTH):
        snap = stream.snapshot(t)
        got = (len(pairs(stream.edges_until(t))), snap.num_nodes, int(snap.train_mask.sum()), int(snap.test_mask.sum()))
        assert got == (edges, nodes, train, test)


def test_cora_id_map_and_label_map(cora_stream):
    from pk_graph.data import cora

    stream, extra = cora_stream
    shared = shared_data_dir()
    raw = shared / "PIGNN_cora_stream" / "raw"
    planetoid = cora()

    def rows(name: str) -> list[list[str]]:
        return [line.split() for line in (raw / name).read_text().split("\n") if line.strip()]

    mapping = {int(a): int(b) for a, b in rows("pignn_to_planetoid_index.txt")}
    assert sorted(mapping) == sorted(mapping.values()) == list(range(2708)), "id map must be a bijection"
    pyg_pairs = pairs(planetoid.edge_index)
    for a, b in rows("edges"):
        assert (min(mapping[int(a)], mapping[int(b)]), max(mapping[int(a)], mapping[int(b)])) in pyg_pairs
    assert extra["label_map"] == {"0": 3, "1": 6, "2": 1, "3": 4, "4": 0, "5": 2, "6": 5}
    labels = {int(a): int(b) for a, b in rows("labels")}
    assert all(int(stream.y[i]) == extra["label_map"][str(labels[i])] for i in range(2708))
    full = {(min(int(a), int(b)), max(int(a), int(b))) for a, b in rows("edges")}
    assert pairs(stream.edges_until(13)) == full, "the last snapshot must be the full Cora graph"
    assert len(pairs(stream.edges_until(13))) == 5278 and stream.nodes_until(13).numel() == 2708


def test_cora_affected_nodes_and_memory(cora_stream):
    stream, _ = cora_stream
    g = stream.task(5, 64, 0)
    raw = shared_data_dir() / "PIGNN_cora_stream" / "raw" / "stream_edges" / "5"
    ends = {int(v) for line in raw.read_text().split("\n") if line.strip() for v in line.split()}
    assert set(g.affected.tolist()) == ends
    assert g.memory.numel() == 64 and bool(stream.train_mask[g.memory].all())
