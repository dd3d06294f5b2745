"""End to end through the CLI: train + evaluate, and a one-line error for a bad file."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pk.cli.main import cli


def test_train_remi_end_to_end(tmp_path: Path):
    args = ["train", "-c", "model.name=remi", "-c", "model.num_negatives=64", "-c", "dataset.name=remi-synthetic",
            "-c", "dataset.num_users=120", "-c", "trainer.name=candidate-matching", "-c", "trainer.max_steps=4",
            "-c", "trainer.eval_every=2", "-c", "evaluator.name=remi-protocol", "-c", "run.threads=1",
            "-c", f"run.out_dir={tmp_path}"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    metrics = json.loads((run_dir / "result.json").read_text())["metrics"]
    for k in ("test.recall@20", "test.hr@50", "eval.ndcg@50", "eval.routing_max"):
        assert 0.0 <= metrics[k] <= 1.0
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(x["split"] == "train" and x["rr"] > 0 for x in lines), "REMI must log a positive RR term"


def test_bad_file_is_one_line_error(tmp_path: Path):
    (tmp_path / "Beauty.txt").write_text("u1 3 4 x\n")
    pk = Path(sys.executable).with_name("pk")
    out = subprocess.run([str(pk), "train", "-c", "model.name=comirec-sa", "-c", "dataset.name=remi-amazon-beauty",
                          "-c", f"dataset.path={tmp_path}", "-c", "trainer.name=candidate-matching",
                          "-c", f"run.out_dir={tmp_path / 'runs'}"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "Beauty.txt:1" in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
