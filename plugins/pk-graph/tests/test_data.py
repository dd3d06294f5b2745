"""Dataset properties: synthetic generators, CV folds, real-file loaders and their errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_graph.data import build_csbm, build_motif_graphs, build_planetoid, build_tu
from pk_graph.data.bundles import cv_split, stratified_folds
from pk_graph.data.real import check_tu_raw, load_tu
from pk_graph.plugin import CSBMConfig, MotifGraphsConfig, PlanetoidConfig, TUConfig

from pk.core.errors import DataError
from pk.core.paths import shared_data_dir


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), classes=st.integers(2, 5), homophily=st.floats(0.0, 1.0))
def test_csbm_graph_and_masks(seed, classes, homophily):
    cfg = CSBMConfig(num_nodes=200, num_classes=classes, train_per_class=5, num_valid=30, homophily=homophily)
    bundle = build_csbm(cfg, seed=seed)
    d = bundle.data
    src, dst = d.edge_index
    assert bool((src != dst).all()), "self-loop"
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert all((b, a) in pairs for a, b in pairs), "edges must be symmetric"
    masks = torch.stack([d.train_mask, d.val_mask, d.test_mask]).long()
    assert bool((masks.sum(0) == 1).all()), "every node in exactly one split"
    assert torch.bincount(d.y[d.train_mask], minlength=classes).tolist() == [5] * classes
    assert int(d.val_mask.sum()) == 30
    assert build_csbm(cfg, seed=seed).fingerprint() == bundle.fingerprint()


def test_csbm_homophily_is_planted():
    d = build_csbm(CSBMConfig(num_nodes=1000, homophily=0.9), seed=0).data
    same = (d.y[d.edge_index[0]] == d.y[d.edge_index[1]]).float().mean()
    assert 0.85 < float(same) < 0.95


@settings(max_examples=15)
@given(seed=st.integers(0, 10_000), folds=st.integers(2, 10), n=st.integers(20, 120))
def test_stratified_folds_balance_classes(seed, folds, n):
    labels = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(seed))
    f = stratified_folds(labels, folds, torch.Generator().manual_seed(seed))
    for c in range(3):
        counts = torch.bincount(f[labels == c], minlength=folds)
        assert int(counts.max() - counts.min()) <= 1
    total = torch.bincount(f, minlength=folds)
    assert int(total.max() - total.min()) <= 1
    split = cv_split(labels, folds, seed % folds, torch.Generator().manual_seed(seed))
    allidx = torch.cat(list(split.values())).sort().values
    assert torch.equal(allidx, torch.arange(n)), "CV split must partition the examples"


def test_motif_graphs_classes_differ_only_in_structure():
    bundle = build_motif_graphs(MotifGraphsConfig(num_graphs=40), seed=3)
    ys = torch.cat([g.y for g in bundle.graphs])
    assert torch.bincount(ys).tolist() == [20, 20]
    for g in bundle.graphs:
        assert g.x.shape == (g.num_nodes, 3)
        assert int(g.edge_index.max()) < g.num_nodes
    batch = next(iter(bundle.loader("train", 8)))
    assert batch.num_graphs == 8 and batch.y.shape == (8,)


def test_auto_without_files_falls_back_to_synthetic(monkeypatch, tmp_path):
    monkeypatch.setenv("PK_SHARED_DATA", str(tmp_path / "nothing"))
    (tmp_path / "nothing").mkdir()
    node = build_planetoid(PlanetoidConfig(source="auto"), seed=0)
    assert node.info.extra["source"] == "synthetic"
    graph = build_tu(TUConfig(source="auto"), seed=0)
    assert graph.info.extra["source"] == "synthetic"
    with pytest.raises(DataError, match="no local files"):
        build_tu(TUConfig(source="file"), seed=0)


def _write_tu(root: Path, name: str, a_lines: list[str]) -> Path:
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    (raw / f"{name}_A.txt").write_text("\n".join(a_lines) + "\n")
    (raw / f"{name}_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n")
    (raw / f"{name}_graph_labels.txt").write_text("1\n-1\n")
    return raw


def test_tiny_tu_folder_loads(tmp_path):
    _write_tu(tmp_path, "TINY", ["1, 2", "2, 1", "2, 3", "3, 2", "4, 5", "5, 4"])
    graphs, source = load_tu("TINY", source="file", path=str(tmp_path / "TINY"))
    assert source == "file" and len(graphs) == 2
    assert [g.num_nodes for g in graphs] == [3, 2]
    assert graphs[0].x.shape == (3, 1), "graphs without node features get a constant feature"


@pytest.mark.parametrize(
    ("line", "message"),
    [("2; 1", "expected 2 comma-separated values"), ("2, x", "expected integers"), ("2, 9", "out of range")],
)
def test_corrupt_tu_file_is_one_line_naming_file_and_line(tmp_path, line, message):
    raw = _write_tu(tmp_path, "BAD", ["1, 2", "2, 1", line])
    with pytest.raises(DataError) as err:
        check_tu_raw(raw, "BAD")
    text = str(err.value)
    assert "\n" not in text
    assert f"{raw / 'BAD_A.txt'}:3:" in text and message in text
    with pytest.raises(DataError):
        build_tu(TUConfig(dataset_name="BAD", source="file", path=str(tmp_path / "BAD")), seed=0)


def _shared(name: str) -> Path:
    shared = shared_data_dir()
    if shared is None or not (shared / name / "raw").is_dir():
        pytest.skip(f"needs {name}/raw under the shared data dir (PK_SHARED_DATA or ../shared/data)")
    return shared / name


def test_corrupt_planetoid_pickle_names_the_file(tmp_path):
    src = _shared("Cora")
    dst = tmp_path / "Cora"
    shutil.copytree(src / "raw", dst / "raw")
    (dst / "raw" / "ind.cora.tx").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError) as err:
        build_planetoid(PlanetoidConfig(source="file", path=str(dst)), seed=0)
    assert str(dst / "raw" / "ind.cora.tx") in str(err.value) and "\n" not in str(err.value)
    (dst / "raw" / "ind.cora.tx").write_bytes((src / "raw" / "ind.cora.tx").read_bytes())
    (dst / "raw" / "ind.cora.test.index").write_text("1708\n17x9\n")
    with pytest.raises(DataError, match=r"ind\.cora\.test\.index:2:"):
        build_planetoid(PlanetoidConfig(source="file", path=str(dst)), seed=0)


def test_real_cora_public_split():
    _shared("Cora")
    bundle = build_planetoid(PlanetoidConfig(source="file"), seed=0)
    d = bundle.data
    assert bundle.info.extra["source"] == "file"
    assert (d.num_nodes, d.edge_index.shape[1], d.x.shape[1], bundle.info.num_classes) == (2708, 10556, 1433, 7)
    assert [len(bundle.split_keys(s)) for s in ("train", "valid", "test")] == [140, 500, 1000]


def test_real_mutag_and_folds():
    _shared("MUTAG")
    bundle = build_tu(TUConfig(dataset_name="MUTAG", source="file"), seed=0)
    assert bundle.info.extra["num_graphs"] == 188 and bundle.info.num_features == 7
    sizes = [len(bundle.split_keys(s)) for s in ("train", "valid", "test")]
    assert sum(sizes) == 188 and 18 <= sizes[2] <= 19


def _write_tu_files(root: Path, name: str, indicator: str, labels: str | None, edges: str = "1, 2\n2, 1\n") -> Path:
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    (raw / f"{name}_A.txt").write_text(edges)
    (raw / f"{name}_graph_indicator.txt").write_text(indicator)
    if labels is not None:
        (raw / f"{name}_graph_labels.txt").write_text(labels)
    return raw


@pytest.mark.parametrize(
    ("indicator", "labels", "where", "message"),
    [
        ("1\n1\n2\n2\n", "1\n1\n", "graph_labels.txt:1:", "at least 2 classes"),
        ("1\n1\n2\n2\n", "1\n", "graph_labels.txt:2:", "1 labels for 2 graphs"),
        ("1\n1\n3\n3\n", "1\n0\n0\n", "graph_indicator.txt:3:", "grow by 0 or 1"),
        ("\n", "1\n", "graph_indicator.txt:1:", "empty"),
        ("1\n1\n2\n2\n", None, "graph_labels.txt:", "missing"),
    ],
)
def test_degenerate_tu_data_is_one_line_naming_the_file(tmp_path, indicator, labels, where, message):
    """Old loaders accepted one-class or mislabelled TU folders (and crashed later, or trained on nothing)."""
    raw = _write_tu_files(tmp_path, "DEG", indicator, labels)
    with pytest.raises(DataError) as err:
        check_tu_raw(raw, "DEG")
    text = str(err.value)
    assert "\n" not in text and where in text and message in text and str(raw) in text


def test_one_class_planetoid_training_nodes_are_refused(tmp_path):
    from pk_graph.data.real import check_planetoid_data
    from torch_geometric.data import Data

    y = torch.tensor([0, 0, 1, 1])
    train = torch.tensor([True, True, False, False])
    data = Data(x=torch.ones(4, 2), y=y, train_mask=train, num_nodes=4)
    with pytest.raises(DataError, match=r"ind\.cora\.y:1: all 2 training nodes have class 0"):
        check_planetoid_data(data, tmp_path, "Cora")
    data.train_mask = torch.tensor([True, False, True, False])
    check_planetoid_data(data, tmp_path, "Cora")


def test_normalize_rows():
    from pk_graph.data import normalize_rows

    x = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 4.0]])
    out = normalize_rows(x)
    assert torch.allclose(out.sum(1), torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(out[0], torch.tensor([0.25, 0.75, 0.0]))


def test_real_cora_row_normalised_features():
    _shared("Cora")
    plain = build_planetoid(PlanetoidConfig(source="file"), seed=0)
    norm = build_planetoid(PlanetoidConfig(source="file", normalize_features=True), seed=0)
    assert torch.allclose(norm.data.x.sum(1), torch.ones(2708)), "every Cora node has at least one word"
    assert plain.fingerprint() != norm.fingerprint()
