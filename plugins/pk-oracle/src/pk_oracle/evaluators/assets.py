"""Setup of the ``fmr`` and ``pgd`` evaluators: the oracle zoo and the generator.

Both are fitted on the bundle's train split (or held-out test images) and cached in
``pk cache/oracle/<key>.npz``, keyed by the data fingerprint, the run seed and the settings;
arrays and JSON only, read with ``allow_pickle=False``: nothing on disk is ever unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk.core.io import atomic_write_bytes
from pk.core.paths import cache_dir
from pk.core.seed import derive_seed
from pk_oracle.evaluators.common import data_bounds, gather
from pk_oracle.models.generators import AutoencoderGenerator, CustomGenerator, Generator, PCAGenerator, PixelGenerator
from pk_oracle.models.oracles import (
    SKLEARN_FAMILIES,
    NotCacheable,
    SklearnOracle,
    TorchOracle,
    load_clip_oracle,
    make_sklearn_estimator,
)


def _train_torch_oracle(module: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(module.predict({"x": x[idx]}), y[idx]).backward()
            opt.step()
    return module.eval()


class Assets:
    """The fitted zoo members and generator for one (data, seed, settings) key."""

    def __init__(self, oracles: list[Any], generator: Generator | None) -> None:
        self.oracles = oracles
        self.generator = generator


def _cache_key(parts: Sequence[Any]) -> str:
    return hashlib.sha256(repr(tuple(parts)).encode()).hexdigest()[:20]


def _new_torch_oracle_module(name: str, info: Any, seed: int) -> nn.Module:
    """The untrained module of oracle ``model:<registered model>`` (seeded from the run seed)."""
    from pk.core.plugins import get_registry

    reg = get_registry().get("model", name.split(":", 1)[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "fmr-oracle", name))
        return reg.load()(reg.config() if reg.config else None, info)


def build_oracles(
    names: Sequence[str], x_train: torch.Tensor, y_train: torch.Tensor, info: Any, seed: int, *,
    model_epochs: int, clip_path: str, run: RunHandle | None,
) -> list[Any]:
    """Fit each named oracle on the train split (flat features for sklearn families)."""
    num_classes = int(info.num_classes or int(y_train.max()) + 1)
    image_shape = (info.extra or {}).get("image_shape") or list(x_train.shape[1:])
    flat = x_train.reshape(len(x_train), -1)
    oracles: list[Any] = []
    for name in names:
        if name in SKLEARN_FAMILIES:
            est = make_sklearn_estimator(name, derive_seed(seed, "fmr-oracle", name))
            est.fit(flat.double().numpy(), y_train.numpy())
            oracles.append(SklearnOracle(name, est, num_classes))
        elif name.startswith("model:"):
            module = _new_torch_oracle_module(name, info, seed)
            module = _train_torch_oracle(module, x_train, y_train, model_epochs,
                                         derive_seed(seed, "fmr-oracle-data", name))
            oracles.append(TorchOracle(name, module, num_classes, image_shape))
        elif name == "clip":
            oracle = load_clip_oracle(clip_path, num_classes, image_shape)
            if oracle is None:
                if run is not None:
                    run.echo("oracle 'clip' skipped: no local CLIP weights (set evaluator.clip_path or PK_CLIP_PATH)")
                continue
            oracles.append(oracle)
        else:
            raise ConfigError(
                f"unknown oracle {name!r} in evaluator.oracles; use {', '.join(SKLEARN_FAMILIES)}, 'clip' or "
                "'model:<registered model>'"
            )
    if not oracles:
        raise ConfigError("no usable oracle in evaluator.oracles (clip without weights is skipped); add e.g. \"svc\"")
    return oracles


def build_generator(cfg: Any, x_train: torch.Tensor, image_shape: Sequence[int], bounds: tuple[Any, Any],
                    seed: int) -> Generator:
    lo, hi = bounds
    flat = x_train.reshape(len(x_train), -1)
    if cfg.generator == "pixel":
        return PixelGenerator(lo, hi)
    if cfg.generator == "pca":
        return PCAGenerator(cfg.latent_dim, lo, hi).fit(flat)
    if cfg.generator == "autoencoder":
        return AutoencoderGenerator(cfg.latent_dim, lo, hi).fit(flat, epochs=cfg.ae_epochs,
                                                                seed=derive_seed(seed, "fmr-generator"))
    if cfg.generator == "custom":
        return CustomGenerator(cfg.generator_factory, cfg.generator_path, image_shape, lo, hi)
    raise ConfigError(f"unknown evaluator.generator {cfg.generator!r}; use pca, autoencoder, pixel or custom")


_SEP = "|"


def pack_cache(entries: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]) -> bytes:
    """``{slot: (json meta, arrays)}`` -> the bytes of an ``.npz`` (arrays + one JSON string)."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for slot, (info, arrs) in entries.items():
        meta[slot] = {**info, "arrays": sorted(arrs)}
        arrays.update({f"{slot}{_SEP}{k}": np.ascontiguousarray(v) for k, v in arrs.items()})
    arrays["__meta__"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack_cache(path: Path) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """Inverse of ``pack_cache``; ``np.load(allow_pickle=False)``, so an object array (a
    pickle) in the file raises instead of being loaded."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["__meta__"]))
        return {slot: (info, {k: npz[f"{slot}{_SEP}{k}"] for k in info["arrays"]}) for slot, info in meta.items()}


def _restore_oracle(name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray], info: Any, seed: int) -> Any:
    if meta["kind"] == "sklearn" and meta["name"] == name:
        return SklearnOracle.from_state(meta, arrays, derive_seed(seed, "fmr-oracle", name))
    if meta["kind"] == "torch" and meta["name"] == name:
        module = _new_torch_oracle_module(name, info, seed)
        return TorchOracle(name, module, int(meta["num_classes"]), meta["image_shape"]).load_state(arrays)
    raise ValueError(f"cache slot for {name!r} holds {meta['kind']!r}")


def _restore_generator(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Generator:
    if meta["kind"] == "pca":
        return PCAGenerator.from_state(meta, arrays)
    if meta["kind"] == "autoencoder":
        return AutoencoderGenerator.from_state(meta, arrays)
    raise ValueError(f"cached generator kind {meta['kind']!r}")


def oracle_fit_data(cfg: Any, data: Any, x_train: torch.Tensor,
                    y_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The images the oracle zoo is fitted on: the train split (``oracle_data = "train"``,
    the pilot's setting: the targets' own training data) or the held-out test images after
    the first ``max_test`` (``"heldout"``: never seen by a target, never scored). Returns
    ``(x, y, tag)``; a held-out pool that is too small is a ConfigError naming the fix."""
    if getattr(cfg, "oracle_data", "train") == "train":
        return x_train, y_train, "train"
    x_all, y_all = gather(data, "test")
    if cfg.max_test <= 0 or len(y_all) - cfg.max_test < 10 * int(data.info.num_classes or 2):
        raise ConfigError(
            "evaluator.oracle_data = \"heldout\" fits the zoo on the test images after the first "
            f"max_test = {cfg.max_test}, "
            f"but the test split has {len(y_all)}; set max_test below it (and raise dataset.num_test) to leave a pool"
        )
    return x_all[cfg.max_test:], y_all[cfg.max_test:], f"heldout:{cfg.max_test}"


def load_or_build_assets(cfg: Any, data: Any, run: RunHandle, x_train: torch.Tensor, y_train: torch.Tensor, *,
                         with_generator: bool) -> Assets:
    """Fit (or restore from the cache) the oracle zoo and the generator.

    The cache (``<pk cache>/oracle/<key>.npz``) holds only arrays and JSON: the fitted
    attributes of logreg / mlp-oracle, the state dicts of ``model:<name>`` oracles and of the
    autoencoder, the PCA basis. SVC (a calibrated ensemble) and kNN (its fit stores the data)
    are refitted; CLIP and custom generators load from the user's files. A restored member
    predicts exactly as the freshly fitted one; an unreadable cache is rebuilt.
    """
    image_shape = (data.info.extra or {}).get("image_shape") or list(x_train.shape[1:])
    bounds = data_bounds(x_train)
    names = [o for o in cfg.oracles if o != "clip"]
    x_fit, y_fit, fit_tag = oracle_fit_data(cfg, data, x_train, y_train)
    gen_key = (cfg.generator, cfg.latent_dim, cfg.ae_epochs) if with_generator else None
    key = _cache_key((data.fingerprint(), run.seed, tuple(names), cfg.model_oracle_epochs, gen_key, bounds, fit_tag,
                      "v2-npz"))
    path = Path(cache_dir()) / "oracle" / f"{key}.npz"
    use_cache = bool(getattr(cfg, "cache", False))
    stored: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = {}
    if use_cache and path.is_file():
        try:
            stored = unpack_cache(path)
        except Exception:  # a stale or corrupt cache is rebuilt
            stored = {}
    keep: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = {}
    fresh = False
    oracles: list[Any] = []
    for name in names:
        slot, oracle = f"oracle:{name}", None
        if slot in stored:
            try:
                oracle = _restore_oracle(name, *stored[slot], data.info, run.seed)
                keep[slot] = stored[slot]
            except Exception:  # e.g. a state saved by another sklearn version
                oracle = None
        if oracle is None:
            oracle = build_oracles([name], x_fit, y_fit, data.info, run.seed, model_epochs=cfg.model_oracle_epochs,
                                   clip_path="", run=run)[0]
            try:
                keep[slot] = oracle.state()
                fresh = True
            except (NotCacheable, AttributeError):
                pass
        oracles.append(oracle)
    generator = None
    if with_generator and cfg.generator != "custom":
        if "generator" in stored:
            try:
                generator = _restore_generator(*stored["generator"])
                keep["generator"] = stored["generator"]
            except Exception:
                generator = None
        if generator is None:
            generator = build_generator(cfg, x_train, image_shape, bounds, run.seed)
            if hasattr(generator, "state"):
                keep["generator"] = generator.state()
                fresh = True
    if use_cache and fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, pack_cache(keep))
    if "clip" in cfg.oracles:
        clip = load_clip_oracle(cfg.clip_path, int(data.info.num_classes or int(y_train.max()) + 1), image_shape)
        if clip is None:
            run.echo("oracle 'clip' skipped: no local CLIP weights (set evaluator.clip_path or PK_CLIP_PATH)")
        else:
            oracles.append(clip)
    if not oracles:
        raise ConfigError("no usable oracle in evaluator.oracles (clip without weights is skipped); add e.g. \"svc\"")
    if with_generator and cfg.generator == "custom":
        generator = build_generator(cfg, x_train, image_shape, bounds, run.seed)
    return Assets(oracles, generator)
