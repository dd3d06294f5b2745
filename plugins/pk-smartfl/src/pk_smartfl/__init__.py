"""pk-smartfl: SmartFL's server-side aggregation-weight optimisation (reconstructed from the
abstract of arXiv 2211.05554; no official code exists)."""

__version__ = "0.1.0"
