"""Out-of-range settings are refused at resolve time (before torch), one line each (issue 19)."""

from __future__ import annotations

import pytest

from pk.core.config import resolve
from pk.core.errors import ConfigError
from pk.core.plugins import get_registry

BASE = {"dataset": {"name": "synthetic-images"}, "model": {"name": "mlp"}, "trainer": {"name": "noise-augmented"},
        "evaluator": {"name": "fmr"}}


@pytest.mark.parametrize(("section", "key", "value"), [
    ("evaluator", "budget", -1), ("evaluator", "step_size", 0.0), ("evaluator", "tau", 1.5),
    ("evaluator", "tau", float("nan")),
    ("evaluator", "latent_dim", 0), ("evaluator", "max_test", -2), ("evaluator", "pgd_eps", -0.1),
    ("evaluator", "min_oracle_accuracy", 2.0), ("evaluator", "oracle_data", "test"), ("evaluator", "batch_size", 0),
    ("trainer", "sigma", -0.3), ("trainer", "max_epochs", 0), ("trainer", "lr", float("inf")),
])
def test_out_of_range_values_are_config_errors(section: str, key: str, value: object) -> None:
    """Each value was accepted before the fields had bounds (a negative budget ran zero steps)."""
    raw = {k: dict(v) for k, v in BASE.items()}
    raw[section][key] = value
    with pytest.raises(ConfigError) as err:
        resolve(raw, get_registry())
    assert key in str(err.value) and "\n" not in str(err.value)
    resolve({k: dict(v) for k, v in BASE.items()}, get_registry())


@pytest.mark.parametrize(("key", "value"), [("attack_steps", 0), ("eps", -1.0), ("adv_weight", 1.5)])
def test_adversarial_trainer_bounds(key: str, value: object) -> None:
    raw = {**{k: dict(v) for k, v in BASE.items()}, "trainer": {"name": "pgd-adversarial", key: value}}
    with pytest.raises(ConfigError, match=key):
        resolve(raw, get_registry())


def test_vit_bounds() -> None:
    raw = {**{k: dict(v) for k, v in BASE.items()}, "model": {"name": "vit", "patch": 0}}
    with pytest.raises(ConfigError, match="patch"):
        resolve(raw, get_registry())
