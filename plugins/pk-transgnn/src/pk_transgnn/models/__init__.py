"""TransGNN model (transgnn), its attention layer (attention), sample tables (tables), sampling
and positional encodings."""

from pk_transgnn.models.transgnn import SampledAttention, TransGNN, build_transgnn

__all__ = ["SampledAttention", "TransGNN", "build_transgnn"]
