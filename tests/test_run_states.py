"""Run states tell the truth: a killed run is "crashed" (and resumable), SIGTERM is
"interrupted", a closed stdout does not fail a run, and a data/config error leaves no run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import BASE, PK, run_pk

SLOW = [*BASE, "-c", "dataset.num_samples=6000", "-c", "trainer.max_epochs=4", "-c", "trainer.batch_size=4",
        "-c", "run.threads=1"]


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([PK, "train", *SLOW, "--run-dir", "runs/r"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PK_CACHE_DIR": str(tmp_path / "cache")})
    result = tmp_path / "runs" / "r" / "result.json"
    ckpt = tmp_path / "runs" / "r" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (result.exists() and ckpt.exists()):
        time.sleep(0.05)
    assert ckpt.exists(), "the run never saved a checkpoint"
    return proc, tmp_path / "runs" / "r"


def _listed_status(tmp_path: Path) -> str:
    out = run_pk(["runs", "--json"], cwd=tmp_path)
    (entry,) = json.loads(out.stdout)
    return entry["status"]


def test_kill_9_shows_crashed_and_resumes(tmp_path):
    proc, run_dir = _start(tmp_path)
    assert _listed_status(tmp_path) == "running"
    proc.kill()
    proc.wait()
    assert json.loads((run_dir / "result.json").read_text())["status"] == "running"  # nothing got to say otherwise
    assert _listed_status(tmp_path) == "crashed"
    out = run_pk(["runs", "--status", "crashed", "--json"], cwd=tmp_path)
    assert len(json.loads(out.stdout)) == 1
    resumed = run_pk(["train", "--resume", str(run_dir), "-q", "--json"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _listed_status(tmp_path) == "completed"


def test_sigterm_is_interrupted(tmp_path):
    proc, run_dir = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert json.loads((run_dir / "result.json").read_text())["status"] == "interrupted"
    assert _listed_status(tmp_path) == "interrupted"


def test_closed_stdout_does_not_fail_the_run(tmp_path):
    """`pk train | head -1`: the reader leaves after one line; the run still completes."""
    cmd = f"{PK} train {' '.join(BASE)} -c trainer.max_epochs=2 --run-dir runs/p | head -c 1"
    proc = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "runs" / "p" / "result.json").read_text())["status"] == "completed"


def test_config_error_at_build_leaves_no_run_dir(tmp_path):
    out = run_pk(["train", *BASE, "-c", "calibrator.name=identity"], cwd=tmp_path)
    assert out.returncode == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
