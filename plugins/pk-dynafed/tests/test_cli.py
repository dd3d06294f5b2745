"""End to end through the CLI: Dynafed under fedsim on the synthetic default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from click.testing import CliRunner

from pk.cli.main import cli
from pk.core.io import load_tensors
from pk.core.run import Run

BASE = [
    "-c",
    "dataset.name=synthetic-images",
    "-c",
    "model.name=mlp",
    "-c",
    "model.hidden=[32]",
    "-c",
    "model.dropout=0.0",
    "-c",
    "trainer.name=fedsim",
    "-c",
    "trainer.rounds=7",
    "-c",
    "trainer.num_clients=6",
    "-c",
    "trainer.participation=0.5",
    "-c",
    "trainer.lr=0.1",
    "-c",
    "trainer.weighting=uniform",
    "-c",
    "trainer.partition=dynafed-dirichlet",
    "-c",
    "trainer.alpha=0.05",
    "-c",
    "trainer.plot=false",
    "-c",
    "run.threads=1",
]
DYNAFED = ["-c", "aggregator.name=dynafed", "-c", "aggregator.ipc=1", "-c", "aggregator.syn_steps=3",
           "-c", "aggregator.iterations=5", "-c", "aggregator.distill_iter=3", "-c", "aggregator.distill_lr=0.001"]


def train(out: Path, *extra: str) -> dict[str, Any]:
    res = CliRunner().invoke(cli, ["train", *BASE, *extra, "--run-dir", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads((out / "result.json").read_text())


def test_synthesis_after_the_last_round_equals_unweighted_fedavg(tmp_path):
    fedavg = train(tmp_path / "fedavg", "-c", "aggregator.name=fedavg")
    never = train(tmp_path / "never", *DYNAFED, "-c", "aggregator.min_trajectory_length=50")
    assert never["metrics"] == fedavg["metrics"]
    a = load_tensors(tmp_path / "fedavg" / "checkpoints" / "model.pt")["model"]
    b = load_tensors(tmp_path / "never" / "checkpoints" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dynafed_run_synthesises_once_and_resumes_exactly(tmp_path):
    extra = [*DYNAFED, "-c", "aggregator.min_trajectory_length=4", "-c", "trainer.checkpoint_every=1"]
    full = train(tmp_path / "full", *extra)
    state = load_tensors(tmp_path / "full" / "checkpoints" / "last.pt")["extra"]["aggregator"]
    assert state["synthesized"] and state["synthesis_round"] == 4 and len(state["trajectory"]) == 4
    assert len(state["matching_losses"]) == 5 and tuple(state["images"].shape) == (10, 1, 8, 8)
    assert full["metrics"] != train(tmp_path / "fedavg", "-c", "aggregator.name=fedavg")["metrics"]
    assert full["metrics"]["fit.agg_synthesis_round"] == 4 and "fit.agg_matching_loss_end" in full["metrics"]

    original, calls = Run.save_checkpoint, {"n": 0}

    def interrupting(self: Run, payload: dict[str, Any], tag: str = "last") -> Any:
        out = original(self, payload, tag)
        calls["n"] += tag == "last"
        if tag == "last" and calls["n"] == 5:  # stop after round 5, past the synthesis round
            raise KeyboardInterrupt
        return out

    Run.save_checkpoint = interrupting  # type: ignore[method-assign]
    try:
        CliRunner().invoke(cli, ["train", *BASE, *extra, "--run-dir", str(tmp_path / "cut")])
    finally:
        Run.save_checkpoint = original  # type: ignore[method-assign]
    assert json.loads((tmp_path / "cut" / "result.json").read_text())["status"] == "interrupted"
    assert load_tensors(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 5  # rounds completed
    res = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "cut")])
    assert res.exit_code == 0, res.output
    resumed = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert resumed["metrics"] == full["metrics"]
    a = load_tensors(tmp_path / "full" / "checkpoints" / "model.pt")["model"]
    b = load_tensors(tmp_path / "cut" / "checkpoints" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_dsa_strategy_is_one_line_exit_2(tmp_path):
    pk = Path(sys.executable).parent / "pk"
    res = subprocess.run([str(pk), "train", *BASE, *DYNAFED, "-c", "aggregator.dsa_strategy=color_blur",
                          "--run-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=180)
    assert res.returncode == 2, res.stderr
    assert "dsa_strategy" in res.stderr and "Traceback" not in res.stderr
