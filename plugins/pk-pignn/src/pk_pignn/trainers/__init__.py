"""Continual trainers (PI-GNN and baselines); the PM/FM evaluator is in :mod:`pk_pignn.evaluators`."""

from pk_pignn.trainers.continual import (
    ContinualTrainer,
    EWCTrainer,
    FinetuneTrainer,
    PIGNNTrainer,
    ReplayTrainer,
    RetrainTrainer,
    train_stage,
)

__all__ = ["ContinualTrainer", "EWCTrainer", "FinetuneTrainer", "PIGNNTrainer", "ReplayTrainer", "RetrainTrainer",
           "train_stage"]
