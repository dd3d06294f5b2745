"""Byzantine-robust aggregators: coordinate-wise median, trimmed mean and (multi-)Krum.

All follow :class:`pk.core.contracts.Aggregator`: ``aggregate(global_state, updates, state)``
with ``updates`` a sequence of ``(state_dict, weight, meta)``; they raise ``ValueError`` on an
empty round or zero total weight (via :func:`pk.core.torch_helpers.check_updates`), never mutate
inputs, and ignore clients whose weight is 0. Robust rules use client weights only as a
participation mask (an attacker could inflate its example count). Arithmetic is float64 and
cast back to each tensor's dtype (integer buffers are rounded).

After each call ``last_client_weights`` holds the effective weight of every update (same
order as ``updates``, summing to 1): the diagnostic the simulator logs. For the median and
trimmed mean it is the fraction of coordinates at which the client's value was used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pk.core.torch_helpers import check_updates


def _active(updates: Sequence[Any]) -> list[int]:
    check_updates(updates)
    return [i for i, (_s, w, _m) in enumerate(updates) if float(w) > 0]


def stack_key(updates: Sequence[Any], indices: Sequence[int], key: str) -> torch.Tensor:
    """``[m, *shape]`` float64 stack of tensor ``key`` over the chosen updates."""
    return torch.stack([updates[i][0][key].detach().to("cpu", torch.float64) for i in indices])


def _cast(value: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (value if ref.is_floating_point() else value.round()).to(ref.dtype).to(ref.device)


def flatten_states(updates: Sequence[Any], indices: Sequence[int], keys: Sequence[str]) -> torch.Tensor:
    """``[m, d]`` float64 matrix of the chosen updates' tensors ``keys``, flattened in order."""
    return torch.stack(
        [torch.cat([updates[i][0][k].detach().to("cpu", torch.float64).reshape(-1) for k in keys]) for i in indices]
    )


class _UsageCounter:
    """Accumulates, per client, the share of coordinates where its value entered the result."""

    def __init__(self, m: int) -> None:
        self.counts = torch.zeros(m, dtype=torch.float64)
        self.total = 0.0

    def add(self, used: torch.Tensor) -> None:  # used: [m, ...] float64 in [0, 1], columns sum to 1
        self.counts += used.reshape(used.shape[0], -1).sum(1)
        self.total += float(used[0].numel())

    def weights(self) -> list[float]:
        return (self.counts / max(self.total, 1.0)).tolist()


class CoordinateMedian:
    """Per coordinate, the median of the active clients' values (mean of the two middle
    values for an even count)."""

    kind = "weights"
    robust = True

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.last_client_weights: list[float] = []

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any], state: Any = None
    ) -> tuple[dict[str, torch.Tensor], Any]:
        active = _active(updates)
        m = len(active)
        usage = _UsageCounter(m)
        out: dict[str, torch.Tensor] = {}
        for key, ref in global_state.items():
            values, order = stack_key(updates, active, key).sort(dim=0)
            lo, hi = (m - 1) // 2, m // 2
            out[key] = _cast((values[lo] + values[hi]) / 2, ref)
            used = torch.zeros_like(values)
            used.scatter_add_(0, order[lo : lo + 1], torch.full_like(values[:1], 0.5))
            used.scatter_add_(0, order[hi : hi + 1], torch.full_like(values[:1], 0.5))
            usage.add(used)
        self.last_client_weights = _expand(usage.weights(), active, len(updates))
        return out, state


class TrimmedMean:
    """Per coordinate, drop the ``b`` smallest and ``b`` largest values and average the rest,
    ``b = min(ceil(trim_ratio * m) + plus_one, (m - 1) // 2)``."""

    kind = "weights"
    robust = True

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.trim_ratio = float(getattr(config, "trim_ratio", 0.2))
        self.plus_one = bool(getattr(config, "plus_one", True))
        if not 0.0 <= self.trim_ratio < 0.5:
            raise ValueError(f"trim_ratio must be in [0, 0.5), got {self.trim_ratio}")
        self.last_client_weights: list[float] = []

    def trim_count(self, m: int) -> int:
        b = math.ceil(self.trim_ratio * m) + (1 if self.plus_one else 0)
        return max(0, min(b, (m - 1) // 2))

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any], state: Any = None
    ) -> tuple[dict[str, torch.Tensor], Any]:
        active = _active(updates)
        m = len(active)
        b = self.trim_count(m)
        usage = _UsageCounter(m)
        out: dict[str, torch.Tensor] = {}
        for key, ref in global_state.items():
            values, order = stack_key(updates, active, key).sort(dim=0)
            kept = values[b : m - b]
            out[key] = _cast(kept.mean(0), ref)
            used = torch.zeros_like(values)
            used.scatter_(0, order[b : m - b], torch.full_like(kept, 1.0 / (m - 2 * b)))
            usage.add(used)
        self.last_client_weights = _expand(usage.weights(), active, len(updates))
        return out, state


