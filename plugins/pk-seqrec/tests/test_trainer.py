"""The next-item trainer: extension point, batch sizing, early stopping, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pk_seqrec.data.datasets import build_synthetic_seq
from pk_seqrec.models.sasrec import SASRec
from pk_seqrec.plugin import NextItemTrainerConfig, SyntheticSeqConfig
from pk_seqrec.trainers.next_item import NextItemTrainer
from torch import nn

from pk.core.testing import MemoryRun


class TwoOptimizerModel(SASRec):
    """Uses the extension point: two parameter groups, two optimizers, its own step."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.steps = 0

    def configure_optimizers(self, cfg: Any) -> list[torch.optim.Optimizer]:
        emb = list(self.item_embedding.parameters())
        rest = [p for n, p in self.named_parameters() if not n.startswith("item_embedding")]
        return [torch.optim.Adam(emb, lr=cfg.lr), torch.optim.SGD(rest, lr=cfg.lr)]

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        for opt in optimizers:
            opt.zero_grad()
        loss = self.loss(batch)
        loss.backward()
        for opt in optimizers:
            opt.step()
        self.steps += 1
        return {"loss": float(loss.detach())}


def test_model_can_take_over_the_step() -> None:
    data = build_synthetic_seq(SyntheticSeqConfig(num_users=60), seed=0)
    model = TwoOptimizerModel(data.info.num_items, data.info.max_len, hidden=16, heads=2, inner=32)
    before = model.item_embedding.weight.detach().clone()
    run = MemoryRun()
    trainer = NextItemTrainer(NextItemTrainerConfig(max_epochs=2, batch_size=16))
    trainer.fit(model, data, run)
    assert model.steps == 2 * -(-data.size("train") // 16)
    assert run.saved and len(run.saved[-1]["optimizers"]) == 2
    assert not torch.equal(before, model.item_embedding.weight)


def test_batch_targets_sizes_batches() -> None:
    data = build_synthetic_seq(SyntheticSeqConfig(num_users=60), seed=0)
    per_row = float((data.tensors["train"]["targets"] != 0).sum()) / data.size("train")
    trainer = NextItemTrainer(NextItemTrainerConfig(batch_targets=64))
    assert trainer._batch_rows(data) == max(1, round(64 / per_row))
    assert NextItemTrainer(NextItemTrainerConfig(batch_size=7))._batch_rows(data) == 7


def test_early_stopping_restores_best() -> None:
    data = build_synthetic_seq(SyntheticSeqConfig(num_users=60), seed=0)

    class Frozen(nn.Module):  # predicts the same thing forever: validation never improves
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(data.info.num_items + 1))

        def loss(self, batch: Any) -> torch.Tensor:
            return self.w.sum() * 0.0

        def predict(self, batch: Any) -> torch.Tensor:
            s = self.w.detach().expand(batch["seq"].shape[0], -1).clone()
            s[:, 0] = float("-inf")
            return s

    out = NextItemTrainer(NextItemTrainerConfig(max_epochs=20, patience=2)).fit(Frozen(), data, MemoryRun())
    assert out["epochs_run"] == 3 and out["best_epoch"] == 1  # 1-based
    never = NextItemTrainer(NextItemTrainerConfig(max_epochs=4, patience=0)).fit(Frozen(), data, MemoryRun())
    assert never["epochs_run"] == 4 and never["best_epoch"] == 1  # patience 0: no early stop


def test_cli_train_sasrec_on_default(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pk.cli.main import cli

    res = CliRunner().invoke(cli, ["train", "-c", "model.name=sasrec", "-c", "dataset.name=synthetic-seq", "-c",
                                   "trainer.name=next-item", "-c", "trainer.max_epochs=2", "-c", "run.threads=1",
                                   "-c", "evaluator.name=full-ranking", "-c", f"run.out_dir={str(tmp_path)!r}"])
    assert res.exit_code == 0, res.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "result.json").read_text())
    m = result["metrics"]
    assert result["status"] == "completed"
    assert 0.0 <= m["test.ndcg@10"] <= m["test.hr@10"] <= m["test.hr@20"] <= 1.0
    assert m["test.history_excluded"] == 0.0 and "eval.ndcg@10" in m
