"""pk-transgnn registration and config (stdlib and pk.core only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk_graph.plugin import GNNConfig

from pk.core import hookimpl
from pk.core.hookspecs import Register


@dataclass
class TransGNNConfig(GNNConfig):
    """TransGNN: ``layers`` modules of Transformer (over ``samples`` sampled nodes) -> GCN layer
    (``gnn = false``: none, an ablation). Initial samples: tie-aware top-k of the smoothed
    similarity of the projected input ``H0 = LayerNorm(X W_in)``; ``sampling``: "similarity" (S + alpha A S)
    or "ppr" (sum_t alpha^t A^t S, t <= ppr_steps). One sample table per layer, refreshed every
    ``refresh_every`` training epochs (0: never) from that layer's current representations by
    ``update``: "message-passing", "random-walk" (``walk_length`` steps) or "none". Graphs unseen
    in training get ``eval_refresh`` refresh rounds at evaluation. ``encodings``: any of spd,
    degree, pagerank (added once, before the stack). Hops are capped at ``max_hops``, degrees at
    ``max_degree``; graphs up to ``dense_hops_max`` nodes cache all-pairs hops. ``chunk`` rows per
    similarity block. ``hidden``, ``layers``, ``dropout`` and ``pool`` come from pk-graph's ``GNNConfig``."""

    heads: int = field(default=4, metadata={"ge": 1})
    samples: int = field(default=20, metadata={"ge": 1})
    alpha: float = field(default=0.5, metadata={"ge": 0.0})
    sampling: Literal["similarity", "ppr"] = "similarity"
    ppr_steps: int = field(default=3, metadata={"ge": 1, "le": 100})
    max_hops: int = field(default=5, metadata={"ge": 1, "le": 250})
    max_degree: int = field(default=64, metadata={"ge": 1})
    encodings: list[Literal["spd", "degree", "pagerank"]] = field(
        default_factory=lambda: ["spd", "degree", "pagerank"])
    update: Literal["message-passing", "random-walk", "none"] = "message-passing"
    refresh_every: int = field(default=1, metadata={"ge": 0})
    eval_refresh: int = field(default=1, metadata={"ge": 0, "le": 100})
    walk_length: int = field(default=5, metadata={"ge": 1, "le": 1000})
    walk_temperature: float = field(default=0.5, metadata={"gt": 0.0})
    gnn: bool = True
    dense_hops_max: int = field(default=4096, metadata={"ge": 0, "le": 65536})
    chunk: int = field(default=2048, metadata={"ge": 1})


@hookimpl
def pk_register_models(register: Register) -> None:
    register(
        "transgnn", "pk_transgnn.models:build_transgnn", config=TransGNNConfig,
        summary="TransGNN: Transformer over sampled relevant nodes + GNN layers, positional encodings, "
                "sample updates",
        tasks=("node-classification", "graph-classification"),
        paper={"title": "Can Transformer and GNN Help Each Other? (TransGNN)", "year": 2023,
               "url": "https://arxiv.org/abs/2308.14355"},
    )
