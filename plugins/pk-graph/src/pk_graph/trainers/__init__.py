"""Node- and graph-classification trainers, split metrics and evaluators."""

from pk_graph.evaluators import AccuracyEvaluator, MacroF1Evaluator, split_metrics, split_predictions
from pk_graph.trainers.loop import GraphClassificationTrainer, NodeClassificationTrainer, train_node_epoch

__all__ = [
    "AccuracyEvaluator", "GraphClassificationTrainer", "MacroF1Evaluator", "NodeClassificationTrainer",
    "split_metrics", "split_predictions", "train_node_epoch",
]
