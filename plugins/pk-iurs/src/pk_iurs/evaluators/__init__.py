"""Evaluators: ``streaming`` (the protocol's per-run summary)."""

from pk_iurs.evaluators.streaming import StreamingEvaluator

__all__ = ["StreamingEvaluator"]
