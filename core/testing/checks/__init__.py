"""Contract checks, one function per property; each takes a :class:`Case`.

All run on CPU with one thread, on the components' synthetic defaults (dataset configs with
a ``source`` field get ``source = "synthetic"``), shrunk by ``pk_test`` class attributes.
Checks that draw inputs use hypothesis (seeds, batch sizes, config values in range).
"""

from __future__ import annotations

from pk.core.testing.checks.attention import (
    calibrator_keeps_rows_stochastic,
    calibrator_neutral_is_identity,
)
from pk.core.testing.checks.data_models import (
    dataset_batches_fit_info,
    dataset_is_deterministic,
    dataset_splits_are_disjoint,
    model_accepts_drawn_configs,
    model_batch_independent,
    model_is_deterministic,
    model_loss_backpropagates,
    model_output_has_task_shape,
    model_padding_invariant,
    model_permutation_equivariant,
    model_state_dict_round_trips,
)
from pk.core.testing.checks.evaluators import (
    evaluator_metrics_in_range,
)
from pk.core.testing.checks.federated import (
    aggregator_does_not_mutate,
    aggregator_fixed_point,
    aggregator_permutation_invariant,
    aggregator_rejects_empty,
    aggregator_robust_bounded,
    aggregator_weight_scale_invariant,
)
from pk.core.testing.checks.registration import (
    entry_module_is_light,
    recipes_are_valid,
    registration_is_valid,
)
from pk.core.testing.checks.trainers import (
    trainer_is_deterministic,
    trainer_resume_is_exact,
    trainer_zero_steps_leave_weights,
)

__all__ = [
    "registration_is_valid",
    "entry_module_is_light",
    "recipes_are_valid",
    "dataset_is_deterministic",
    "dataset_splits_are_disjoint",
    "dataset_batches_fit_info",
    "model_output_has_task_shape",
    "model_is_deterministic",
    "model_state_dict_round_trips",
    "model_loss_backpropagates",
    "model_batch_independent",
    "model_permutation_equivariant",
    "model_padding_invariant",
    "model_accepts_drawn_configs",
    "trainer_is_deterministic",
    "trainer_resume_is_exact",
    "trainer_zero_steps_leave_weights",
    "aggregator_fixed_point",
    "aggregator_permutation_invariant",
    "aggregator_weight_scale_invariant",
    "aggregator_rejects_empty",
    "aggregator_does_not_mutate",
    "aggregator_robust_bounded",
    "calibrator_keeps_rows_stochastic",
    "calibrator_neutral_is_identity",
    "evaluator_metrics_in_range",
]
