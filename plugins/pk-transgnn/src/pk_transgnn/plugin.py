"""pk-transgnn registration and config (stdlib and pk.core only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk.core import hookimpl


@dataclass
class TransGNNConfig:
    """TransGNN: ``layers`` modules of Transformer (over ``samples`` sampled nodes) -> GCN layer ->
    sample update. ``sampling``: "similarity" (S + alpha A S) or "ppr" (sum_t alpha^t A^t S,
    t <= ppr_steps). ``encodings``: any of spd, degree, pagerank (added once, before the stack).
    ``update``: "message-passing", "random-walk" (``walk_length`` steps) or "none". Hops are
    capped at ``max_hops``; degrees at ``max_degree``. ``chunk`` rows per similarity block."""

    hidden: int = 64
    heads: int = 4
    layers: int = 2
    samples: int = 20
    alpha: float = 0.5
    sampling: Literal["similarity", "ppr"] = "similarity"
    ppr_steps: int = 3
    max_hops: int = 5
    max_degree: int = 64
    encodings: list[str] = field(default_factory=lambda: ["spd", "degree", "pagerank"])
    update: Literal["message-passing", "random-walk", "none"] = "message-passing"
    walk_length: int = 5
    walk_temperature: float = 0.5
    dropout: float = 0.5
    pool: Literal["mean", "sum"] = "mean"
    chunk: int = 2048


@hookimpl
def pk_register_models(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "transgnn", "pk_transgnn.models:build_transgnn", config=TransGNNConfig,
        summary="TransGNN: Transformer over sampled relevant nodes + GNN layers, positional encodings, sample updates",
        tasks=("node-classification", "graph-classification"),
        paper={"title": "Can Transformer and GNN Help Each Other? (TransGNN)", "year": 2023, "url": "https://arxiv.org/abs/2308.14355"},
    )