class Krum:
    """Krum score of client i: sum of squared L2 distances (over all float tensors) to its
    ``m - f - 2`` nearest other clients (at least 1), ``f = ceil(byzantine_ratio * m) + plus_one``.
    The ``multi`` lowest-score clients are averaged with equal weight (ties broken by the
    state's content, so the result does not depend on client order)."""

    kind = "weights"
    robust = True

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.byzantine_ratio = float(getattr(config, "byzantine_ratio", 0.2))
        self.plus_one = bool(getattr(config, "plus_one", True))
        self.multi = int(getattr(config, "multi", 1))
        if self.multi < 1:
            raise ValueError(f"krum multi must be >= 1, got {self.multi}")
        self.last_client_weights: list[float] = []

    def scores(self, flat: torch.Tensor) -> torch.Tensor:
        """Krum scores ``[m]`` of the rows of ``flat [m, d]``."""
        m = flat.shape[0]
        f = math.ceil(self.byzantine_ratio * m) + (1 if self.plus_one else 0)
        neighbours = max(1, min(m - f - 2, m - 1))
        dist = torch.cdist(flat, flat).pow(2)
        if m == 1:
            return torch.zeros(1, dtype=torch.float64)
        dist.fill_diagonal_(float("inf"))
        return dist.sort(dim=1).values[:, :neighbours].sum(1)

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any], state: Any = None
    ) -> tuple[dict[str, torch.Tensor], Any]:
        active = _active(updates)
        keys = [k for k, v in global_state.items() if v.is_floating_point()]
        flat = flatten_states(updates, active, keys)
        scores = self.scores(flat)
        # order by (score, content) so that permuting clients never changes the choice
        tiebreak = flat.sum(1)
        ranked = sorted(range(len(active)), key=lambda i: (float(scores[i]), float(tiebreak[i])))
        chosen = ranked[: min(self.multi, len(active))]
        out = {
            key: _cast(stack_key(updates, [active[i] for i in chosen], key).mean(0), ref)
            for key, ref in global_state.items()
        }
        local = [0.0] * len(active)
        for i in chosen:
            local[i] = 1.0 / len(chosen)
        self.last_client_weights = _expand(local, active, len(updates))
        return out, state


def _expand(weights: Sequence[float], active: Sequence[int], n: int) -> list[float]:
    full = [0.0] * n
    for w, i in zip(weights, active):
        full[i] = float(w)
    return full


# -- proxy-data rules ---------------------------------------------------------------------
def proxy_tensors(context: Any, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of the server's proxy / root data from a ServerContext, or a ConfigError."""
    from pk.core.errors import ConfigError

    proxy = getattr(context, "proxy_data", None)
    if isinstance(proxy, Mapping) and "x" in proxy and "y" in proxy and len(proxy["y"]) > 0:
        return proxy["x"], proxy["y"]
    raise ConfigError(
        f"aggregator {who} needs server proxy data (ServerContext.proxy_data); run it under trainer fedsim "
        "with trainer.proxy_samples > 0 and a dataset that has a valid split"
    )


def _server_module(context: Any, who: str) -> torch.nn.Module:
    from pk.core.errors import ConfigError

    build = getattr(context, "build_model", None)
    if build is None:
        raise ConfigError(f"aggregator {who} needs a ServerContext with build_model; run it under trainer fedsim")
    return build()


def _model_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "loss"):
        return model.loss({"x": x, "y": y})
    return torch.nn.functional.cross_entropy(model(x), y)


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.predict({"x": x}) if hasattr(model, "predict") else model(x)


class ABAVG:
    """Accuracy-based averaging (the Dynafed code base's ``abavg``): each active client's weight
    is its model's accuracy on the server's proxy (validation) set, normalised to sum to 1;
    the result is that weighted mean of the client states. Example counts serve only as the
    participation mask. Deviation from the reference, which overwrites the accuracy per batch
    so that only the last validation batch counts: pk scores the whole proxy set. If every
    client scores 0, the clients are averaged uniformly."""

    kind = "weights"

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.context = context
        self._model: torch.nn.Module | None = None
        self.last_client_weights: list[float] = []
        self.last_metrics: dict[str, float] = {}

    def accuracies(self, states: Sequence[Mapping[str, torch.Tensor]]) -> list[float]:
        """Proxy-set accuracy of each state (eval mode, no grad)."""
        if self._model is None:
            self._model = _server_module(self.context, "abavg")
        model = self._model
        device = next(model.parameters()).device
        x, y = proxy_tensors(self.context, "abavg")
        x, y = x.to(device), y.to(device)
        out = []
        model.eval()
        with torch.no_grad():
            for s in states:
                model.load_state_dict({k: v.to(device) for k, v in s.items()})
                out.append(float((_logits(model, x).argmax(-1) == y).double().mean()))
        return out

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any], state: Any = None
    ) -> tuple[dict[str, torch.Tensor], Any]:
        active = _active(updates)
        acc = self.accuracies([updates[i][0] for i in active])
        total = sum(acc)
        local = [a / total for a in acc] if total > 0 else [1.0 / len(active)] * len(active)
        out = {}
        for key, ref in global_state.items():
            stack = stack_key(updates, active, key)
            w = torch.tensor(local, dtype=torch.float64).reshape(-1, *([1] * (stack.dim() - 1)))
            out[key] = _cast((w * stack).sum(0), ref)
        self.last_client_weights = _expand(local, active, len(updates))
        self.last_metrics = {"proxy_accuracy_mean": float(sum(acc) / len(acc))}
        return out, state


