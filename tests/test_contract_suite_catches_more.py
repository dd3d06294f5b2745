"""The contract suite must fail on deliberately broken components, continued: one broken
component (from tests/broken_components.py) per check that test_contract_suite_catches.py
does not cover, each next to a good twin that passes the same check."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from pk.core import hookimpl
from pk.core.builtins.plugin import SupervisedConfig
from pk.core.testing import Case, check

DIST = "pk-broken-more"
BUILTIN = "pk.core.builtins.components"


@dataclass
class Empty:
    pass


@dataclass
class IntKeysConfig:
    """class_weights is keyed by class index: TOML keys are strings, so it does not round-trip."""

    class_weights: dict = field(default_factory=lambda: {0: 1.0, 1: 2.0})


@dataclass
class OnBuiltinData:
    """Companions are the built-ins, never this plugin's broken datasets."""

    pk_test_with: ClassVar[dict[str, str]] = {"dataset": "synthetic-classification"}


@dataclass
class TwoEpochs(SupervisedConfig):
    """Two full epochs (no step cap), so a run cut after epoch 1 has an epoch left to resume."""

    pk_test: ClassVar[dict[str, Any]] = {"max_epochs": 2, "max_steps": -1, "batch_size": 128}
    pk_test_with: ClassVar[dict[str, str]] = {"dataset": "synthetic-classification", "model": "mlp"}


class MoreBrokenPlugin:
    @hookimpl
    def pk_register_aggregators(self, register):
        register("unnormalised-sum", "tests.broken_components:UnnormalisedSum", config=Empty,
                 summary="sums weighted states without normalising")
        register("global-as-client", "tests.broken_components:GlobalAsClient", config=Empty,
                 summary="averages the global state in")

    @hookimpl
    def pk_register_calibrators(self, register):
        register("sharpening-neutral", "tests.broken_components:SharpeningNeutral", config=Empty,
                 summary="claims neutrality, sharpens")
        register("no-summary", f"{BUILTIN}:IdentityCalibrator", config=Empty, summary="")
        register("int-keys-config", f"{BUILTIN}:IdentityCalibrator", config=IntKeysConfig,
                 summary="a config default TOML cannot hold")

    @hookimpl
    def pk_register_datasets(self, register):
        register("unseeded-data", "tests.broken_components:build_unseeded", config=Empty,
                 summary="global RNG", tasks=("classification",))
        register("raw-ids-seq", "tests.broken_components:build_raw_item_ids", config=Empty,
                 summary="item ids beyond num_items", tasks=("next-item",))
        register("misspelt-task", "tests.broken_components:build_misspelt_task", config=Empty,
                 summary="info.task not registered", tasks=("classification",))
        register("tiny-seq", "tests.broken_components:build_tiny_seq", config=Empty,
                 summary="good twin", tasks=("next-item",))

    @hookimpl
    def pk_register_models(self, register):
        register("unsaved-projection", "tests.broken_components:build_unsaved_projection", config=OnBuiltinData,
                 summary="state outside the state_dict", tasks=("classification",))
        register("unused-param", "tests.broken_components:build_unused_parameter", config=OnBuiltinData,
                 summary="good twin (all its state is saved)", tasks=("classification",))

    @hookimpl
    def pk_register_trainers(self, register):
        register("urandom-shuffle", "tests.broken_components:UrandomShuffleTrainer", config=TwoEpochs,
                 summary="unseeded shuffling", tasks=("classification",))
        register("reseeding", "tests.broken_components:ReseedingTrainer", config=TwoEpochs,
                 summary="loses the shuffle state on resume", tasks=("classification",))
        register("supervised-two-epochs", f"{BUILTIN}:SupervisedTrainer", config=TwoEpochs,
                 summary="good twin", tasks=("classification",))


