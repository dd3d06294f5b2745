"""SmartFL aggregator (reconstruction of arXiv 2211.05554 from its abstract; see README).

Given m client states theta_k (full state dicts) and a server proxy set (x [P, ...], y [P]),
find w on the probability simplex minimising CE(f(x; sum_k w_k theta_k), y), then return
sum_k w_k theta_k. Only m scalars are trained; the client models stay fixed.

- Parametrisation "softmax": w = softmax(a), Adam on a (a = 0 or log(n_k / sum n) at start).
- Parametrisation "simplex": Adam on w directly, each step followed by the Euclidean projection
  onto the simplex (sort-based algorithm), which can produce exact zeros.
- The weights with the lowest proxy loss seen (the initial ones included) are applied, so the
  proxy loss of the result never exceeds that of the initial (FedAvg-like) combination.
- Parameters enter the graph (``torch.func.functional_call`` on a model from
  ``context.build_model()``); buffers are combined with the final weights, detached.
- Final combination is in float64 and cast back; integer buffers are rounded.

``last_client_weights`` (a list aligned with ``updates``, summing to 1) records w* each round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pk.core.errors import ConfigError
from pk.core.utils import check_updates


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of a vector ``v [m]`` onto {w >= 0, sum w = 1}."""
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1.0
    ks = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = int(torch.nonzero(u - css / ks > 0).max())
    tau = css[rho] / (rho + 1)
    return torch.clamp(v - tau, min=0.0)


def _proxy_tensors(proxy: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(proxy, Mapping):
        return proxy["x"], proxy["y"]
    if proxy is not None and hasattr(proxy, "loader"):
        split = "valid" if "valid" in proxy.splits else proxy.splits[0]
        batches = list(proxy.loader(split, 4096))
        return torch.cat([b["x"] for b in batches]), torch.cat([b["y"] for b in batches])
    raise ConfigError("aggregator smartfl needs server proxy data (ServerContext.proxy_data); run it under trainer fedsim "
                      "with trainer.proxy_samples > 0 and a dataset that has a valid split")


class SmartFL:
    kind = "weights"
    weighted = True

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.weight_param = getattr(config, "weight_param", "softmax")
        self.init = getattr(config, "init", "uniform")
        self.steps = int(getattr(config, "steps", 50))
        self.lr = float(getattr(config, "lr", 0.05))
        self.simplex_lr = float(getattr(config, "simplex_lr", 0.05))
        if self.weight_param not in ("softmax", "simplex") or self.init not in ("uniform", "size"):
            raise ConfigError("smartfl: weight_param must be softmax|simplex and init uniform|size")
        self.context = context
        self._model: nn.Module | None = None
        self.last_client_weights: list[float] = []
        self.last_proxy_loss: tuple[float, float] = (float("nan"), float("nan"))

    def _module(self) -> nn.Module:
        if self._model is None:
            if self.context is None or self.context.build_model is None:
                raise ConfigError("aggregator smartfl needs a ServerContext with build_model; run it under trainer fedsim")
            self._model = self.context.build_model()
            self._model.eval()
        return self._model

    def initial_weights(self, sizes: Sequence[float]) -> torch.Tensor:
        """Uniform, or proportional to the clients' weights (example counts)."""
        m = len(sizes)
        if self.init == "size":
            s = torch.tensor(sizes, dtype=torch.float64)
            return s / s.sum()
        return torch.full((m,), 1.0 / m, dtype=torch.float64)

    def proxy_loss_fn(self, states: Sequence[Mapping[str, torch.Tensor]]) -> Any:
        """``loss(w) -> scalar``: proxy cross-entropy of the model with parameters sum_k w_k theta_k."""
        model = self._module()
        device = next(model.parameters()).device
        x, y = _proxy_tensors(self.context.proxy_data)
        x, y = x.to(device), y.to(device)
        names = [n for n, _ in model.named_parameters()]
        stacks = {n: torch.stack([s[n].detach().to(device, torch.float32) for s in states]) for n in names}
        buffers = {n: b for n, b in model.named_buffers()}

        def loss(w: torch.Tensor) -> torch.Tensor:
            wf = w.to(torch.float32)
            params = {n: torch.tensordot(wf, p, dims=1) for n, p in stacks.items()}
            logits = torch.func.functional_call(model, {**params, **buffers}, (x,))
            return nn.functional.cross_entropy(logits, y)

        return loss

    def optimise(self, states: Sequence[Mapping[str, torch.Tensor]], sizes: Sequence[float]) -> torch.Tensor:
        """The applied weights ``[m]`` (float64, on the simplex)."""
        w0 = self.initial_weights(sizes)
        if len(states) == 1 or self.steps <= 0:
            return w0
        loss_of = self.proxy_loss_fn(states)
        best_w = w0
        with torch.no_grad():
            best_loss = float(loss_of(w0))
        first_loss = best_loss
        if self.weight_param == "softmax":
            logits = torch.log(w0).clone().requires_grad_(True)
            opt = torch.optim.Adam([logits], lr=self.lr)

            def current() -> torch.Tensor:
                return torch.softmax(logits, 0)
        else:
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.simplex_lr)

            def current() -> torch.Tensor:
                return w
        for _ in range(self.steps):
            opt.zero_grad(set_to_none=True)
            value = loss_of(current())
            if float(value.detach()) < best_loss:
                best_loss, best_w = float(value.detach()), current().detach().clone()
            value.backward()
            opt.step()
            if self.weight_param == "simplex":
                with torch.no_grad():
                    w.copy_(project_to_simplex(w))
        with torch.no_grad():
            final = current().detach().clone()
            final_loss = float(loss_of(final))
        if final_loss < best_loss:
            best_loss, best_w = final_loss, final
        self.last_proxy_loss = (first_loss, best_loss)
        return best_w / best_w.sum()

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any], state: Any = None
    ) -> tuple[dict[str, torch.Tensor], Any]:
        check_updates(updates)
        active = [i for i, (_s, w, _m) in enumerate(updates) if float(w) > 0]
        states = [updates[i][0] for i in active]
        weights = self.optimise(states, [float(updates[i][1]) for i in active])
        out: dict[str, torch.Tensor] = {}
        for key, ref in global_state.items():
            acc = torch.zeros(ref.shape, dtype=torch.float64)
            for wk, s in zip(weights.tolist(), states):
                acc += wk * s[key].detach().to("cpu", torch.float64)
            out[key] = (acc if ref.is_floating_point() else acc.round()).to(ref.dtype).to(ref.device)
        full = [0.0] * len(updates)
        for i, wk in zip(active, weights.tolist()):
            full[i] = float(wk)
        self.last_client_weights = full
        return out, state
