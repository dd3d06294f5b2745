"""PI-GNN's expandable GraphSAGE."""

from pk_pignn.models.progressive_sage import ExpandableSAGELayer, ProgressiveSAGE, build_progressive_sage

__all__ = ["ExpandableSAGELayer", "ProgressiveSAGE", "build_progressive_sage"]
