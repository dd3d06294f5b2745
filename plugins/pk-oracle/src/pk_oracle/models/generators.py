"""Generators: an encoder ``encode(x [N, D]) -> z [N, k]`` and a differentiable decoder
``decode(z) -> x [N, D]`` whose output is clamped to the data range ``[lo, hi]``.

Inputs are flattened images. ``PixelGenerator`` (z = x) is the pixel-space baseline,
``PCAGenerator`` and ``AutoencoderGenerator`` are fitted on the train split, and
``CustomGenerator`` builds a user's encoder/decoder from a factory (e.g. a VQGAN).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pk.core.errors import ConfigError


class Generator(ABC):
    """Base: ``lo``/``hi`` bound decoded pixels (None = unbounded)."""

    name = "generator"

    def __init__(self, lo: float | None, hi: float | None) -> None:
        self.lo, self.hi = lo, hi

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        if self.lo is None and self.hi is None:
            return x
        return x.clamp(self.lo, self.hi)

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        ...

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        ...


class PixelGenerator(Generator):
    """Pixel space: z = x, decode = clamp(z). With budget 0, x* = x exactly."""

    name = "pixel"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().clone()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.clamp(z)


class PCAGenerator(Generator):
    """z = (x - mu) W^T with the top-``k`` principal directions W [k, D]; x = clamp(mu + z W)."""

    name = "pca"

    def __init__(self, k: int, lo: float | None, hi: float | None) -> None:
        super().__init__(lo, hi)
        self.k = k
        self.mean: torch.Tensor | None = None
        self.components: torch.Tensor | None = None

    def fit(self, x: torch.Tensor) -> PCAGenerator:
        x = x.double()
        self.mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - self.mean, full_matrices=False)
        k = min(self.k, vh.shape[0])
        comps = vh[:k]
        # fix SVD's sign ambiguity: the largest-magnitude entry of each direction is positive
        signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        # C-contiguous, so a restored copy (npz stores C order) multiplies through the same BLAS path
        self.components = (comps * signs).float().contiguous()
        self.mean = self.mean.float()
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json meta, arrays)`` of the fitted PCA (see ``from_state``)."""
        assert self.mean is not None and self.components is not None, "fit the PCA generator first"
        meta = {"kind": "pca", "k": self.k, "lo": self.lo, "hi": self.hi}
        return meta, {"mean": self.mean.numpy(), "components": self.components.numpy()}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> PCAGenerator:
        gen = cls(int(meta["k"]), meta["lo"], meta["hi"])
        # cloned into torch's (aligned) allocator: BLAS results can depend on the buffer's alignment
        gen.mean = torch.from_numpy(np.array(arrays["mean"])).clone()
        gen.components = torch.from_numpy(np.array(arrays["components"])).clone()
        return gen

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        assert self.mean is not None and self.components is not None, "fit the PCA generator first"
        return (x.float() - self.mean) @ self.components.T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        assert self.mean is not None and self.components is not None, "fit the PCA generator first"
        return self.clamp(self.mean + z @ self.components)


class _AutoEncoder(nn.Module):
    def __init__(self, dim: int, k: int, hidden: int, bounded: bool) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, k))
        self.decoder = nn.Sequential(nn.Linear(k, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.bounded = bounded


class AutoencoderGenerator(Generator):
    """A small MLP autoencoder (D -> hidden -> k -> hidden -> D) trained with MSE on the train
    split; with bounded data the decoder ends in a sigmoid scaled to [lo, hi]."""

    name = "autoencoder"

    def __init__(self, k: int, lo: float | None, hi: float | None, hidden: int = 256) -> None:
        super().__init__(lo, hi)
        self.k, self.hidden = k, hidden
        self.net: _AutoEncoder | None = None

    def fit(self, x: torch.Tensor, *, epochs: int, seed: int, batch_size: int = 128,
            lr: float = 2e-3) -> AutoencoderGenerator:
        bounded = self.lo is not None and self.hi is not None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = _AutoEncoder(x.shape[1], self.k, self.hidden, bounded)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        x = x.float()
        for _ in range(epochs):
            for idx in torch.randperm(x.shape[0], generator=gen).split(batch_size):
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.mse_loss(self._raw_decode(self.net.encoder(x[idx])), x[idx])
                loss.backward()
                opt.step()
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json meta, arrays)`` of the trained autoencoder (see ``from_state``)."""
        assert self.net is not None, "fit the autoencoder first"
        dim = self.net.encoder[0].in_features
        meta = {"kind": "autoencoder", "k": self.k, "hidden": self.hidden, "dim": dim, "bounded": self.net.bounded,
                "lo": self.lo, "hi": self.hi}
        return meta, {k: v.numpy() for k, v in self.net.state_dict().items()}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> AutoencoderGenerator:
        gen = cls(int(meta["k"]), meta["lo"], meta["hi"], hidden=int(meta["hidden"]))
        gen.net = _AutoEncoder(int(meta["dim"]), gen.k, gen.hidden, bool(meta["bounded"]))
        gen.net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)
        gen.net.eval()
        for p in gen.net.parameters():
            p.requires_grad_(False)
        return gen

    def _raw_decode(self, z: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        out = self.net.decoder(z)
        if self.net.bounded:
            return self.lo + (self.hi - self.lo) * torch.sigmoid(out)  # type: ignore[operator]
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        assert self.net is not None, "fit the autoencoder first"
        with torch.no_grad():
            return self.net.encoder(x.float())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.clamp(self._raw_decode(z))


class CustomGenerator(Generator):
    """A user's generator, built by ``factory(weights_path, image_shape)`` from a
    ``"module:callable"`` string; the object must offer ``encode(x)`` and a differentiable
    ``decode(z)`` on image-shaped tensors ``[N, *image_shape]`` (the entry point for a VQGAN
    wrapped around locally stored weights; none ship offline)."""

    name = "custom"

    def __init__(self, factory: str, weights_path: str, image_shape: Sequence[int] | None, lo: float | None,
                 hi: float | None) -> None:
        super().__init__(lo, hi)
        if ":" not in factory:
            raise ConfigError(
                f"generator 'custom' needs evaluator.generator_factory = \"module:callable\", got {factory!r}; "
                "no VQGAN weights ship offline, use generator = \"pca\" or \"autoencoder\""
            )
        module_name, _, attr = factory.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"evaluator.generator_factory {factory!r} cannot be imported ({exc}); "
                              "check the module path") from None
        self.impl = obj(weights_path, list(image_shape) if image_shape else None)
        for p in getattr(self.impl, "parameters", lambda: [])():
            p.requires_grad_(False)
        self.image_shape = tuple(image_shape) if image_shape else None

    def _img(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.image_shape) if self.image_shape else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.impl.encode(self._img(x.float())).detach()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.impl.decode(z)
        return self.clamp(out.reshape(out.shape[0], -1))