#: (kind, name, check, a fragment of the failure message: the intended property failed)
BROKEN = [
    ("calibrators", "no-summary", "registration_is_valid", "summary must not be empty"),
    ("calibrators", "int-keys-config", "registration_is_valid", "does not round-trip through TOML"),
    ("datasets", "unseeded-data", "dataset_is_deterministic", "gave different data twice"),
    ("datasets", "raw-ids-seq", "dataset_batches_fit_info", "seq ids outside"),
    ("datasets", "misspelt-task", "dataset_batches_fit_info", "not among registered tasks"),
    ("models", "unsaved-projection", "model_state_dict_round_trips", "outputs differ after state_dict"),
    ("trainers", "urandom-shuffle", "trainer_is_deterministic", "different final metrics"),
    ("trainers", "reseeding", "trainer_resume_is_exact", "resumed run ended with different"),
    ("aggregators", "unnormalised-sum", "aggregator_weight_scale_invariant", "scaling every weight"),
    ("aggregators", "global-as-client", "aggregator_fixed_point", "identical updates must return that update"),
    ("calibrators", "sharpening-neutral", "calibrator_neutral_is_identity", None),
]

GOOD = [
    ("calibrators", "identity", "registration_is_valid"),
    ("models", "mlp", "registration_is_valid"),
    ("datasets", "synthetic-classification", "dataset_is_deterministic"),
    ("datasets", "synthetic-classification", "dataset_batches_fit_info"),
    ("datasets", "tiny-seq", "dataset_batches_fit_info"),
    ("models", "unused-param", "model_state_dict_round_trips"),
    ("models", "mlp", "model_state_dict_round_trips"),
    ("trainers", "supervised-two-epochs", "trainer_is_deterministic"),
    ("trainers", "supervised-two-epochs", "trainer_resume_is_exact"),
    ("aggregators", "fedavg", "aggregator_weight_scale_invariant"),
    ("aggregators", "fedavg", "aggregator_fixed_point"),
    ("calibrators", "identity", "calibrator_neutral_is_identity"),
]


@pytest.mark.parametrize("kind,name,check_name,message", BROKEN, ids=[f"{b[2]}[{b[1]}]" for b in BROKEN])
def test_suite_catches_broken_component(pk_register_temp, kind, name, check_name, message):
    registry = pk_register_temp(MoreBrokenPlugin(), name="broken_more", distribution=DIST)
    with pytest.raises(AssertionError, match=message and re.escape(message)):
        check(Case(check_name, DIST, registry.get(kind, name)))


@pytest.mark.parametrize("kind,name,check_name", GOOD, ids=[f"{g[2]}[{g[1]}]" for g in GOOD])
def test_suite_passes_the_good_twin(pk_register_temp, kind, name, check_name):
    """The same checks pass on correct twins (so the failures above are not spurious)."""
    registry = pk_register_temp(MoreBrokenPlugin(), name="broken_more", distribution=DIST)
    reg = registry.get(kind, name)
    check(Case(check_name, reg.distribution, reg))


@pytest.mark.parametrize("heavy", [True, False], ids=["imports-torch", "good-twin"])
def test_suite_catches_heavy_entry_module(pk_register_temp, tmp_path, monkeypatch, heavy):
    """A plugin whose entry module imports torch at import time fails entry_module_is_light;
    the same module importing only pk.core passes. (The check imports the module in a fresh
    interpreter, so the module lies on PYTHONPATH, not only on sys.path.)"""
    body = "from pk.core import hookimpl\n" + ("import torch  # heavy at import time\n" if heavy else "")
    (tmp_path / "pk_heavyentry.py").write_text(body)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    pk_register_temp(object(), name="pk_heavyentry", distribution="pk-heavyentry")
    case = Case("entry_module_is_light", "pk-heavyentry")
    if heavy:
        with pytest.raises(AssertionError, match="torch"):
            check(case)
    else:
        check(case)


def test_every_check_has_a_broken_component():
    """Each check in pk.core.testing.checks fails on at least one broken component in these
    two files (recipes_are_valid and entry_module_is_light on the plugin-level tests)."""
    from pk.core.testing import checks
    from tests.test_contract_suite_catches import BROKEN as FIRST

    covered = {b[2] for b in FIRST} | {b[2] for b in BROKEN} | {"recipes_are_valid", "entry_module_is_light"}
    assert set(checks.__all__) - covered == set()
