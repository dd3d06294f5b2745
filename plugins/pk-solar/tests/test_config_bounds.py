"""Out-of-range settings are refused at resolve time (before torch), one line each (issue 19)."""

from __future__ import annotations

import pytest

from pk.core.config import resolve
from pk.core.errors import ConfigError
from pk.core.plugins import get_registry

BASE = {"dataset": {"name": "text-lm"}, "model": {"name": "tiny-llama"}, "trainer": {"name": "causal-lm"},
        "evaluator": {"name": "perplexity"}}


@pytest.mark.parametrize(("section", "key", "value"), [
    ("trainer", "lr", -0.1), ("trainer", "lr", float("nan")), ("trainer", "lr", float("inf")), ("trainer", "steps", 0),
    ("trainer", "batch_size", -5), ("trainer", "total_flops", -1.0), ("trainer", "min_lr_ratio", 1.5),
    ("trainer", "eval_every", 0), ("trainer", "warmup_steps", -1), ("dataset", "context", 1),
    ("dataset", "valid_fraction", 0.0), ("dataset", "test_fraction", 0.6), ("dataset", "source", "nope"),
    ("model", "layers", 0), ("model", "hidden", -3), ("evaluator", "batch_size", 0),
])
def test_out_of_range_values_are_config_errors(section: str, key: str, value: object) -> None:
    """Each value passed silently (or crashed later with a traceback) before the fields had bounds."""
    raw = {k: dict(v) for k, v in BASE.items()}
    raw[section][key] = value
    with pytest.raises(ConfigError) as err:
        resolve(raw, get_registry())
    assert key in str(err.value) and "\n" not in str(err.value)
    resolve({k: dict(v) for k, v in BASE.items()}, get_registry())  # the defaults themselves pass


def test_dus_n_remove_bound() -> None:
    raw = {**{k: dict(v) for k, v in BASE.items()}, "model": {"name": "dus-llama", "n_remove": -1}}
    with pytest.raises(ConfigError, match="n_remove"):
        resolve(raw, get_registry())
