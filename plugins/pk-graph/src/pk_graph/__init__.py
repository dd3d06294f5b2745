"""pk-graph: graph datasets and GNN baselines on PyG (heavy modules are imported lazily)."""

__version__ = "0.1.0"
