"""pk-smartfl registrations (stdlib + pk.core only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk.core import hookimpl
from pk.core.hookspecs import Register


@dataclass
class SmartFLConfig:
    """Per round, optimise weights w on the simplex over the m participating clients so that
    the model sum_k w_k theta_k minimises cross-entropy on the server proxy set (full batch).

    ``weight_param``: "softmax" (w = softmax(a), Adam on a with ``lr``), "simplex" (projected
    gradient on w: step, then Euclidean projection onto the simplex; can give exact zeros) or
    "exponentiated" (exponentiated gradient / mirror descent: w * exp(-s * grad), renormalised).
    The last two start from step ``simplex_lr`` and backtrack (Armijo), so the proxy loss never
    rises. ``init``: "uniform" (equal-weight FedAvg) or "size" (n_k / sum n, size-weighted
    FedAvg). ``steps`` full-batch steps; the weights with the lowest proxy loss seen (initial
    ones included) win.
    """

    weight_param: Literal["softmax", "simplex", "exponentiated"] = "softmax"
    init: Literal["uniform", "size"] = "uniform"
    steps: int = field(default=50, metadata={"ge": 0, "le": 100_000})
    lr: float = field(default=0.05, metadata={"gt": 0})
    simplex_lr: float = field(default=1.0, metadata={"gt": 0})


@hookimpl
def pk_register_aggregators(register: Register) -> None:
    register("smartfl", "pk_smartfl.aggregators:SmartFL", config=SmartFLConfig, tags=("reconstructed",),
             summary="SmartFL (reconstructed): client weights optimised on a server proxy set (convex hull)",
             paper={"title": "Robust Federated Learning against both Data Heterogeneity and Poisoning Attack "
                             "via Aggregation Optimization", "year": 2022, "url": "https://arxiv.org/abs/2211.05554"})
