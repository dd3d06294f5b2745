"""Raw-format readers of the image datasets in :mod:`pk_fl.data.images`: MNIST idx(.gz),
scikit-learn digits CSV(.gz) and CIFAR-10 (npz, binary or python batches, the latter read by an
unpickler that admits only numpy arrays).

Readers return torch tensors and raise :class:`pk.core.errors.DataError` with one line naming
the file and the fix.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pk.core.errors import DataError

IDX_IMAGE_MAGIC = 2051
IDX_LABEL_MAGIC = 2049
CIFAR10_RECORD = 1 + 3 * 32 * 32
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"


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
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path.name}; "
            "use matching files"
        )
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
            raise DataError(
                f"{path}:{lineno}: expected 65 comma-separated values (64 pixels + label), got {len(parts)}; "
                "fix the row"
            )
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
        raise DataError(
            f"{path}: {len(raw)} bytes is not a multiple of the {CIFAR10_RECORD}-byte CIFAR-10 record; "
            "use the binary version"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(
            f"{path}: label {int(labels.max())} outside 0..9; this is not a CIFAR-10 binary batch "
            "(CIFAR-100 has 2 label bytes)"
        )
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
            raise DataError(
                f"{path}: missing; download cifar-10-binary.tar.gz and point dataset.path at cifar-10-batches-bin"
            )
        parts.append(read_cifar10_bin(path))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _check_images(x: np.ndarray, y: np.ndarray, path: Path, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate CIFAR-10 arrays (``layout`` "NHWC" or "NCHW", uint8) and return NCHW uint8 + int64 labels."""
    shape = (32, 32, 3) if layout == "NHWC" else (3, 32, 32)
    if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise DataError(
            f"{path}: x must be uint8 of shape N x {' x '.join(map(str, shape))}, got {x.dtype} {tuple(x.shape)}"
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: y must be 1-D with one label per image ({x.shape[0]}), got shape {tuple(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must hold integer class ids, got dtype {y.dtype}")
    if x.shape[0] == 0:
        raise DataError(f"{path}: no images; point dataset.path at a CIFAR-10 copy with data")
    if int(y.min()) < 0 or int(y.max()) > 9:
        raise DataError(f"{path}: labels must be in 0..9, found {int(y.min())}..{int(y.max())}")
    images = x.transpose(0, 3, 1, 2) if layout == "NHWC" else x
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(y.astype(np.int64))


def read_cifar10_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``.npz`` with ``x`` uint8 N x 32 x 32 x 3 (HWC) and ``y`` int (0..9), read with
    ``allow_pickle=False``, as ``(images uint8 [N, 3, 32, 32], labels int64 [N])``."""
    import zipfile

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise DataError(f"{path}: no array {missing[0]!r} (have {', '.join(npz.files) or 'none'}); "
                                "the file needs x (uint8 N x 32 x 32 x 3) and y (int labels)")
            x, y = npz["x"], npz["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path}: not a readable .npz ({type(exc).__name__}: {exc}); re-create it with numpy.savez"
        ) from None
    return _check_images(x, y, path, "NHWC")


class _NumpyOnlyUnpickler:
    """Reads a CIFAR python batch (a pickled dict of bytes keys, a uint8 array, a list of
    labels) admitting only the globals numpy needs to rebuild an array; anything else is a
    DataError, so no code from the file ever runs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    @classmethod
    def load(cls, path: Path) -> Any:
        import io
        import pickle

        allowed = cls.ALLOWED

        class Restricted(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if (module, name) not in allowed:
                    raise DataError(f"{path}: refuses to unpickle {module}.{name}; a CIFAR-10 python batch holds only "
                                    "numpy arrays and lists")
                return super().find_class(module, name)

        raw = _read_maybe_gz(path)
        try:
            return Restricted(io.BytesIO(raw), encoding="bytes").load()
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None


def read_cifar10_python(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 python batch (``data_batch_k`` / ``test_batch``: a pickled dict with
    ``data`` uint8 [N, 3072] in CHW order and ``labels``), read without running code."""
    path = Path(path)
    obj = _NumpyOnlyUnpickler.load(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict with data and labels, got {type(obj).__name__}")
    get = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}
    if "data" not in get or "labels" not in get:
        raise DataError(f"{path}: the batch has no 'data' or 'labels' entry (keys: {', '.join(sorted(get))})")
    data, labels = np.asarray(get["data"]), np.asarray(get["labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: data must be N x 3072 uint8, got {data.dtype} {tuple(data.shape)}")
    return _check_images(data.reshape(-1, 3, 32, 32), labels, path, "NCHW")


def load_cifar10(
    folder: str | Path,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], str]:
    """CIFAR-10 train and test from ``folder`` in whichever layout it holds: ``train.npz`` +
    ``test.npz``, the binary batches (``*.bin``, also inside ``cifar-10-batches-bin/``) or the
    python batches (also inside ``cifar-10-batches-py/``). Returns ((x, y) train, (x, y) test, layout)."""
    folder = Path(folder)
    if folder.is_file():
        raise DataError(
            f"{folder}: dataset.path must be a folder holding train.npz and test.npz or the CIFAR-10 batches"
        )
    if (folder / "train.npz").is_file() or (folder / "test.npz").is_file():
        for name in ("train.npz", "test.npz"):
            if not (folder / name).is_file():
                raise DataError(f"{folder / name}: missing; a CIFAR-10 npz folder needs both train.npz and test.npz")
        return read_cifar10_npz(folder / "train.npz"), read_cifar10_npz(folder / "test.npz"), "npz"
    for sub in ("", "cifar-10-batches-bin"):
        if (folder / sub / "data_batch_1.bin").is_file() or (folder / sub / CIFAR10_TEST_FILE).is_file():
            return load_cifar10_binary(folder, "train"), load_cifar10_binary(folder, "test"), "binary"
    for sub in ("", "cifar-10-batches-py"):
        base = folder / sub
        if (base / "data_batch_1").is_file() or (base / "test_batch").is_file():
            parts = []
            for i in range(1, 6):
                if not (base / f"data_batch_{i}").is_file():
                    raise DataError(
                        f"{base / f'data_batch_{i}'}: missing; the python layout needs data_batch_1..5 and test_batch"
                    )
                parts.append(read_cifar10_python(base / f"data_batch_{i}"))
            if not (base / "test_batch").is_file():
                raise DataError(
                    f"{base / 'test_batch'}: missing; the python layout needs data_batch_1..5 and test_batch"
                )
            train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
            return train, read_cifar10_python(base / "test_batch"), "python"
    raise DataError(f"{folder}: no CIFAR-10 found (train.npz + test.npz, data_batch_*.bin + test_batch.bin, or the "
                    "python batches data_batch_1..5 + test_batch); point dataset.path at one of them")
