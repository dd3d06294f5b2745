"""The ``fmr`` and ``pgd`` evaluators.

Setup trains the oracle zoo and the generator on the bundle's train split (cached in
``pk cache/oracle/<key>.npz``, keyed by the data fingerprint, the run seed and the settings;
arrays and JSON only, read with ``allow_pickle=False``: nothing on disk is ever unpickled),
checks every oracle against the clean test labels, then runs the latent search (FMR) and
fixed-eps PGD on the test split. Artifacts: ``fmr.json`` (all metrics, per class, oracle
names), ``fmr_grid.png`` (original/perturbed pairs), ``fmr_generated.npz`` (x*, y, valid).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk.core.io import atomic_write_bytes, atomic_write_json
from pk.core.paths import cache_dir
from pk.core.seed import derive_seed
from pk_oracle.generators import AutoencoderGenerator, CustomGenerator, Generator, PCAGenerator, PixelGenerator
from pk_oracle.oracles import (
    SKLEARN_FAMILIES,
    NotCacheable,
    OracleZoo,
    SklearnOracle,
    TorchOracle,
    load_clip_oracle,
    make_sklearn_estimator,
)
from pk_oracle.search import fmr_metrics, latent_search, pgd_linf, predict_labels

UNIT = (0.0, 1.0)


# -- data helpers ------------------------------------------------------------------------
def gather(data: Any, split: str, batch_size: int = 1024, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``x`` (as stored, e.g. [N, C, H, W]) and ``y [N]`` of a split, in loader order."""
    xs, ys = [], []
    for batch in data.loader(split, batch_size):
        xs.append(batch["x"].float().cpu())
        ys.append(batch["y"].long().cpu())
    if not xs:
        raise ConfigError(f"split {split!r} is empty; the fmr evaluator needs train and test examples")
    x, y = torch.cat(xs), torch.cat(ys)
    return (x[:limit], y[:limit]) if limit > 0 else (x, y)


def data_bounds(x_train: torch.Tensor) -> tuple[float | None, float | None]:
    """[0, 1] for image-like data already in [0, 1]; unbounded otherwise."""
    if float(x_train.min()) >= 0.0 and float(x_train.max()) <= 1.0:
        return UNIT
    return None, None


def make_logits_fn(model: nn.Module, input_shape: Sequence[int]) -> Any:
    """Flat ``[n, D]`` -> the model's logits ``[n, C]`` (reshaped to ``input_shape``)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def logits_fn(x_flat: torch.Tensor) -> torch.Tensor:
        x = x_flat.reshape(x_flat.shape[0], *input_shape).to(device)
        return model.predict({"x": x}).float().cpu()

    return logits_fn


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


# -- setup: zoo and generator ------------------------------------------------------------
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
            module = _train_torch_oracle(module, x_train, y_train, model_epochs, derive_seed(seed, "fmr-oracle-data", name))
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
                f"unknown oracle {name!r} in evaluator.oracles; use {', '.join(SKLEARN_FAMILIES)}, 'clip' or 'model:<registered model>'"
            )
    if not oracles:
        raise ConfigError("no usable oracle in evaluator.oracles (clip without weights is skipped); add e.g. \"svc\"")
    return oracles


def build_generator(cfg: Any, x_train: torch.Tensor, image_shape: Sequence[int], bounds: tuple[Any, Any], seed: int) -> Generator:
    lo, hi = bounds
    flat = x_train.reshape(len(x_train), -1)
    if cfg.generator == "pixel":
        return PixelGenerator(lo, hi)
    if cfg.generator == "pca":
        return PCAGenerator(cfg.latent_dim, lo, hi).fit(flat)
    if cfg.generator == "autoencoder":
        return AutoencoderGenerator(cfg.latent_dim, lo, hi).fit(flat, epochs=cfg.ae_epochs, seed=derive_seed(seed, "fmr-generator"))
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


def oracle_fit_data(cfg: Any, data: Any, x_train: torch.Tensor, y_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The images the oracle zoo is fitted on: the train split (``oracle_data = "train"``,
    the pilot's setting: the targets' own training data) or the held-out test images after
    the first ``max_test`` (``"heldout"``: never seen by a target, never scored). Returns
    ``(x, y, tag)``; a held-out pool that is too small is a ConfigError naming the fix."""
    if getattr(cfg, "oracle_data", "train") == "train":
        return x_train, y_train, "train"
    x_all, y_all = gather(data, "test")
    if cfg.max_test <= 0 or len(y_all) - cfg.max_test < 10 * int(data.info.num_classes or 2):
        raise ConfigError(
            f"evaluator.oracle_data = \"heldout\" fits the zoo on the test images after the first max_test = {cfg.max_test}, "
            f"but the test split has {len(y_all)}; set max_test below it (and raise dataset.num_test) to leave a pool"
        )
    return x_all[cfg.max_test:], y_all[cfg.max_test:], f"heldout:{cfg.max_test}"


