"""The ``fmr`` evaluator: oracle-bounded latent search on the test split.

Artifacts: ``fmr.json`` (all metrics, per class, oracle names), ``fmr_grid.png``
(original/perturbed pairs), ``fmr_generated.npz`` (x*, y, valid).
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.io import atomic_write_bytes, atomic_write_json
from pk_oracle.evaluators.assets import load_or_build_assets
from pk_oracle.evaluators.common import PGD_METRICS, check_oracles, data_bounds, gather, make_logits_fn, pgd_block
from pk_oracle.evaluators.search import fmr_metrics, latent_search, predict_labels
from pk_oracle.models.oracles import OracleZoo


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
            **(PGD_METRICS if config.pgd_eps > 0 else {}),
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
            scores: dict[str, torch.Tensor] = {"sa": (clean_pred == y_test).double(),
                                               "oracle_valid": result.valid.double()}
            if cfg.pgd_eps > 0:
                pgd = pgd_block(logits_fn, zoo, flat, y_test, eps=cfg.pgd_eps, steps=cfg.pgd_steps,
                                 step_size=cfg.pgd_step_size, bounds=bounds, batch_size=cfg.batch_size)
                scores["pgd_accuracy"] = pgd.pop("_correct")
                metrics.update(pgd)
            if hasattr(run, "save_example_scores"):  # PA's images (the valid ones) go to fmr_generated.npz instead
                run.save_example_scores("eval", {k: v for k, v in scores.items() if k != "pa"})
            if cfg.grid_images > 0:
                from pk_oracle.evaluators.grid import write_grid

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
        np.savez(buf, x_star=result.x_star.numpy(), y=y_test.numpy(), valid=result.valid.numpy(),
                 fooled=result.fooled.numpy(), clean_correct=scores["sa"].numpy() > 0,
                 pgd_correct=(scores["pgd_accuracy"].numpy() > 0) if "pgd_accuracy" in scores
                 else np.zeros(0, dtype=bool))
        atomic_write_bytes(run.artifact_path("fmr_generated.npz"), buf.getvalue())
        return metrics
