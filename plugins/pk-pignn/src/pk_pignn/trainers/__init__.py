"""Continual trainers (PI-GNN and baselines) and the PM/FM evaluator."""

from pk_pignn.trainers.continual import (
    ContinualTrainer,
    EWCTrainer,
    FinetuneTrainer,
    PIGNNTrainer,
    ReplayTrainer,
    RetrainTrainer,
    train_stage,
)
from pk_pignn.trainers.evaluator import PMFMEvaluator

__all__ = ["ContinualTrainer", "EWCTrainer", "FinetuneTrainer", "PIGNNTrainer", "PMFMEvaluator", "ReplayTrainer", "RetrainTrainer", "train_stage"]
