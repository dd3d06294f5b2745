"""Image-classification data shared by the FL plugins (and others): the dataset builders
registered as "mnist", "sklearn-digits", "cifar10" and "synthetic-images" (file formats are read
by :mod:`pk_fl.data.readers`).

Builders return a :class:`pk.core.base.TensorBundle` whose batches are
``{"x": float32 [B, C, H, W] in [0, 1], "y": int64 [B], "index": int64 [B]}`` with
``info.num_features = C*H*W``, ``info.num_classes`` and ``info.extra["image_shape"] = [C, H, W]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pk.core.base import TensorBundle
from pk.core.contracts import DatasetInfo
from pk.core.datasource import locate
from pk.core.errors import DataError
from pk.core.seed import derive_seed
from pk_fl.data.readers import load_cifar10, load_digits_csv, load_mnist_idx


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``x [N, C, H, W]`` (float in [0, 1])."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    return flat.mean(1).tolist(), flat.std(1).tolist()


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
    (valid and test are carved off ``x`` unless ``test`` is given separately). ``info.extra``
    holds ``image_shape`` and the train split's per-channel ``pixel_mean`` / ``pixel_std``."""
    n = int(x.shape[0])
    g = torch.Generator().manual_seed(derive_seed(seed, name, "split"))
    order = torch.randperm(n, generator=g)
    carve = num_valid + (0 if test is not None else num_test)
    if carve >= n:
        raise DataError(
            f"dataset {name}: num_valid + num_test = {carve} leaves no training examples out of {n}; lower them"
        )
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
    if int(torch.unique(tensors["train"]["y"]).numel()) < 2:
        raise DataError(f"dataset {name}: the training split holds a single class; a classifier needs at least two")
    shape = [int(s) for s in x.shape[1:]]
    mean, std = channel_stats(tensors["train"]["x"])
    info = DatasetInfo(
        task="classification",
        num_features=int(np.prod(shape)),
        num_classes=num_classes,
        extra={"image_shape": shape, "source": source, "pixel_mean": mean, "pixel_std": std},
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
        raise DataError(
            "dataset synthetic-images: image_shape must be [C, H, W] with positive sizes, "
            f"got {list(config.image_shape)}"
        )
    x, y = synthetic_images(config.num_samples, shape, config.num_classes, config.noise, seed,  # type: ignore[arg-type]
                            "synthetic-images")
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
    found = locate(
        "sklearn-digits",
        source=config.source,
        path=config.path,
        shared_folder="sklearn_digits",
        required=("digits.csv.gz",) if not config.path else (),
    )
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
    """CIFAR-10 (any layout :func:`load_cifar10` reads; default the shared ``cifar10-dev`` slice):
    train (minus ``num_valid``; ``num_train`` > 0 keeps a seeded subset first) / valid / test file."""
    folder = locate("cifar10", source=config.source, path=config.path, shared_folder="cifar10-dev",
                    required=("train.npz", "test.npz") if not config.path else ())
    if folder is None:
        x, y = synthetic_images(config.synthetic_samples, (3, 32, 32), 10, 0.25, seed, "cifar10")
        n = config.synthetic_samples
        return _bundle(x, y, name="cifar10", seed=seed, num_classes=10, num_valid=n // 10,
                       num_test=n // 5, source="synthetic", params=vars(config))
    (train_x, train_y), (test_x, test_y), layout = load_cifar10(folder)
    if config.num_train > 0 and config.num_train + config.num_valid < train_x.shape[0]:
        g = torch.Generator().manual_seed(derive_seed(seed, "cifar10", "subset"))
        keep = torch.randperm(int(train_x.shape[0]), generator=g)[: config.num_train + config.num_valid].sort().values
        train_x, train_y = train_x[keep], train_y[keep]
    return _bundle(
        train_x.float() / 255.0, train_y, name="cifar10", seed=seed, num_classes=10, num_valid=config.num_valid,
        num_test=0, source=f"{folder} ({layout})", params=vars(config), test=(test_x.float() / 255.0, test_y),
    )
