"""pk-pignn: PI-GNN continual learning on graph snapshot streams (heavy code is imported lazily)."""
