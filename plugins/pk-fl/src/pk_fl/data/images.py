"""Image-classification data shared by the FL plugins (and others): raw-format readers and
the dataset builders registered as "mnist", "sklearn-digits", "cifar10" and "synthetic-images".

Readers return torch tensors and raise :class:`pk.core.errors.DataError` with one line naming
the file and the fix. Builders return a :class:`pk.core.base.TensorBundle` whose batches are
``{"x": float32 [B, C, H, W] in [0, 1], "y": int64 [B], "index": int64 [B]}`` with
``info.num_features = C*H*W``, ``info.num_classes`` and ``info.extra["image_shape"] = [C, H, W]``.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pk.core.base import TensorBundle
from pk.core.contracts import DatasetInfo
from pk.core.datasource import locate
from pk.core.errors import DataError
from pk.core.seed import derive_seed

IDX_IMAGE_MAGIC = 2051
IDX_LABEL_MAGIC = 2049
CIFAR10_RECORD = 1 + 3 * 32 * 32
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"


# -- raw readers -------------------------------------------------------------------------
def _read_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check dataset.path") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip stream ({exc}); re-download the file") from None
    return raw


def _find(folder: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
    raise DataError(f"{folder}: no {stems[0]}(.gz) found; point dataset.path at the folder holding the MNIST idx files")


def read_idx_images(path: Path) -> torch.Tensor:
    """IDX3 images (magic 2051, big-endian header) as uint8 ``[N, rows, cols]``."""
    raw = _read_maybe_gz(path)
    if len(raw) < 16:
        raise DataError(f"{path}: file too short for an IDX image header (16 bytes); re-download it")
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IDX_IMAGE_MAGIC:
        raise DataError(f"{path}: bad IDX magic {magic} (images need {IDX_IMAGE_MAGIC}); is this a label file?")
    expected = 16 + count * rows * cols
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes but the header promises {expected}; the file is truncated")
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    return torch.from_numpy(pixels.copy())


def read_idx_labels(path: Path) -> torch.Tensor:
    """IDX1 labels (magic 2049) as int64 ``[N]``."""
    raw = _read_maybe_gz(path)
    if len(raw) < 8:
        raise DataError(f"{path}: file too short for an IDX label header (8 bytes); re-download it")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != IDX_LABEL_MAGIC:
        raise DataError(f"{path}: bad IDX magic {magic} (labels need {IDX_LABEL_MAGIC}); is this an image file?")
    if len(raw) != 8 + count:
        raise DataError(f"{path}: {len(raw)} bytes but the header promises {8 + count}; the file is truncated")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64))


def load_mnist_idx(folder: str | Path, split: str = "t10k") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST in the idx(.gz) format from ``folder``: ``(images uint8 [N, 28, 28], labels int64 [N])``.

    ``split`` is the file prefix ("t10k" or "train").
    """
    folder = Path(folder)
    images_path = _find(folder, (f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte"))
    labels_path = _find(folder, (f"{split}-labels-idx1-ubyte", f"{split}-labels.idx1-ubyte"))
    images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path.name}; use matching files")
    if int(labels.max()) > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..9; is this MNIST?")
    return images, labels


def load_digits_csv(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn digits CSV(.gz) (64 pixel columns 0..16, then the label) as
    ``(images float32 [N, 8, 8] in 0..16, labels int64 [N])``."""
    path = Path(path)
    text = _read_maybe_gz(path).decode("utf-8", errors="replace")
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 65:
            raise DataError(f"{path}:{lineno}: expected 65 comma-separated values (64 pixels + label), got {len(parts)}; fix the row")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise DataError(f"{path}:{lineno}: non-numeric value; every field must be a number") from None
        if min(values[:64]) < 0 or max(values[:64]) > 16 or not (0 <= values[64] <= 9) or values[64] != int(values[64]):
            raise DataError(f"{path}:{lineno}: pixels must be in 0..16 and the label an integer in 0..9; fix the row")
        rows.append(values)
    if not rows:
        raise DataError(f"{path}: no rows; point dataset.path at digits.csv.gz")
    table = torch.tensor(rows, dtype=torch.float64)
    return table[:, :64].reshape(-1, 8, 8).float(), table[:, 64].long()


def read_cifar10_bin(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 binary batch file (records of 1 label byte + 3072 pixel bytes, CHW order)
    as ``(images uint8 [N, 3, 32, 32], labels int64 [N])``. No unpickling."""
    raw = _read_maybe_gz(path)
    if len(raw) == 0 or len(raw) % CIFAR10_RECORD:
        raise DataError(f"{path}: {len(raw)} bytes is not a multiple of the {CIFAR10_RECORD}-byte CIFAR-10 record; use the binary version")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label {int(labels.max())} outside 0..9; this is not a CIFAR-10 binary batch (CIFAR-100 has 2 label bytes)")
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_cifar10_binary(folder: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from the official binary layout (``data_batch_1..5.bin``, ``test_batch.bin``,
    optionally inside ``cifar-10-batches-bin/``); ``split`` is "train" or "test"."""
    folder = Path(folder)
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    names = CIFAR10_TRAIN_FILES if split == "train" else (CIFAR10_TEST_FILE,)
    parts = []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing; download cifar-10-binary.tar.gz and point dataset.path at cifar-10-batches-bin")
        parts.append(read_cifar10_bin(path))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


# -- bundles -----------------------------------------------------------------------------
def _bundle(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    name: str,
    seed: int,
    num_classes: int,
    num_valid: int,
    num_test: int,
    source: str,
    params: dict[str, Any],
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TensorBundle:
    """Split ``x [N, C, H, W]`` float in [0, 1] into train/valid/test by a seeded permutation
    (valid and test are carved off ``x`` unless ``test`` is given separately)."""
    n = int(x.shape[0])
    g = torch.Generator().manual_seed(derive_seed(seed, name, "split"))
    order = torch.randperm(n, generator=g)
    carve = num_valid + (0 if test is not None else num_test)
    if carve >= n:
        raise DataError(f"dataset {name}: num_valid + num_test = {carve} leaves no training examples out of {n}; lower them")
    parts = {"valid": order[:num_valid], "train": order[carve:]}
    if test is None:
        parts["test"] = order[num_valid:carve]
    tensors: dict[str, dict[str, torch.Tensor]] = {
        split: {"x": x[idx], "y": y[idx], "index": idx} for split, idx in parts.items()
    }
    if test is not None:
        tx, ty = test
        tensors["test"] = {"x": tx, "y": ty, "index": torch.arange(n, n + int(tx.shape[0]))}
    tensors = {k: tensors[k] for k in ("train", "valid", "test")}
    shape = [int(s) for s in x.shape[1:]]
    info = DatasetInfo(
        task="classification",
        num_features=int(np.prod(shape)),
        num_classes=num_classes,
        extra={"image_shape": shape, "source": source},
    )
    return TensorBundle(info=info, tensors=tensors, params={"seed": seed, "source": source, **params})


def synthetic_images(
    num_samples: int, image_shape: tuple[int, int, int], num_classes: int, noise: float, seed: int, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded class-prototype images: each class has a smooth random template in [0, 1];
    examples are template + Gaussian noise, clamped to [0, 1]. Returns ``(x float32 [N, C, H, W], y int64 [N])``."""
    g = torch.Generator().manual_seed(derive_seed(seed, name, "synthetic"))
    c, h, w = image_shape
    coarse = torch.rand(num_classes, c, max(2, h // 2), max(2, w // 2), generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    y = torch.arange(num_samples) % num_classes
    y = y[torch.randperm(num_samples, generator=g)]
    x = templates[y] + noise * torch.randn(num_samples, c, h, w, generator=g)
    return x.clamp(0.0, 1.0), y.long()


def build_synthetic_images(config: Any, *, root: Any = None, seed: int = 0) -> TensorBundle:
    """The seeded default image dataset (``image_shape`` = [C, H, W])."""
    shape = tuple(int(v) for v in config.image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise DataError(f"dataset synthetic-images: image_shape must be [C, H, W] with positive sizes, got {list(config.image_shape)}")
    x, y = synthetic_images(config.num_samples, shape, config.num_classes, config.noise, seed, "synthetic-images")  # type: ignore[arg-type]
    return _bundle(
        x, y, name="synthetic-images", seed=seed, num_classes=config.num_classes, num_valid=config.num_valid,
        num_test=config.num_test, source="synthetic", params=vars(config),
    )


def build_mnist(config: Any, *, root: Any = None, seed: int = 0) -> TensorBundle:
    """MNIST (default: the shared t10k split, 10,000 images) -> train / valid / test."""
    folder = locate(
        "mnist", source=config.source, path=config.path, shared_folder="mnist_t10k",
        required=("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz") if not config.path else (),
    )
    if folder is None:
        x, y = synthetic_images(config.synthetic_samples, (1, 28, 28), 10, 0.25, seed, "mnist")
        n = config.synthetic_samples
        return _bundle(x, y, name="mnist", seed=seed, num_classes=10, num_valid=n // 10, num_test=n // 5,
                       source="synthetic", params=vars(config))
    images, y = load_mnist_idx(folder, config.split_prefix)
    return _bundle(
        images.unsqueeze(1).float() / 255.0, y, name="mnist", seed=seed, num_classes=10, num_valid=config.num_valid,
        num_test=config.num_test, source=str(folder), params=vars(config),
    )


def build_sklearn_digits(config: Any, *, root: Any = None, seed: int = 0) -> TensorBundle:
    """scikit-learn's 8x8 digits (1,797 images, pixels 0..16 scaled by 1/16)."""
    found = locate("sklearn-digits", source=config.source, path=config.path, shared_folder="sklearn_digits", required=("digits.csv.gz",) if not config.path else ())
    if found is None:
        x, y = synthetic_images(config.synthetic_samples, (1, 8, 8), 10, 0.25, seed, "sklearn-digits")
        n = config.synthetic_samples
        return _bundle(x, y, name="sklearn-digits", seed=seed, num_classes=10, num_valid=n // 10, num_test=n // 5,
                       source="synthetic", params=vars(config))
    csv = found / "digits.csv.gz" if found.is_dir() else found
    images, y = load_digits_csv(csv)
    return _bundle(
        images.unsqueeze(1) / 16.0, y, name="sklearn-digits", seed=seed, num_classes=10, num_valid=config.num_valid,
        num_test=config.num_test, source=str(csv), params=vars(config),
    )


def build_cifar10(config: Any, *, root: Any = None, seed: int = 0) -> TensorBundle:
    """CIFAR-10 from the binary batches: train (minus ``num_valid``) / valid / official test."""
    folder = locate("cifar10", source=config.source, path=config.path, shared_folder="cifar-10-batches-bin")
    if folder is None:
        x, y = synthetic_images(config.synthetic_samples, (3, 32, 32), 10, 0.25, seed, "cifar10")
        n = config.synthetic_samples
        return _bundle(x, y, name="cifar10", seed=seed, num_classes=10, num_valid=n // 10,
                       num_test=n // 5, source="synthetic", params=vars(config))
    train_x, train_y = load_cifar10_binary(folder, "train")
    test_x, test_y = load_cifar10_binary(folder, "test")
    return _bundle(
        train_x.float() / 255.0, train_y, name="cifar10", seed=seed, num_classes=10, num_valid=config.num_valid,
        num_test=0, source=str(folder), params=vars(config), test=(test_x.float() / 255.0, test_y),
    )
