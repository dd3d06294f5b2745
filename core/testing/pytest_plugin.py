"""pytest plugin (entry point ``pytest11: pk``): hypothesis profiles, options and fixtures.

Loads no torch. Profiles: ``pk-dev`` (10 examples) and ``pk-ci`` (derandomized, 25
examples, no deadline, no database); ``pk-ci`` is the default, ``PK_HYPOTHESIS_PROFILE``
or ``--hypothesis-profile`` select another.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def _register_profiles() -> None:
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # pragma: no cover
        return
    common: dict[str, Any] = {"deadline": None,
                              "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
    settings.register_profile("pk-dev", max_examples=10, **common)
    settings.register_profile("pk-ci", max_examples=25, derandomize=True, database=None, **common)
    settings.load_profile(os.environ.get("PK_HYPOTHESIS_PROFILE", "pk-ci"))


_register_profiles()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pk")
    group.addoption("--pk-plugin", action="append", default=[], help="pk plugin(s) whose contracts `pk check` runs")


@pytest.fixture
def pk_registry() -> Any:
    """A fresh registry of built-ins and installed plugins (respects PK_LOAD_PLUGINS)."""
    from pk.core.plugins import load_registry

    return load_registry()


@pytest.fixture
def pk_register_temp(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Register plugin objects for one test: ``reg = pk_register_temp(obj, name="x")``
    returns a registry holding the built-ins, installed plugins and ``obj``; the process
    registry is swapped for it during the test and restored after."""
    from pk.core import __version__, plugins
    from pk.core.registry import PluginInfo

    def make(obj: object, name: str = "temp", distribution: str = "pk-temp") -> Any:
        registry = plugins.load_registry(extra=[(obj, PluginInfo(name, distribution, __version__, name))])
        monkeypatch.setattr(plugins, "get_registry", lambda: registry)
        return registry

    return make


@pytest.fixture
def pk_run(tmp_path: Any) -> Any:
    """A minimal run handle in ``tmp_path`` over the built-in classification config."""
    from pk.core.config import resolve
    from pk.core.plugins import load_registry
    from pk.core.run import Run

    raw = {
        "run": {"out_dir": str(tmp_path)},
        "model": {"name": "mlp"},
        "dataset": {"name": "synthetic-classification"},
        "trainer": {"name": "supervised"},
    }
    resolved = resolve(raw, load_registry(entry_points=False))
    return Run(tmp_path, resolved)
