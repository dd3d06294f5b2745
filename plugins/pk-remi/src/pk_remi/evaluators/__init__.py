"""Evaluators: ``remi-protocol`` (REMI's held-out-user metrics) and the metric functions."""

from pk_remi.evaluators.remi_protocol import (
    REMIProtocolEvaluator,
    configured_merge,
    evaluate_protocol,
    protocol_scores,
    ranking_metrics,
)

__all__ = ["REMIProtocolEvaluator", "configured_merge", "evaluate_protocol", "protocol_scores", "ranking_metrics"]
