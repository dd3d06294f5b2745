"""pk-oracle: Foundation-Model-oriented Robustness (FMR, ICLR 2024) for pk.

Heavy code lives in submodules (``oracles``, ``generators``, ``search``, ``evaluator``,
``trainers``); importing this package imports nothing heavy.
"""

__version__ = "0.1.0"
