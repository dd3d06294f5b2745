"""Raw-format readers, the image datasets, and end-to-end runs through the CLI."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pk_fl.data.images import load_cifar10_binary, load_digits_csv, load_mnist_idx

from pk.cli.main import cli
from pk.core.errors import DataError
from pk.core.paths import shared_data_dir


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, magic: int = 2051) -> None:
    n, r, c = images.shape
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(struct.pack(">IIII", magic, n, r, c) + images.tobytes()))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()))


def test_idx_round_trip_and_bad_magic(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7)
    write_idx(tmp_path, images, labels)
    x, y = load_mnist_idx(tmp_path)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (7, 28, 28) and y.dtype == torch.int64
    assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)
    write_idx(tmp_path, images, labels, magic=2049)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: bad IDX magic"):
        load_mnist_idx(tmp_path)


def test_digits_csv_and_bad_row(tmp_path):
    good = tmp_path / "d.csv"
    good.write_text(",".join(["16"] * 64 + ["3"]) + "\n" + ",".join(["0"] * 64 + ["9"]) + "\n")
    x, y = load_digits_csv(good)
    assert tuple(x.shape) == (2, 8, 8) and x.dtype == torch.float32 and y.tolist() == [3, 9] and float(x.max()) == 16
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(["0"] * 64 + ["1"]) + "\n" + ",".join(["0"] * 10) + "\n")
    with pytest.raises(DataError, match=r"bad.csv:2: expected 65"):
        load_digits_csv(bad)


def test_cifar10_binary_reader(tmp_path):
    rng = np.random.default_rng(1)
    records = []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = np.concatenate([rng.integers(0, 10, (3, 1)), rng.integers(0, 256, (3, 3072))], axis=1).astype(np.uint8)
        (tmp_path / name).write_bytes(rec.tobytes())
        records.append(rec)
    x, y = load_cifar10_binary(tmp_path, "train")
    assert tuple(x.shape) == (15, 3, 32, 32) and y.tolist() == np.concatenate([r[:, 0] for r in records[:5]]).tolist()
    assert np.array_equal(x[0].numpy().reshape(-1), records[0][0, 1:])
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="test_batch.bin: 100 bytes"):
        load_cifar10_binary(tmp_path, "test")


def test_real_mnist_t10k_matches_the_note():
    shared = shared_data_dir()
    if shared is None or not (shared / "mnist_t10k").is_dir():
        pytest.skip("no shared data dir (set PK_SHARED_DATA) with mnist_t10k")
    x, y = load_mnist_idx(shared / "mnist_t10k")
    assert tuple(x.shape) == (10000, 28, 28)
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(x.float().mean()) - 33.79) < 0.01


def test_real_digits_match_the_note():
    shared = shared_data_dir()
    if shared is None or not (shared / "sklearn_digits").is_dir():
        pytest.skip("no shared data dir (set PK_SHARED_DATA) with sklearn_digits")
    x, y = load_digits_csv(shared / "sklearn_digits" / "digits.csv.gz")
    assert tuple(x.shape) == (1797, 8, 8) and torch.bincount(y).tolist()[:3] == [178, 182, 177]


BASE = [
    "-c", "dataset.name=synthetic-images", "-c", "model.name=mlp", "-c", "trainer.name=fedsim",
    "-c", "trainer.rounds=12", "-c", "trainer.num_clients=10", "-c", "trainer.local_epochs=2", "-c", "trainer.lr=0.1",
    "-c", "trainer.attack=sign-flip", "-c", "trainer.malicious_fraction=0.2", "-c", "run.threads=1",
]


def run_cli(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", *BASE, *extra, "--run-dir", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads((out / "result.json").read_text()) | {"dir": str(out)}


def test_cli_median_resists_sign_flip_where_fedavg_fails(tmp_path):
    fedavg = run_cli(tmp_path / "a", "-c", "aggregator.name=fedavg")
    median = run_cli(tmp_path / "m", "-c", "aggregator.name=median")
    assert median["metrics"]["test.accuracy"] > fedavg["metrics"]["test.accuracy"] + 0.2
    assert median["metrics"]["fit.malicious_weight_mean"] < fedavg["metrics"]["fit.malicious_weight_mean"]
    assert Path(median["dir"], "artifacts", "accuracy.png").stat().st_size > 0
    lines = [json.loads(x) for x in Path(median["dir"], "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "server"] == list(range(13))


def test_cli_bad_config_is_one_line_exit_2(tmp_path):
    pk = Path(sys.executable).parent / "pk"
    res = subprocess.run([str(pk), "train", *BASE, "-c", "trainer.participation=0", "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "participation" in res.stderr and "Traceback" not in res.stderr
