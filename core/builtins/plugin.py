"""Registrations of the built-ins (light: stdlib and pk.core only)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pk.core import hookimpl
from pk.core.configs import EpochBudget, OptimConfig
from pk.core.hookspecs import Register

MODULE = "pk.core.builtins.components"


@dataclass
class SyntheticClassificationConfig:
    """Gaussian class clusters: ``num_samples`` points, ``num_features`` dims, split 70/15/15."""

    num_samples: int = field(default=600, metadata={"ge": 10})
    num_features: int = field(default=16, metadata={"ge": 1})
    num_classes: int = field(default=4, metadata={"ge": 2})
    class_sep: float = field(default=1.5, metadata={"ge": 0})
    noise: float = field(default=1.0, metadata={"ge": 0})


@dataclass
class MLPConfig:
    hidden: list[int] = field(default_factory=lambda: [64], metadata={"ge": 1})
    dropout: float = field(default=0.1, metadata={"ge": 0, "lt": 1})
    activation: str = "relu"


@dataclass
class SupervisedConfig(EpochBudget, OptimConfig):
    """Mini-batch training with cross-entropy; keeps the best-validation weights."""

    lr: float = field(default=1e-2, metadata={"gt": 0})


@dataclass
class FedAvgConfig:
    """Weighted mean of client states (weights = client example counts)."""

    server_lr: float = field(default=1.0, metadata={"gt": 0})


@dataclass
class IdentityCalibratorConfig:
    """The identity calibrator has no parameters."""


@dataclass
class AccuracyConfig:
    batch_size: int = field(default=256, metadata={"ge": 1})


@hookimpl
def pk_register_datasets(register: Register) -> None:
    register(
        "synthetic-classification",
        f"{MODULE}:build_synthetic_classification",
        config=SyntheticClassificationConfig,
        summary="Seeded Gaussian clusters for classification (built-in default)",
        tasks=("classification",),
    )


@hookimpl
def pk_register_models(register: Register) -> None:
    register("mlp", f"{MODULE}:build_mlp", config=MLPConfig, summary="Multi-layer perceptron classifier",
             tasks=("classification",))


@hookimpl
def pk_register_trainers(register: Register) -> None:
    register(
        "supervised",
        f"{MODULE}:SupervisedTrainer",
        config=SupervisedConfig,
        summary="Mini-batch supervised training with checkpoints and resume",
        tasks=("classification",),
    )


@hookimpl
def pk_register_aggregators(register: Register) -> None:
    register("fedavg", f"{MODULE}:FedAvg", config=FedAvgConfig,
             summary="FedAvg: example-weighted mean of client models")


@hookimpl
def pk_register_calibrators(register: Register) -> None:
    register("identity", f"{MODULE}:IdentityCalibrator", config=IdentityCalibratorConfig,
             summary="Leaves attention unchanged")


@hookimpl
def pk_register_evaluators(register: Register) -> None:
    register(
        "accuracy",
        f"{MODULE}:AccuracyEvaluator",
        config=AccuracyConfig,
        summary="Top-1 accuracy on the test split",
        tasks=("classification",),
    )
