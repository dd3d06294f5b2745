"""Resume: an interrupted run continued with --resume ends bit-identical to an
uninterrupted one on CPU; metrics.jsonl is cut back to the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import BASE, invoke


def test_resume_is_bitwise_identical(runner, monkeypatch):
    import torch

    from pk.core.io import load_tensors
    from pk.core.run import Run

    args = ["train", *BASE, "-c", "trainer.max_epochs=4", "--json", "-q"]
    full = json.loads(invoke(runner, [*args, "--run-dir", "full"]).output)

    original = Run.log
    def interrupt(self, step, split="train", **m):
        original(self, step, split, **m)
        if split == "valid" and m and Path(self.dir, "checkpoints", "last.pt").exists() and step >= 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(Run, "log", interrupt)
    cut = invoke(runner, [*args, "--run-dir", "cut"])
    assert cut.exit_code == 130, cut.output
    monkeypatch.setattr(Run, "log", original)
    assert json.loads(Path("cut/result.json").read_text())["status"] == "interrupted"
    resumed = invoke(runner, ["train", "--resume", "cut", "--json", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output)["metrics"] == full["metrics"]
    a = load_tensors(Path("full/checkpoints/model.pt"))["model"]
    b = load_tensors(Path("cut/checkpoints/model.pt"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in Path("cut/metrics.jsonl").read_text().splitlines()]
    full_steps = [json.loads(x)["step"] for x in Path("full/metrics.jsonl").read_text().splitlines()]
    assert steps == full_steps, "metrics.jsonl after resume must equal the uninterrupted run's"