def load_or_build_assets(cfg: Any, data: Any, run: RunHandle, x_train: torch.Tensor, y_train: torch.Tensor, *, with_generator: bool) -> Assets:
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
    key = _cache_key((data.fingerprint(), run.seed, tuple(names), cfg.model_oracle_epochs, gen_key, bounds, fit_tag, "v2-npz"))
    path = Path(cache_dir()) / "oracle" / f"{key}.npz"
    use_cache = bool(getattr(cfg, "cache", False))
    stored: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = {}
    if use_cache and path.is_file():
        try:
            stored = unpack_cache(path)
        except Exception:  # noqa: BLE001 - a stale or corrupt cache is rebuilt
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
            except Exception:  # noqa: BLE001 - e.g. a state saved by another sklearn version
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
            except Exception:  # noqa: BLE001
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


def check_oracles(zoo: OracleZoo, x_test: torch.Tensor, y_test: torch.Tensor, min_accuracy: float, allow_weak: bool,
                  run: RunHandle) -> dict[str, float]:
    """Each oracle's clean test accuracy; a zoo member below ``min_accuracy`` is refused
    (ConfigError) unless ``allow_weak``, in which case it is reported loudly and counted."""
    flat = x_test.reshape(len(x_test), -1)
    proba = zoo.probabilities(flat)
    out: dict[str, float] = {}
    weak = []
    for name, p in zip(zoo.names, proba):
        acc = float((p.argmax(-1) == y_test).float().mean())
        out[f"oracle_acc.{name}"] = acc
        if acc < min_accuracy:
            weak.append(f"{name} ({acc:.1%})")
    out["weak_oracles"] = float(len(weak))
    if weak:
        msg = (f"oracle zoo disagrees with the clean test labels: {', '.join(weak)} below "
               f"evaluator.min_oracle_accuracy = {min_accuracy}")
        if not allow_weak:
            raise ConfigError(msg + "; check the labels or the oracles, or set evaluator.allow_weak_oracles = true")
        run.echo("WARNING: " + msg + " (used anyway: allow_weak_oracles = true)")
    return out


# -- evaluators --------------------------------------------------------------------------
_PGD_METRICS = {
    "pgd_accuracy": (0.0, 1.0, True),
    "pgd_oracle_agree": (0.0, 1.0, True),
    "pgd_oracle_rejected": (0.0, 1.0, False),
    "pgd_accuracy_accepted": (0.0, 1.0, True),
}


def _pgd_block(logits_fn: Any, zoo: OracleZoo | None, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
               step_size: float, bounds: tuple[Any, Any], batch_size: int) -> dict[str, float]:
    adv = pgd_linf(logits_fn, x, y, eps=eps, steps=steps, step_size=step_size, lo=bounds[0], hi=bounds[1], batch_size=batch_size)
    correct = predict_labels(logits_fn, adv) == y
    out: dict[str, Any] = {"pgd_accuracy": float(correct.float().mean()), "_correct": correct.double()}
    if zoo is not None:
        accepted = torch.cat([zoo.accept(a, b) for a, b in zip(adv.split(batch_size), y.split(batch_size))])
        out["pgd_oracle_agree"] = float(accepted.float().mean())
        out["pgd_oracle_rejected"] = 1.0 - out["pgd_oracle_agree"]
        out["pgd_accuracy_accepted"] = float(correct[accepted].float().mean()) if int(accepted.sum()) else 0.0
    return out


