"""Scale-out: 2-process DDP through the real launcher (gloo, loopback), resume from a
distributed checkpoint, a Ray batch on a local Ray instance, and batch resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PK, invoke, run_pk

TRAIN = ["train", "-c", "model.name=mlp", "-c", "model.dropout=0.0", "-c", "dataset.name=synthetic-classification",
         "-c", "trainer.name=supervised", "-c", "trainer.batch_size=64"]
TOL = 1e-5  # float summation order differs between one and two processes


def _metrics(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed", result
    return result["metrics"]


def test_two_processes_match_one(tmp_path):
    one = run_pk([*TRAIN, "-c", "trainer.max_epochs=3", "--run-dir", "one", "-q"], cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = run_pk([*TRAIN, "-c", "trainer.max_epochs=3", "--run-dir", "two", "--nproc-per-node", "2"], cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert json.loads((tmp_path / "two/result.json").read_text())["world_size"] == 2
    assert a.keys() == b.keys()
    for k in a:
        assert abs(a[k] - b[k]) <= TOL, (k, a[k], b[k])


def test_resume_from_distributed_checkpoint(tmp_path):
    full = run_pk([*TRAIN, "-c", "trainer.max_epochs=3", "--run-dir", "full", "--nproc-per-node", "2"], cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-2000:]
    # a run cut after epoch 2: same config except the budget, then marked interrupted
    cut = run_pk([*TRAIN, "-c", "trainer.max_epochs=2", "--run-dir", "cut", "--nproc-per-node", "2"], cwd=tmp_path)
    assert cut.returncode == 0, cut.stderr[-2000:]
    cfg = tmp_path / "cut/config.toml"
    cfg.write_text(cfg.read_text().replace("max_epochs = 2", "max_epochs = 3"))
    result = json.loads((tmp_path / "cut/result.json").read_text())
    result["status"] = "interrupted"
    (tmp_path / "cut/result.json").write_text(json.dumps(result))
    (tmp_path / "cut/checkpoints/model.pt").unlink()
    resumed = run_pk(["train", "--resume", "cut", "--nproc-per-node", "2"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _metrics(tmp_path / "full"), _metrics(tmp_path / "cut")
    for k in a:
        assert abs(a[k] - b[k]) <= TOL, (k, a[k], b[k])


def test_refuses_trainer_without_distributed_support(tmp_path, pk_register_temp):
    from dataclasses import dataclass

    from pk.core import hookimpl

    @dataclass
    class Cfg:
        max_epochs: int = 1

    class Plugin:
        @hookimpl
        def pk_register_trainers(self, register):
            register("single", "tests.test_scale_out:SingleProcessTrainer", config=Cfg, summary="x",
                     tasks=("classification",))

    pk_register_temp(Plugin())
    from click.testing import CliRunner

    out = invoke(CliRunner(), ["train", "-c", "model.name=mlp", "-c", "dataset.name=synthetic-classification",
                               "-c", "trainer.name=single", "--nproc-per-node", "2"])
    assert out.exit_code == 2 and "does not support multi-process" in out.output


class SingleProcessTrainer:
    resumable = False

    def __init__(self, config):
        self.config = config


RAY_SCRIPT = """
set -e
ip link set lo up
export RAY_AUTH_MODE=disabled
RAY="$1"; PK="$2"; BATCH="$3"
"$RAY" start --head --node-ip-address=127.0.0.1 --port=36011 --num-cpus=2 \
--include-dashboard=false --disable-usage-stats >ray-start.log 2>&1
trap '"$RAY" stop --force >/dev/null 2>&1' EXIT
"$PK" batch "$BATCH" --executor ray --address 127.0.0.1:36011 --out rb 2>first.err
"$PK" batch "$BATCH" --executor ray --address 127.0.0.1:36011 --out rb --resume 2>second.err
"""


def test_ray_batch_on_local_cluster(tmp_path):
    """A local Ray head on 127.0.0.1 inside a fresh network namespace (loopback only)."""
    pytest.importorskip("ray")
    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("needs unshare and ip (util-linux, iproute2) to keep Ray on loopback")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root or user namespaces)")
    batch = tmp_path / "b.toml"
    batch.write_text(
        '[batch]\nname = "r"\nresources = { num_cpus = 1 }\n[defaults]\nmodel = { name = "mlp" }\n'
        'dataset = { name = "synthetic-classification", num_samples = 200 }\n'
        'trainer = { name = "supervised", max_epochs = 1 }\n'
        '[matrix]\n"run.seed" = [0, 1]\n'
    )
    script = tmp_path / "ray.sh"
    script.write_text(RAY_SCRIPT)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    out = subprocess.run(["unshare", "--net", "bash", str(script), ray_bin, PK, str(batch)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    logs = "".join((tmp_path / f).read_text()[-1500:] for f in ("ray-start.log", "first.err", "second.err")
                   if (tmp_path / f).exists())
    assert out.returncode == 0, out.stderr[-1500:] + logs
    lines = [json.loads(x) for x in (tmp_path / "rb/batch.jsonl").read_text().splitlines()]
    assert sorted(x["status"] for x in lines) == ["completed", "completed"]
    assert (tmp_path / "second.err").read_text().count("skip ") == 2


def test_interrupted_batch_resumes_without_rerunning(runner, tmp_path, monkeypatch):
    import pk.core.runner as runner_mod

    batch = tmp_path / "b.toml"
    batch.write_text(
        '[defaults]\nmodel = { name = "mlp" }\ndataset = { name = "synthetic-classification", num_samples = 200 }\n'
        'trainer = { name = "supervised", max_epochs = 1 }\n[matrix]\n"run.seed" = [0, 1, 2]\n'
    )
    real = runner_mod.train
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "train", flaky)
    first = invoke(runner, ["batch", str(batch), "--out", "bd"])
    assert first.exit_code == 130
    done = [p for p in Path("bd").iterdir()
            if (p / "result.json").exists() and json.loads((p / "result.json").read_text())["status"] == "completed"]
    assert len(done) == 1
    stamp = (done[0] / "result.json").stat().st_mtime_ns
    monkeypatch.setattr(runner_mod, "train", real)
    second = invoke(runner, ["batch", str(batch), "--out", "bd", "--resume"])
    assert second.exit_code == 0, second.output
    assert (done[0] / "result.json").stat().st_mtime_ns == stamp, "a completed run was rerun"
    lines = [json.loads(x) for x in Path("bd/batch.jsonl").read_text().splitlines()]
    assert sorted(x["seed"] for x in lines) == [0, 1, 2] and all(x["status"] == "completed" for x in lines)
    assert shutil.which(PK) or Path(PK).exists()
