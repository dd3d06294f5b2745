"""The contract suite must fail on deliberately broken components (a suite that cannot
fail is a defect): each broken plugin below violates exactly one property. The checks not
covered here have their broken components in test_contract_suite_catches_more.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pk.core import hookimpl
from pk.core.errors import PkError
from pk.core.testing import Case, check


@dataclass
class Empty:
    pass


@dataclass
class WidthConfig:
    width: int = field(default=8, metadata={"ge": 1})


@dataclass
class EagerConfig:
    max_epochs: int = 1
    max_steps: int = -1
    batch_size: int = 16
    lr: float = 0.01
    weight_decay: float = 0.0
    optimizer: str = "adam"
    eval_batch_size: int = 64


class BrokenPlugin:
    @hookimpl
    def pk_register_aggregators(self, register):
        register("mutating-agg", "tests.broken_components:MutatingAggregator", config=Empty,
                 summary="mutates its inputs")
        register("order-agg", "tests.broken_components:FirstClientAggregator", config=Empty,
                 summary="returns the first client")
        register("lenient-agg", "tests.broken_components:LenientAggregator", config=Empty,
                 summary="accepts empty rounds")
        register("fake-robust-agg", "tests.broken_components:MeanClaimingRobust", config=Empty,
                 summary="claims robustness")

    @hookimpl
    def pk_register_calibrators(self, register):
        register("leaky-cal", "tests.broken_components:LeakyCalibrator", config=Empty,
                 summary="puts mass on masked keys")

    @hookimpl
    def pk_register_models(self, register):
        register("noisy-mlp", "tests.broken_components:build_noisy", config=Empty, summary="random outputs",
                 tasks=("classification",))
        register("wrong-shape", "tests.broken_components:build_wrong_shape", config=Empty, summary="one logit",
                 tasks=("classification",))
        register("unused-param", "tests.broken_components:build_unused_parameter", config=Empty, summary="dead layer",
                 tasks=("classification",))
        register("batch-centred", "tests.broken_components:build_batch_centred", config=Empty, summary="rows leak",
                 tasks=("classification",))
        register("index-aware", "tests.broken_components:build_index_aware", config=Empty, summary="uses numbering",
                 tasks=("node-classification",))
        register("neighbour-mean", "tests.broken_components:build_neighbour_mean", config=Empty, summary="good twin",
                 tasks=("node-classification",))
        register("odd-width", "tests.broken_components:build_pairs_width", config=WidthConfig,
                 summary="crashes on odd widths its bounds admit", tasks=("classification",))
        register("column-positions", "tests.broken_components:build_column_positions", config=Empty,
                 summary="positions from the batch's left edge", tasks=("next-item",))
        register("bag-of-items", "tests.broken_components:build_bag_of_items", config=Empty, summary="good twin",
                 tasks=("next-item",))

    @hookimpl
    def pk_register_trainers(self, register):
        register("eager", "tests.broken_components:EagerTrainer", config=EagerConfig, summary="steps before its budget",
                 tasks=("classification",))

    @hookimpl
    def pk_register_datasets(self, register):
        register("leaky-data", "tests.broken_components:build_leaky", config=Empty, summary="test overlaps train",
                 tasks=("classification",))
        register("tiny-graph", "tests.broken_components:build_tiny_graph", config=Empty, summary="a 12-node ring",
                 tasks=("node-classification",))
        register("tiny-seq", "tests.broken_components:build_tiny_seq", config=Empty, summary="12 short sequences",
                 tasks=("next-item",))

    @hookimpl
    def pk_register_evaluators(self, register):
        register("bad-range", "tests.broken_components:OutOfRangeEvaluator", config=Empty, summary="accuracy 2.0",
                 tasks=("classification",))


BROKEN = [
    ("aggregators", "mutating-agg", "aggregator_does_not_mutate"),
    ("aggregators", "order-agg", "aggregator_permutation_invariant"),
    ("aggregators", "lenient-agg", "aggregator_rejects_empty"),
    ("aggregators", "fake-robust-agg", "aggregator_robust_bounded"),
    ("calibrators", "leaky-cal", "calibrator_keeps_rows_stochastic"),
    ("models", "noisy-mlp", "model_is_deterministic"),
    ("models", "wrong-shape", "model_output_has_task_shape"),
    ("datasets", "leaky-data", "dataset_splits_are_disjoint"),
    ("evaluators", "bad-range", "evaluator_metrics_in_range"),
    ("models", "unused-param", "model_loss_backpropagates"),
    ("models", "batch-centred", "model_batch_independent"),
    ("models", "index-aware", "model_permutation_equivariant"),
    ("models", "column-positions", "model_padding_invariant"),
    ("models", "odd-width", "model_accepts_drawn_configs"),
    ("trainers", "eager", "trainer_zero_steps_leave_weights"),
]


@pytest.mark.parametrize("kind,name,check_name", BROKEN, ids=[b[2] for b in BROKEN])
def test_suite_catches_broken_component(pk_register_temp, kind, name, check_name):
    registry = pk_register_temp(BrokenPlugin(), name="broken", distribution="pk-broken")
    reg = registry.get(kind, name)
    with pytest.raises(AssertionError):
        check(Case(check_name, "pk-broken", reg))


def test_suite_passes_the_good_twin(pk_register_temp):
    """The same checks pass on the built-ins (so the failures above are not spurious)."""
    registry = pk_register_temp(BrokenPlugin(), name="broken", distribution="pk-broken")
    for kind, name, check_name in [("aggregators", "fedavg", "aggregator_does_not_mutate"),
                                   ("calibrators", "identity", "calibrator_keeps_rows_stochastic"),
                                   ("models", "mlp", "model_is_deterministic"),
                                   ("models", "mlp", "model_loss_backpropagates"),
                                   ("models", "mlp", "model_batch_independent"),
                                   ("models", "mlp", "model_accepts_drawn_configs"),
                                   ("trainers", "supervised", "trainer_zero_steps_leave_weights")]:
        check(Case(check_name, "pk-core", registry.get(kind, name)))
    check(Case("model_permutation_equivariant", "pk-broken", registry.get("models", "neighbour-mean")))
    check(Case("model_padding_invariant", "pk-broken", registry.get("models", "bag-of-items")))


GOOD_RECIPE = """[batch]
metric = "test.accuracy"
baseline = "a"
method = "{method}"
[defaults]
dataset = {{ name = "synthetic-classification" }}
trainer = {{ name = "supervised", {trainer_extra} }}
[[runs]]
name = "a"
overrides = {{ model = {{ name = "mlp" }} }}
[[runs]]
name = "b"
overrides = {{ model = {{ name = "mlp", hidden = [8] }} }}
"""


@pytest.mark.parametrize(
    "method,trainer_extra,has_quick",
    [("c", "max_epochs = 1", True), ("b", "max_epohcs = 1", True), ("b", "max_epochs = 1", False)],
    ids=["method-not-a-run", "unknown-trainer-key", "no-quick-recipe"],
)
def test_suite_catches_broken_recipes(pk_register_temp, tmp_path, monkeypatch, method, trainer_extra, has_quick):
    """A plugin whose recipes/ holds a recipe that would fail `pk batch` fails recipes_are_valid."""
    package = tmp_path / "pk_brokenrecipes"
    (package / "recipes").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "recipes" / "other.toml").write_text(GOOD_RECIPE.format(method=method, trainer_extra=trainer_extra))
    if has_quick:
        (package / "recipes" / "quick.toml").write_text(GOOD_RECIPE.format(method="b", trainer_extra="max_epochs = 1"))
    monkeypatch.syspath_prepend(str(tmp_path))
    pk_register_temp(object(), name="pk_brokenrecipes.plugin", distribution="pk-brokenrecipes")
    with pytest.raises((AssertionError, PkError)):
        check(Case("recipes_are_valid", "pk-brokenrecipes"))
    # the good twin: the same package with two valid recipes passes
    (package / "recipes" / "other.toml").write_text(GOOD_RECIPE.format(method="b", trainer_extra="max_epochs = 1"))
    (package / "recipes" / "quick.toml").write_text(GOOD_RECIPE.format(method="b", trainer_extra="max_epochs = 1"))
    check(Case("recipes_are_valid", "pk-brokenrecipes"))
