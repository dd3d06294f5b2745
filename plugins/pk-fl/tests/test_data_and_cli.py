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
from pk_fl.data.readers import load_cifar10_binary, load_digits_csv, load_mnist_idx

from pk.cli.main import cli
from pk.core.errors import DataError
from pk.core.paths import shared_data_dir


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, magic: int = 2051) -> None:
    n, r, c = images.shape
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">IIII", magic, n, r, c) + images.tobytes())
    )
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())
    )


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
    assert median["metrics"]["fit.epochs_run"] == 12
    per_example = np.load(Path(median["dir"], "examples-test.npz"))
    assert float(per_example["accuracy"].mean()) == pytest.approx(median["metrics"]["test.accuracy"], abs=1e-9)
    assert set(np.unique(per_example["accuracy"])) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "override",
    [
        "trainer.participation=0",
        "trainer.rounds=0",
        "trainer.rounds=-1",
        "trainer.num_clients=0",
        "trainer.local_epochs=-1",
        "trainer.batch_size=0",
        "trainer.lr=-0.1",
        "trainer.lr=nan",
        "trainer.lr=inf",
        "trainer.malicious_fraction=1.0",
        "trainer.alpha=0",
        "trainer.proxy_samples=-1",
        "dataset.num_test=0",
        "dataset.num_samples=0",
        "aggregator.name=trimmed-mean",
        "aggregator.name=krum",
    ],
)
def test_cli_bad_config_is_one_line_exit_2(tmp_path, override):
    """Range checks at resolve time (no torch): every out-of-range budget/size/rate field is
    exit 2 with one line naming the field (the two aggregator rows pair with a bad value below)."""
    pk = Path(sys.executable).parent / "pk"
    extra = ["-c", override]
    if override == "aggregator.name=trimmed-mean":
        extra += ["-c", "aggregator.trim_ratio=0.5"]
    if override == "aggregator.name=krum":
        extra += ["-c", "aggregator.multi=0"]
    res = subprocess.run([str(pk), "train", *BASE, *extra, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    field = extra[-1].split("=")[0].split(".")[-1]
    assert field in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# -- CIFAR-10 layouts -------------------------------------------------------------------------
def cifar_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10


def test_cifar10_npz_folder_loads_any_file_in_the_format(tmp_path):
    """``dataset.path`` to a folder with train.npz/test.npz (HWC uint8); catches a loader that
    only knows the binary batches (the old one) or that forgets the HWC -> CHW transpose."""
    from pk_fl.data.readers import load_cifar10

    x, y = cifar_arrays(40)
    tx, ty = cifar_arrays(20, 1)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=tx, y=ty.astype(np.int32))
    (train_x, train_y), (test_x, test_y), layout = load_cifar10(tmp_path)
    assert layout == "npz" and tuple(train_x.shape) == (40, 3, 32, 32) and train_x.dtype == torch.uint8
    assert np.array_equal(train_x[3].permute(1, 2, 0).numpy(), x[3]) and train_y.dtype == torch.int64
    assert tuple(test_x.shape) == (20, 3, 32, 32) and test_y.tolist() == ty.tolist()


@pytest.mark.parametrize("case,match", [
    ("garbage", "not a readable .npz"),
    ("no_y", "no array 'y'"),
    ("hw_swapped", "N x 32 x 32 x 3"),
    ("float_x", "uint8"),
    ("bad_label", "labels must be in 0..9"),
    ("empty", "no images"),
    ("missing_test", "test.npz: missing"),
    ("object_array", "not a readable .npz"),
])
def test_cifar10_npz_bad_files_are_data_errors(tmp_path, case, match):
    """Each broken file gives a DataError naming the file (none gives a raw numpy/zip error)."""
    from pk_fl.data.readers import load_cifar10

    x, y = cifar_arrays(10)
    tx, ty = cifar_arrays(5, 1)
    np.savez(tmp_path / "test.npz", x=tx, y=ty)
    train = tmp_path / "train.npz"
    if case == "garbage":
        train.write_bytes(b"\x00\x01garbage" * 50)
    elif case == "no_y":
        np.savez(train, x=x)
    elif case == "hw_swapped":
        np.savez(train, x=x.transpose(0, 3, 1, 2), y=y)
    elif case == "float_x":
        np.savez(train, x=x.astype(np.float32), y=y)
    elif case == "bad_label":
        np.savez(train, x=x, y=y + 5)
    elif case == "empty":
        np.savez(train, x=x[:0], y=y[:0])
    elif case == "missing_test":
        np.savez(train, x=x, y=y)
        (tmp_path / "test.npz").unlink()
    elif case == "object_array":
        np.savez(train, x=x, y=np.array([{"a": 1}] * 10, dtype=object))
    with pytest.raises(DataError, match=match):
        load_cifar10(tmp_path)


def test_cifar10_python_batches_load_without_running_code(tmp_path):
    """The python layout loads through a numpy-only unpickler; a pickle that names any other
    global (here os.system) is a DataError and never executes."""
    import os
    import pickle

    from pk_fl.data.readers import load_cifar10, read_cifar10_python

    rng = np.random.default_rng(2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        (tmp_path / name).write_bytes(pickle.dumps({b"data": data, b"labels": [1, 2, 3, 4], b"batch_label": b"x"}))
    (train_x, train_y), (test_x, _), layout = load_cifar10(tmp_path)
    assert layout == "python" and tuple(train_x.shape) == (20, 3, 32, 32) and train_y[:4].tolist() == [1, 2, 3, 4]
    first = pickle.loads((tmp_path / "data_batch_1").read_bytes())[b"data"][0]
    assert np.array_equal(train_x[0].reshape(-1).numpy(), first)

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refuses to unpickle"):
        read_cifar10_python(tmp_path / "evil")
    assert not (tmp_path / "pwned").exists()


def test_real_cifar10_dev_slice_loads_with_channel_stats():
    shared = shared_data_dir()
    if shared is None or not (shared / "cifar10-dev").is_dir():
        pytest.skip("no shared data dir (set PK_SHARED_DATA) with cifar10-dev")
    from pk_fl.data.images import build_cifar10
    from pk_fl.plugin import Cifar10Config

    data = build_cifar10(Cifar10Config(path=str(shared / "cifar10-dev"), num_valid=500), seed=0)
    assert data.size("train") == 4500 and data.size("valid") == 500 and data.size("test") == 1000
    assert torch.bincount(data.tensors["test"]["y"]).tolist() == [100] * 10
    mean = data.info.extra["pixel_mean"]
    assert len(mean) == 3 and all(0.4 < m < 0.55 for m in mean) and data.info.extra["image_shape"] == [3, 32, 32]
