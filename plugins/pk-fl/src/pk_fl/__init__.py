"""pk-fl: federated learning base for pk (simulator, partitioners, robust aggregators,
attacks, shared image datasets and models, optional Flower bridge).

Heavy modules (torch) are imported lazily: import ``pk_fl.data.images``, ``pk_fl.trainers.simulator``
and friends explicitly.
"""

__version__ = "0.1.0"