class FLTrust:
    """FLTrust (Cao et al., NDSS 2021). The server trains the global model on its small root
    dataset (the proxy set) for ``server_epochs`` epochs of SGD (``server_lr``, batches of
    ``server_batch_size``, order from ``context.generator``), giving the server update g0.
    Each active client's update g_i = state_i - global (float tensors, flattened together) gets
    trust TS_i = ReLU(cos(g_i, g0)) and is rescaled to ||g0||; the new global is
    ``global + sum_i TS_i * (||g0|| / ||g_i||) * g_i / sum_i TS_i`` (the paper's global learning
    rate is 1 here). If no client has positive trust, the global state is returned unchanged.
    Example counts serve only as the participation mask. Not a convex combination: with identical
    clients the result is the client's direction at the server update's norm."""

    kind = "weights"

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.server_epochs = int(getattr(config, "server_epochs", 1))
        self.server_lr = float(getattr(config, "server_lr", 0.05))
        self.server_batch_size = int(getattr(config, "server_batch_size", 32))
        if self.server_epochs < 1 or not self.server_lr > 0 or self.server_batch_size < 1:
            raise ValueError("fltrust: server_epochs and server_batch_size must be >= 1 and server_lr > 0")
        self.context = context
        gen = getattr(context, "generator", None)
        self.generator: torch.Generator = gen if gen is not None else torch.Generator().manual_seed(0)
        self._model: torch.nn.Module | None = None
        self.last_client_weights: list[float] = []
        self.last_metrics: dict[str, float] = {}

    def server_update(self, global_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The trained root-data model's state minus ``global_state`` (CPU float64, float keys)."""
        if self._model is None:
            self._model = _server_module(self.context, "fltrust")
        model = self._model
        device = next(model.parameters()).device
        model.load_state_dict({k: v.to(device) for k, v in global_state.items()})
        model.train()
        x, y = proxy_tensors(self.context, "fltrust")
        opt = torch.optim.SGD(model.parameters(), lr=self.server_lr)
        n = int(y.shape[0])
        for _ in range(self.server_epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, self.server_batch_size):
                idx = order[start : start + self.server_batch_size]
                opt.zero_grad(set_to_none=True)
                _model_loss(model, x[idx].to(device), y[idx].to(device)).backward()
                opt.step()
        trained = model.state_dict()
        return {k: trained[k].detach().to("cpu", torch.float64) - v.detach().to("cpu", torch.float64)
                for k, v in global_state.items() if v.is_floating_point()}

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any], state: Any = None
    ) -> tuple[dict[str, torch.Tensor], Any]:
        active = _active(updates)
        keys = [k for k, v in global_state.items() if v.is_floating_point()]
        g0_parts = self.server_update(global_state)
        g0 = torch.cat([g0_parts[k].reshape(-1) for k in keys])
        base = torch.cat([global_state[k].detach().to("cpu", torch.float64).reshape(-1) for k in keys])
        deltas = flatten_states(updates, active, keys) - base
        g0_norm = float(g0.norm())
        norms = deltas.norm(dim=1)
        cos = (deltas @ g0) / (norms * g0_norm).clamp_min(1e-30)
        trust = torch.relu(cos)
        trust[norms == 0] = 0.0
        total = float(trust.sum())
        out = {k: v.detach().clone() for k, v in global_state.items()}
        if total > 0 and g0_norm > 0:
            scaled = deltas * (g0_norm / norms.clamp_min(1e-30)).unsqueeze(1)
            step = (trust.unsqueeze(1) * scaled).sum(0) / total
            new = base + step
            offset = 0
            for k in keys:
                ref = global_state[k]
                out[k] = _cast(new[offset : offset + ref.numel()].reshape(ref.shape), ref)
                offset += ref.numel()
        local = (trust / total).tolist() if total > 0 else [0.0] * len(active)
        self.last_client_weights = _expand(local, active, len(updates))
        self.last_metrics = {"trusted_clients": float((trust > 0).sum()), "server_update_norm": g0_norm}
        return out, state
