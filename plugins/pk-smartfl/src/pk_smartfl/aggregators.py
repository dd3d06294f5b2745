"""SmartFL aggregator (reconstruction of arXiv 2211.05554 from its abstract; see README).

Given m client states theta_k (full state dicts) and a server proxy set (x [P, ...], y [P]),
find w on the probability simplex minimising CE(f(x; sum_k w_k theta_k), y), then return
sum_k w_k theta_k. Only m scalars are trained; the client models stay fixed.

- Parametrisation "softmax": w = softmax(a), Adam on a (a = 0 or log(n_k / sum n) at start).
- "simplex": projected gradient descent on w: ``w <- P(w - s * grad)`` with P the Euclidean
  projection onto the simplex (sort-based algorithm; can produce exact zeros).
- "exponentiated": exponentiated gradient (mirror descent on the simplex with the entropy):
  ``w <- w * exp(-s * grad) / Z``; weights stay strictly positive.
  Both pick the step ``s`` by Armijo backtracking from ``simplex_lr`` (halved until the proxy loss
  decreases by at least ``1e-4 * grad . (w_new - w)``, doubled again after an accepted step), so
  no per-problem step tuning is needed. Unlike Adam (whose per-coordinate normalisation turns the
  component of ``grad`` that all clients share into identical steps, which the projection then
  cancels), both move w along the *differences* between the clients' gradients.
- The weights with the lowest proxy loss seen (the initial ones included) are applied, so the
  proxy loss of the result never exceeds that of the initial (FedAvg-like) combination.
- Parameters enter the graph (``torch.func.functional_call`` on a model from
  ``context.build_model()``); buffers are combined with the final weights, detached.
- Final combination is in float64 and cast back; integer buffers are rounded.

``last_client_weights`` (a list aligned with ``updates``, summing to 1) records w* each round;
``last_metrics`` the proxy loss at the start and end of the optimisation and the largest weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pk.core.errors import ConfigError
from pk.core.torch_helpers import check_updates


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
    raise ConfigError(
        "aggregator smartfl needs server proxy data (ServerContext.proxy_data); run it under trainer fedsim "
        "with trainer.proxy_samples > 0 and a dataset that has a valid split"
    )


WEIGHT_PARAMS = ("softmax", "simplex", "exponentiated")
ARMIJO = 1e-4
MAX_BACKTRACKS = 40


class SmartFL:
    """See the module docstring. ``aggregate`` ignores ``meta``; weights only mask clients."""

    kind = "weights"
    weighted = True

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.weight_param = getattr(config, "weight_param", "softmax")
        self.init = getattr(config, "init", "uniform")
        self.steps = int(getattr(config, "steps", 50))
        self.lr = float(getattr(config, "lr", 0.05))
        self.simplex_lr = float(getattr(config, "simplex_lr", 1.0))
        if self.weight_param not in WEIGHT_PARAMS or self.init not in ("uniform", "size"):
            raise ConfigError(f"smartfl: weight_param must be one of {'|'.join(WEIGHT_PARAMS)} and init uniform|size")
        if self.steps < 0 or not self.lr > 0 or not self.simplex_lr > 0:
            raise ConfigError("smartfl: steps must be >= 0 and lr, simplex_lr > 0")
        self.context = context
        self._model: nn.Module | None = None
        self.last_client_weights: list[float] = []
        self.last_proxy_loss: tuple[float, float] = (float("nan"), float("nan"))
        self.last_metrics: dict[str, float] = {}

    def _module(self) -> nn.Module:
        if self._model is None:
            if self.context is None or self.context.build_model is None:
                raise ConfigError(
                    "aggregator smartfl needs a ServerContext with build_model; run it under trainer fedsim"
                )
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
            self.last_proxy_loss = (float("nan"), float("nan"))
            return w0
        loss_of = self.proxy_loss_fn(states)
        with torch.no_grad():
            first_loss = float(loss_of(w0))
        if self.weight_param == "softmax":
            best_w, best_loss = self._adam_softmax(loss_of, w0, first_loss)
        else:
            best_w, best_loss = self._mirror_or_projected(loss_of, w0)
        self.last_proxy_loss = (first_loss, best_loss)
        return best_w / best_w.sum()

    def _adam_softmax(self, loss_of: Any, w0: torch.Tensor, first_loss: float) -> tuple[torch.Tensor, float]:
        """Adam on logits a with w = softmax(a); the lowest-loss weights seen win."""
        best_w, best_loss = w0, first_loss
        logits = torch.log(w0).clone().requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=self.lr)
        for _ in range(self.steps):
            opt.zero_grad(set_to_none=True)
            w = torch.softmax(logits, 0)
            value = loss_of(w)
            if float(value.detach()) < best_loss:
                best_loss, best_w = float(value.detach()), w.detach().clone()
            value.backward()
            opt.step()
        with torch.no_grad():
            final = torch.softmax(logits, 0).detach().clone()
            final_loss = float(loss_of(final))
        if final_loss < best_loss:
            best_loss, best_w = final_loss, final
        return best_w, best_loss

    def _step(self, w: torch.Tensor, grad: torch.Tensor, size: float) -> torch.Tensor:
        """One projected-gradient or exponentiated-gradient step of size ``size`` from ``w``."""
        if self.weight_param == "simplex":
            return project_to_simplex(w - size * grad)
        z = -size * grad
        z = z - z.max()  # exp without overflow; the normalisation removes the shift
        out = w * torch.exp(z)
        return out / out.sum()

    def _mirror_or_projected(self, loss_of: Any, w0: torch.Tensor) -> tuple[torch.Tensor, float]:
        """``steps`` accepted steps of :meth:`_step` with Armijo backtracking (monotone loss)."""

        def value_and_grad(w: torch.Tensor) -> tuple[float, torch.Tensor]:
            wg = w.detach().clone().requires_grad_(True)
            value = loss_of(wg)
            (grad,) = torch.autograd.grad(value, wg)
            return float(value.detach()), grad.detach().to(torch.float64)

        w, size = w0.clone(), self.simplex_lr
        loss, grad = value_and_grad(w)
        for _ in range(self.steps):
            for _ in range(MAX_BACKTRACKS):
                cand = self._step(w, grad, size)
                decrease = float(grad @ (cand - w))
                with torch.no_grad():
                    cand_loss = float(loss_of(cand))
                if cand_loss <= loss + ARMIJO * decrease and decrease < 0:
                    break
                size *= 0.5
            else:
                break  # no descent step found: w is (numerically) stationary
            w = cand
            loss, grad = value_and_grad(w)
            size *= 2.0
        return w, loss

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
        first, best = self.last_proxy_loss
        self.last_metrics = (
            {"proxy_loss_start": first, "proxy_loss_end": best, "weight_max": max(full)} if first == first else {}
        )
        return out, state
