"""Trainers: ``candidate-matching`` (the ComiRec / REMI training loop)."""

from pk_remi.trainers.candidate_matching import CandidateMatchingTrainer

__all__ = ["CandidateMatchingTrainer"]
