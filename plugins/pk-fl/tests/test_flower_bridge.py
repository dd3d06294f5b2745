"""The Flower bridge: a pk aggregator inside Flower's strategy (hand-built Messages), the trainer
``flower`` (pk's rounds as a Flower ServerApp/ClientApp) against ``fedsim``, and, opt-in, the Ray
simulation backend and a deployment across processes (SuperLink + SuperNodes + ``flwr run``).
Skips cleanly when flwr (the ``pk-fl[flower]`` extra) is not installed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

flwr = pytest.importorskip("flwr", reason="flwr not installed (pip install 'pk-fl[flower]')")

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from pk_fl.aggregators import CoordinateMedian  # noqa: E402
from pk_fl.trainers.flower_bridge import make_strategy  # noqa: E402

from pk.cli.main import cli  # noqa: E402
from pk.core.builtins.components import FedAvg  # noqa: E402
from pk.core.io import load_tensors  # noqa: E402


def state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 2, generator=g), "b": torch.randn(3, generator=g)}


class FakeGrid:
    """Enough of flwr's Grid for FedAvg.configure_train (node ids and message construction)."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes
        self.run_id = 1

    def get_node_ids(self) -> list[int]:
        return self.nodes


def replies_for(messages: list[Message], states: list[dict[str, torch.Tensor]], sizes: list[int]) -> list[Message]:
    out = []
    for msg, s, n in zip(messages, states, sizes):
        content = RecordDict(
            {"arrays": ArrayRecord(s), "metrics": MetricRecord({"num-examples": n, "client_loss": float(n)})}
        )
        out.append(Message(content=content, reply_to=msg))
    return out


