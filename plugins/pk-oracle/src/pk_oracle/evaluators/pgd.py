"""The ``pgd`` evaluator: clean and fixed-eps PGD-Linf accuracy, with the oracle zoo's verdict."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from pk.core.contracts import RunHandle
from pk_oracle.evaluators.assets import load_or_build_assets
from pk_oracle.evaluators.common import PGD_METRICS, check_oracles, data_bounds, gather, make_logits_fn, pgd_block
from pk_oracle.evaluators.search import predict_labels
from pk_oracle.models.oracles import OracleZoo


class PGDEvaluator:
    """Clean and fixed-eps PGD-Linf accuracy; with oracles, the share of PGD images the zoo
    still labels with the original class and the accuracy on those accepted images."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.metrics: dict[str, tuple[float, float, bool]] = {"clean_accuracy": (0.0, 1.0, True),
                                                              "weak_oracles": (0.0, math.inf, False)}
        self.metrics.update(PGD_METRICS if config.oracles else {"pgd_accuracy": PGD_METRICS["pgd_accuracy"]})

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
            pgd = pgd_block(logits_fn, zoo, flat, y_test, eps=cfg.eps, steps=cfg.steps, step_size=cfg.step_size,
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
