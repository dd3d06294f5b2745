"""pk-transgnn: TransGNN for node and graph classification (heavy modules imported lazily)."""

__version__ = "0.1.0"