class FMREvaluator:
    """SA, PA, FMR = PA/SA and the oracle acceptance rate, overall and per class
    (``class<k>.sa|pa|fmr|oracle_valid``), plus PGD-Linf accuracy and the share of PGD images
    the zoo rejects. FMR is >= 0 and **not bounded by 1** (reconstruction can help)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.metrics: dict[str, tuple[float, float, bool]] = {
            "sa": (0.0, 1.0, True),
            "sa_valid": (0.0, 1.0, True),
            "pa": (0.0, 1.0, True),
            "fmr": (0.0, math.inf, True),
            "fmr_valid": (0.0, math.inf, True),
            "oracle_valid": (0.0, 1.0, True),
            "oracle_clean_accept": (0.0, 1.0, True),
            "mean_steps": (0.0, float(max(config.budget, 0)), False),
            "mean_l2": (0.0, math.inf, False),
            "mean_linf": (0.0, math.inf, False),
            "weak_oracles": (0.0, math.inf, False),
            **(_PGD_METRICS if config.pgd_eps > 0 else {}),
        }

    def evaluate(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        x_train, y_train = gather(data, "train")
        x_test, y_test = gather(data, "test", limit=cfg.max_test)
        input_shape = list(x_test.shape[1:])
        bounds = data_bounds(x_train)
        num_classes = int(data.info.num_classes or int(y_train.max()) + 1)
        assets = load_or_build_assets(cfg, data, run, x_train, y_train, with_generator=True)
        zoo = OracleZoo(assets.oracles, rule=cfg.rule, tau=cfg.tau)
        metrics = check_oracles(zoo, x_test, y_test, cfg.min_oracle_accuracy, cfg.allow_weak_oracles, run)
        flat = x_test.reshape(len(x_test), -1)
        metrics["oracle_clean_accept"] = float(zoo.accept(flat, y_test).float().mean())
        was_training = model.training
        model.eval()
        try:
            logits_fn = make_logits_fn(model, input_shape)
            clean_pred = predict_labels(logits_fn, flat)
            assert assets.generator is not None
            result = latent_search(logits_fn, assets.generator, zoo, flat, y_test, step_size=cfg.step_size,
                                   budget=cfg.budget, batch_size=cfg.batch_size)
            metrics.update(fmr_metrics(y_test, clean_pred, flat, result, num_classes, per_class=cfg.per_class))
            # per image, in test order (same images for every target of a seed, so arms pair up)
            scores: dict[str, torch.Tensor] = {"sa": (clean_pred == y_test).double(), "oracle_valid": result.valid.double()}
            if cfg.pgd_eps > 0:
                pgd = _pgd_block(logits_fn, zoo, flat, y_test, eps=cfg.pgd_eps, steps=cfg.pgd_steps,
                                 step_size=cfg.pgd_step_size, bounds=bounds, batch_size=cfg.batch_size)
                scores["pgd_accuracy"] = pgd.pop("_correct")
                metrics.update(pgd)
            if hasattr(run, "save_example_scores"):  # PA's images (the valid ones) go to fmr_generated.npz instead
                run.save_example_scores("eval", {k: v for k, v in scores.items() if k != "pa"})
            if cfg.grid_images > 0:
                from pk_oracle.grid import write_grid

                star_pred = predict_labels(logits_fn, result.x_star)
                oracle_pred = zoo.probabilities(result.x_star).argmax(-1)
                image_shape = (data.info.extra or {}).get("image_shape") or input_shape
                write_grid(run.artifact_path("fmr_grid.png"), flat, result, y_test, clean_pred, star_pred, oracle_pred,
                           zoo.names, image_shape, cfg.grid_images)
        finally:
            model.train(was_training)
        for key in metrics:
            if key.startswith(("class", "oracle_acc.")):
                self.metrics[key] = (0.0, math.inf if key.endswith(".fmr") else 1.0, True)
        atomic_write_json(run.artifact_path("fmr.json"), {"metrics": metrics, "oracles": zoo.names,
                                                          "generator": cfg.generator, "budget": cfg.budget})
        buf = io.BytesIO()
        np.savez(buf, x_star=result.x_star.numpy(), y=y_test.numpy(), valid=result.valid.numpy(), fooled=result.fooled.numpy(),
                 clean_correct=scores["sa"].numpy() > 0, pgd_correct=(scores["pgd_accuracy"].numpy() > 0) if "pgd_accuracy" in scores
                 else np.zeros(0, dtype=bool))
        atomic_write_bytes(run.artifact_path("fmr_generated.npz"), buf.getvalue())
        return metrics


class PGDEvaluator:
    """Clean and fixed-eps PGD-Linf accuracy; with oracles, the share of PGD images the zoo
    still labels with the original class and the accuracy on those accepted images."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.metrics: dict[str, tuple[float, float, bool]] = {"clean_accuracy": (0.0, 1.0, True), "weak_oracles": (0.0, math.inf, False)}
        self.metrics.update(_PGD_METRICS if config.oracles else {"pgd_accuracy": _PGD_METRICS["pgd_accuracy"]})

    def evaluate(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        x_train, y_train = gather(data, "train")
        x_test, y_test = gather(data, "test", limit=cfg.max_test)
        flat = x_test.reshape(len(x_test), -1)
        metrics: dict[str, float] = {"weak_oracles": 0.0}
        zoo = None
        if cfg.oracles:
            shim = _ZooOnly(cfg)
            assets = load_or_build_assets(shim, data, run, x_train, y_train, with_generator=False)
            zoo = OracleZoo(assets.oracles, rule=cfg.rule, tau=cfg.tau)
            metrics.update(check_oracles(zoo, x_test, y_test, 0.0, True, run))
        was_training = model.training
        model.eval()
        try:
            logits_fn = make_logits_fn(model, list(x_test.shape[1:]))
            metrics["clean_accuracy"] = float((predict_labels(logits_fn, flat) == y_test).float().mean())
            clean = (predict_labels(logits_fn, flat) == y_test).double()
            pgd = _pgd_block(logits_fn, zoo, flat, y_test, eps=cfg.eps, steps=cfg.steps, step_size=cfg.step_size,
                             bounds=data_bounds(x_train), batch_size=cfg.batch_size)
            correct = pgd.pop("_correct")
            metrics.update(pgd)
            if hasattr(run, "save_example_scores"):
                run.save_example_scores("eval", {"clean_accuracy": clean, "pgd_accuracy": correct})
        finally:
            model.train(was_training)
        for key in metrics:
            if key.startswith("oracle_acc."):
                self.metrics[key] = (0.0, 1.0, True)
        return metrics


class _ZooOnly:
    """Adapts a PGDConfig to the fields ``load_or_build_assets`` reads."""

    def __init__(self, cfg: Any) -> None:
        self.oracles, self.cache, self.clip_path = list(cfg.oracles), cfg.cache, ""
        self.model_oracle_epochs, self.generator, self.latent_dim, self.ae_epochs = 20, "none", 0, 0
        self.oracle_data, self.max_test = "train", cfg.max_test

