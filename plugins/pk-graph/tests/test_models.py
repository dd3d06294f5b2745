"""GNN baselines: permutation equivariance / invariance, trainer errors, CLI end to end."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_graph.models import GNNClassifier
from pk_graph.plugin import NodeTrainerConfig
from pk_graph.trainers import NodeClassificationTrainer
from pk_graph.trainers.loop import neighbor_sampling_available
from torch_geometric.data import Batch, Data

from pk.core.errors import ConfigError


def _random_graph(n: int, seed: int) -> Data:
    g = torch.Generator().manual_seed(seed)
    edges = torch.randint(0, n, (2, 3 * n), generator=g)
    edges = edges[:, edges[0] != edges[1]]
    edges = torch.cat([edges, edges.flip(0)], dim=1).unique(dim=1)
    return Data(x=torch.randn(n, 5, generator=g), edge_index=edges, y=torch.zeros(n, dtype=torch.long), num_nodes=n)


def _permute(d: Data, perm: torch.Tensor) -> Data:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return Data(x=d.x[perm], edge_index=inv[d.edge_index], y=d.y[perm], num_nodes=d.num_nodes)


@settings(max_examples=8)
@given(conv=st.sampled_from(["gcn", "gat", "sage", "gin"]), n=st.integers(2, 30), seed=st.integers(0, 1000))
def test_node_outputs_are_permutation_equivariant(conv, n, seed):
    torch.manual_seed(seed)
    model = GNNClassifier(conv, 5, 3, "node-classification", hidden=16, heads=4).eval()
    d = _random_graph(n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        out, out_p = model.predict(d), model.predict(_permute(d, perm))
    assert torch.allclose(out[perm], out_p, atol=1e-5)


@settings(max_examples=8)
@given(conv=st.sampled_from(["gcn", "gat", "sage", "gin"]), n=st.integers(2, 30), seed=st.integers(0, 1000))
def test_graph_outputs_are_permutation_invariant(conv, n, seed):
    torch.manual_seed(seed)
    model = GNNClassifier(conv, 5, 2, "graph-classification", hidden=16, heads=4).eval()
    d = _random_graph(n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        a = model.predict(Batch.from_data_list([d]))
        b = model.predict(Batch.from_data_list([_permute(d, perm)]))
    assert a.shape == (1, 2) and torch.allclose(a, b, atol=1e-5)


def test_neighbor_sampler_without_extensions_says_what_to_install():
    if neighbor_sampling_available():
        pytest.skip("pyg-lib or torch-sparse is installed here")
    with pytest.raises(ConfigError, match="pyg-lib or torch-sparse"):
        NodeClassificationTrainer(NodeTrainerConfig(sampler="neighbor"))


def test_cli_trains_gcn_on_csbm(tmp_path, monkeypatch):
    from pk.cli.main import cli

    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    args = ["train", "-c", "model.name=gcn", "-c", "dataset.name=csbm", "-c", "trainer.name=node-classification",
            "-c", "trainer.max_epochs=30", "-c", "evaluator.name=graph-macro-f1", "-c", f"run.out_dir={tmp_path}",
            "-c", "run.threads=1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    import json

    run_dir = next(p for p in tmp_path.iterdir()
                   if p.name.endswith(tuple("0123456789abcdef")) and (p / "result.json").exists())
    metrics = json.loads((run_dir / "result.json").read_text())["metrics"]
    assert metrics["test.accuracy"] > 0.6, metrics  # CSBM default: features alone give ~0.45
    assert 0.0 <= metrics["eval.macro_f1"] <= 1.0


def test_cli_rejects_corrupt_tu_file_with_exit_2(tmp_path, monkeypatch, capsys):
    from pk.cli.main import main

    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    raw = tmp_path / "BAD" / "raw"
    raw.mkdir(parents=True)
    (raw / "BAD_A.txt").write_text("1, 2\n2, oops\n")
    (raw / "BAD_graph_indicator.txt").write_text("1\n1\n")
    args = ["train", "-c", "model.name=gin", "-c", "dataset.name=tu", "-c", "dataset.dataset_name=BAD",
            "-c", "dataset.source=file", "-c", f"dataset.path={tmp_path / 'BAD'}",
            "-c", "trainer.name=graph-classification", "-c", f"run.out_dir={tmp_path / 'runs'}"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{raw / 'BAD_A.txt'}:2:" in err and "Traceback" not in err


def _train_cli(tmp_path, monkeypatch, *extra: str) -> tuple[dict, object]:
    import json

    from pk.cli.main import cli

    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    args = ["train", "-c", "model.name=gcn", "-c", "dataset.name=csbm", "-c", "trainer.name=node-classification",
            "-c", "evaluator.name=graph-accuracy", "-c", f"run.out_dir={tmp_path}", "-c", "run.threads=1", *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run_dir = next(p for p in tmp_path.iterdir() if (p / "result.json").exists())
    return json.loads((run_dir / "result.json").read_text())["metrics"], run_dir


def test_fit_reports_budget_and_whether_the_loss_left_chance(tmp_path, monkeypatch):
    """The old trainer returned no learning check: an arm stuck at chance (ln C) looked like any other."""
    metrics, _ = _train_cli(tmp_path / "a", monkeypatch, "-c", "trainer.max_epochs=30")
    assert metrics["fit.epochs_run"] == 30 and 1 <= metrics["fit.best_epoch"] <= 30
    assert abs(metrics["fit.chance_loss"] - math.log(3)) < 1e-9, "balanced CSBM classes: chance = ln 3"
    assert metrics["fit.loss_left_chance"] == 1.0 and metrics["fit.min_train_loss"] < 0.95 * math.log(3)
    stuck, _ = _train_cli(tmp_path / "b", monkeypatch, "-c", "trainer.max_epochs=2", "-c", "trainer.lr=1e-7")
    assert stuck["fit.loss_left_chance"] == 0.0 and stuck["fit.final_train_loss"] > 0.95 * math.log(3)


def test_per_example_scores_match_the_metrics(tmp_path, monkeypatch):
    """Paired statistics need examples-*.npz whose means equal the reported metrics."""
    import numpy as np

    metrics, run_dir = _train_cli(tmp_path, monkeypatch, "-c", "trainer.max_epochs=5")
    test = np.load(run_dir / "examples-test.npz")
    assert set(test.files) == {"accuracy", "loss"}
    assert abs(test["accuracy"].mean() - metrics["test.accuracy"]) < 1e-12
    assert abs(test["loss"].mean() - metrics["test.loss"]) < 1e-6
    evald = np.load(run_dir / "examples-eval.npz")
    assert abs(evald["accuracy"].mean() - metrics["eval.accuracy"]) < 1e-12
    assert set(np.unique(evald["accuracy"])) <= {0.0, 1.0}


def test_chance_loss_is_the_label_entropy():
    from pk_graph.trainers.loop import chance_loss

    assert abs(chance_loss(torch.tensor([0, 1, 2, 3])) - math.log(4)) < 1e-12
    assert abs(chance_loss(torch.tensor([0, 0, 0, 1])) - (-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))) < 1e-12


def test_gin_reads_out_every_layer():
    """Xu et al.: logits sum a linear readout of every layer's pooled states, input layer included.
    The old GIN pooled the last layer only, so the input-layer head had no effect."""
    torch.manual_seed(0)
    model = GNNClassifier("gin", 5, 2, "graph-classification", hidden=16, layers=3, pool="sum", readout="layers").eval()
    assert len(model.layer_heads) == 4 and len(model.norms) == 3
    batch = Batch.from_data_list([_random_graph(7, 1), _random_graph(9, 2)])
    with torch.no_grad():
        before = model.predict(batch)
        model.layer_heads[0].bias += 1.0
        after = model.predict(batch)
    assert torch.allclose(after - before, torch.ones_like(before)), "the input layer's readout adds to the logits"


def test_out_of_range_config_is_refused_before_training(tmp_path, monkeypatch):
    from pk.cli.main import main

    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    for bad in ("trainer.lr=-0.1", "trainer.max_epochs=0", "model.dropout=1.0", "dataset.homophily=1.5"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "-c", "model.name=gcn", "-c", "dataset.name=csbm", "-c", "trainer.name=node-classification",
                  "-c", bad, "-c", f"run.out_dir={tmp_path / 'runs'}"])
        assert exit_info.value.code == 2, bad