@pytest.fixture
def server_identity(monkeypatch):
    """Flower's ServerApp runtime sets the task identity that message construction reads."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 0)):
        monkeypatch.setattr(TaskIdentity, attr, value)


@pytest.mark.parametrize("aggregator", [FedAvg(None), CoordinateMedian(SimpleNamespace())])
def test_bridge_matches_in_process_aggregator(server_identity, aggregator):
    glob = state(0)
    strategy = make_strategy(aggregator, min_train_nodes=3, min_available_nodes=3, fraction_train=1.0)
    messages = list(strategy.configure_train(1, ArrayRecord(glob), ConfigRecord({}), FakeGrid([11, 12, 13])))
    assert strategy.global_state is not None and torch.equal(strategy.global_state["w"], glob["w"])
    states, sizes = [state(i) for i in (1, 2, 3)], [10, 30, 60]
    by_node = {m.metadata.dst_node_id: m for m in messages}
    replies = replies_for([by_node[n] for n in (11, 12, 13)], states, sizes)
    arrays, metrics = strategy.aggregate_train(1, replies)
    got = arrays.to_torch_state_dict()
    want, _ = type(aggregator)(None).aggregate(glob, [(s, float(n), {}) for s, n in zip(states, sizes)])
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    assert sum(float(v) for k, v in metrics.items() if k.startswith("w/")) == pytest.approx(1.0)
    assert metrics["client_loss"] == pytest.approx((10 * 10 + 30 * 30 + 60 * 60) / 100)  # client metrics kept


BASE = ["-c", "dataset.name=synthetic-images", "-c", "dataset.num_samples=600", "-c", "model.name=mlp",
        "-c", "model.hidden=[16]", "-c", "run.threads=1", "-c", "trainer.rounds=2", "-c", "trainer.num_clients=3",
        "-c", "trainer.lr=0.1", "-c", "trainer.plot=false"]


def train(out: Path, *extra: str) -> dict:
    res = CliRunner().invoke(cli, ["train", *BASE, *extra, "--run-dir", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("setup", [
    ("krum", "lie", "1.0"),
    ("median", "label-flip", "0.67"),
    ("trimmed-mean", "sign-flip", "1.0"),
])
def test_flower_simulation_of_three_clients_matches_fedsim(tmp_path, setup):
    """Acceptance: a 3-client, 2-round Flower ServerApp/ClientApp run (in-process grid) through
    pk's aggregator ends with exactly fedsim's metrics and parameters. Catches any drift in the
    bridge: wrong node -> partition mapping, a lost attack, unseeded sampling or shuffling,
    aggregation in a different client order, or a reply's state mangled by the RecordDict trip."""
    agg, attack, participation = setup
    extra = ["-c", f"aggregator.name={agg}", "-c", f"trainer.attack={attack}", "-c", "trainer.malicious_fraction=0.34",
             "-c", f"trainer.participation={participation}"]
    fedsim = train(tmp_path / "fedsim", "-c", "trainer.name=fedsim", *extra)
    flower = train(tmp_path / "flower", "-c", "trainer.name=flower", *extra)
    assert flower["metrics"] == fedsim["metrics"]
    assert flower["metrics"]["fit.epochs_run"] == 2 and flower["metrics"]["fit.num_malicious"] == 1
    a = load_tensors(tmp_path / "fedsim" / "checkpoints" / "model.pt")["model"]
    b = load_tensors(tmp_path / "flower" / "checkpoints" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [json.loads(x) for x in (tmp_path / "flower" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs if x["split"] == "server"] == [0, 1, 2]


def test_flower_trainer_sees_different_results_for_a_different_seed(tmp_path):
    """Control for the equality test above: the comparison is not vacuous (seed 1 differs)."""
    a = train(tmp_path / "a", "-c", "trainer.name=flower")
    b = train(tmp_path / "b", "-c", "trainer.name=flower", "-c", "run.seed=1")
    assert a["metrics"] != b["metrics"]


def test_flower_trainer_refuses_a_persistent_client_optimizer(tmp_path):
    """A ConfigError (the CLI's exit 2), not a silently stateless run."""
    from pk.core.errors import ConfigError

    res = CliRunner().invoke(cli, ["train", *BASE, "-c", "trainer.name=flower", "-c",
                                   "trainer.persistent_client_optimizer=true", "--run-dir", str(tmp_path / "r")])
    assert isinstance(res.exception, ConfigError) and "stateless" in str(res.exception)


@pytest.mark.skipif(os.environ.get("PK_TEST_FLOWER_RAY") != "1",
                    reason="starts a Ray cluster (about 1.5 min on 2 loaded cores); set PK_TEST_FLOWER_RAY=1")
def test_ray_backend_matches_fedsim(tmp_path):
    """Flower's own simulation runtime (ClientApps in Ray actors, other processes)."""
    extra = ["-c", "aggregator.name=krum", "-c", "trainer.attack=lie", "-c", "trainer.malicious_fraction=0.34"]
    fedsim = train(tmp_path / "fedsim", "-c", "trainer.name=fedsim", *extra)
    ray = train(tmp_path / "ray", "-c", "trainer.name=flower", "-c", "trainer.backend=ray", *extra)
    assert ray["metrics"] == fedsim["metrics"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(os.environ.get("PK_TEST_FLOWER_DEPLOY") != "1",
                    reason="starts a SuperLink, 3 SuperNodes and a ClientApp process per message (about 5 min on "
                           "2 loaded cores); set PK_TEST_FLOWER_DEPLOY=1")
def test_deployment_with_superlink_and_supernodes_matches_fedsim(tmp_path):
    """Deployment across processes: a local SuperLink, three SuperNodes (partition ids 0..2) and
    ``flwr run`` of the app that ``python -m pk_fl.trainers.flower_deploy init`` writes. The ServerApp's
    result equals fedsim's on the same config."""
    from pk_fl.trainers.flower_deploy import write_app

    bin_dir = Path(sys.executable).parent
    home, out = tmp_path / "flwr-home", tmp_path / "out"
    home.mkdir()
    link = _free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    cfg = tmp_path / "pk.toml"
    cfg.write_text(
        '[run]\nseed = 0\nthreads = 1\n[dataset]\nname = "synthetic-images"\nnum_samples = 600\n'
        '[model]\nname = "mlp"\nhidden = [16]\n[trainer]\nname = "fedsim"\nrounds = 2\nnum_clients = 3\nlr = 0.1\n'
        'attack = "lie"\nmalicious_fraction = 0.34\nplot = false\ncheckpoint_every = 0\n[aggregator]\nname = "krum"\n'
    )
    app = write_app(tmp_path / "app")
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1"}
    procs = []

    def start(*args: str, log: str) -> None:
        fh = (tmp_path / log).open("w")
        procs.append(subprocess.Popen([str(bin_dir / args[0]), *args[1:]], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                      start_new_session=True))

    try:
        start("flower-superlink", "--insecure", "--port", str(link), "--disable-runtime-dependency-installation",
              log="superlink.log")
        time.sleep(3)
        for pid in range(3):
            start("flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}", "--port", str(_free_port()),
                  "--node-config", f"partition-id={pid} num-partitions=3", log=f"node{pid}.log")
        res = subprocess.run(
            [
                str(bin_dir / "flwr"),
                "run",
                str(app),
                "local",
                "--stream",
                "--run-config",
                f'pk-config="{cfg}" out-dir="{out}"',
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert (out / "result.json").is_file(), res.stdout[-3000:] + res.stderr[-3000:]
    finally:
        for p in procs:  # each process leads its own session: end it and whatever it spawned
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    deployed = json.loads((out / "result.json").read_text())
    fedsim = train(
        tmp_path / "fedsim",
        "-c",
        "trainer.name=fedsim",
        "-c",
        "aggregator.name=krum",
        "-c",
        "trainer.attack=lie",
        "-c",
        "trainer.malicious_fraction=0.34",
    )
    assert deployed["metrics"] == fedsim["metrics"]
    assert sorted(deployed["partitions"]) == ["0", "1", "2"]
