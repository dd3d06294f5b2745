"""GNN baselines on PyG layers: GCN, GAT, GraphSAGE, GIN (node and graph classification)."""

from pk_graph.models.gnn import GNNClassifier, build_gat, build_gcn, build_gin, build_sage, graph_loss, graph_targets

__all__ = ["GNNClassifier", "build_gat", "build_gcn", "build_gin", "build_sage", "graph_loss", "graph_targets"]
