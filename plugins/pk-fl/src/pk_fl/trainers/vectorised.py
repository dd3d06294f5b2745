"""Vectorised clients for ``fedsim`` (``trainer.client_batching = "vmap"``): all sampled
clients of a round train at once with :mod:`torch.func` (``functional_call`` + ``vmap`` over
parameters stacked on a leading client dimension and per-client batches).

It reproduces the loop (:func:`pk_fl.trainers.rounds.local_train`) client by client: the
batch order of client k in round r comes from the same generator
(``derive_seed(seed, "fl-client", r, k)``, one ``randperm`` per local epoch), label attacks
poison the malicious clients' labels before training, FedProx adds the same
``mu * ||w - w_round||^2`` term, and SGD (momentum, weight decay, as ``torch.optim.SGD``
computes them) keeps one momentum buffer per client. The per-client optimiser states are
``torch.optim.SGD`` state dicts, so ``persistent_client_optimizer`` checkpoints are the loop's.
Model attacks stay in the server step, which receives the same list of client states.

Step ``s`` of the round takes every client's ``s``-th batch, padded to the widest one. When all
clients have a batch of that width the model's own ``loss`` runs on the stacked batches. When
not (a ragged last batch, a client with fewer batches), the loss is the masked mean of the
per-example losses (the model's ``loss`` on one example, vmapped over the batch), and a client
with no batch at that step is left untouched (no weight decay, no momentum). So ``loss`` must
be a mean of per-example losses, as cross entropy is.

Refused with a ConfigError (use ``client_batching = "loop"``): Adam (only SGD is stacked),
norm layers with running statistics (BatchNorm: buffers that change in training), and active
dropout (the loop's per-client global-RNG draws cannot be reproduced inside ``vmap``). Other
buffers and frozen parameters (``requires_grad`` False) are passed through unbatched as
constants. A trainable parameter the loss does not use gets a zero gradient here (the loop's
SGD skips it, so weight decay and momentum would differ for it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from pk.core.errors import ConfigError
from pk.core.seed import derive_seed
from pk_fl.trainers.attacks import LABEL_ATTACKS, poison_labels
from pk_fl.trainers.rounds import Federation, clone_state, optimizer_for


def check_vmap_config(cfg: Any) -> None:
    """Config-level refusals (raised from the trainer's constructor)."""
    if getattr(cfg, "client_batching", "loop") == "vmap" and cfg.optimizer != "sgd":
        raise ConfigError(f'trainer.client_batching = "vmap" stacks SGD only (optimizer = {cfg.optimizer!r}); '
                          'use trainer.client_batching = "loop"')


def check_vmap_model(model: nn.Module) -> None:
    """Model-level refusals: buffers that change in training, active dropout."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            raise ConfigError(f"trainer.client_batching = \"vmap\": {name or 'the model'} "
                              f"({type(module).__name__}) updates running statistics in training; "
                              'use trainer.client_batching = "loop"')
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            raise ConfigError(f"trainer.client_batching = \"vmap\": {name or 'the model'} has dropout "
                              f"p={module.p}, whose per-client random draws vmap cannot reproduce; "
                              'use trainer.client_batching = "loop" or dropout 0')


class _LossOf(nn.Module):
    """``forward(batch) = model.loss(batch)``, so ``functional_call`` reaches the loss."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.m = model

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.m.loss(batch)


def client_orders(n: int, local_epochs: int, seed: int) -> list[torch.Tensor]:
    """The loop's batch order for one client: one ``randperm(n)`` per local epoch from a
    generator seeded with ``seed`` (exactly :func:`pk_fl.trainers.rounds.local_train`'s)."""
    shuffle = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=shuffle) for _ in range(local_epochs)]


def batch_plan(orders: Sequence[Sequence[torch.Tensor]], batch_size: int
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per step ``s``: (indices [C, W], mask [C, W]) of every client's ``s``-th batch (shard-local
    indices, padded with 0 to the widest batch ``W`` of that step; mask False on padding and
    for clients whose batches have run out)."""
    per_client = [[o[i:i + batch_size] for o in epochs for i in range(0, len(o), batch_size)] for epochs in orders]
    steps = max((len(b) for b in per_client), default=0)
    plan = []
    for s in range(steps):
        width = max(len(b[s]) for b in per_client if s < len(b))
        idx = torch.zeros(len(per_client), width, dtype=torch.long)
        mask = torch.zeros(len(per_client), width, dtype=torch.bool)
        for c, batches in enumerate(per_client):
            if s < len(batches):
                idx[c, : len(batches[s])] = batches[s]
                mask[c, : len(batches[s])] = True
        plan.append((idx, mask))
    return plan


class VmapClients:
    """Built once per fit: the client shards concatenated (labels of malicious clients
    poisoned when the attack is a label attack) and the functional model."""

    def __init__(self, cfg: Any, worker: nn.Module, fed: Federation, device: str) -> None:
        check_vmap_config(cfg)
        check_vmap_model(worker)
        self.cfg, self.fed, self.device = cfg, fed, device
        self.worker = worker
        self.loss_module = _LossOf(worker)
        keys = list(fed.shards[0]) if fed.shards else []
        shards = []
        for cid, shard in enumerate(fed.shards):
            shard = dict(shard)
            if cid in fed.malicious and cfg.attack in LABEL_ATTACKS:
                shard["y"] = poison_labels(shard["y"], fed.num_classes, cfg.attack)
            shards.append(shard)
        self.pool = {k: torch.cat([s[k] for s in shards]).to(device) for k in keys}
        self.offsets = torch.tensor([0, *torch.tensor(fed.sizes).cumsum(0).tolist()[:-1]], dtype=torch.long)
        # torch.optim indexes its state by position in ``parameters()``; frozen parameters are
        # constants here (the loop's optimiser skips them: no gradient)
        self.all_params = [n for n, _ in worker.named_parameters()]
        self.param_names = [n for n, p in worker.named_parameters() if p.requires_grad]
        self.group_template = optimizer_for(cfg, worker.parameters()).state_dict()["param_groups"]

    # -- the per-client loss, vmapped over clients -------------------------------------------
    def _prox(self, params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> Any:
        return self.cfg.proximal_mu * sum(((params[n] - anchor[n]) ** 2).sum() for n in self.param_names)

    def _loss_full(self, params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                   batch: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = functional_call(self.loss_module, ({f"m.{k}": v for k, v in params.items()}, buffers), (batch,))
        return loss + self._prox(params, anchor) if self.cfg.proximal_mu > 0 else loss

    def _loss_masked(self, params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                     batch: dict[str, torch.Tensor], mask: torch.Tensor,
                     buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        named = {f"m.{k}": v for k, v in params.items()}

        def one(example: dict[str, torch.Tensor]) -> torch.Tensor:
            single = {k: v.unsqueeze(0) for k, v in example.items()}
            return functional_call(self.loss_module, (named, buffers), (single,))

        per_example = vmap(one)(batch)
        loss = torch.where(mask, per_example, torch.zeros_like(per_example)).sum() / mask.sum().clamp(min=1)
        return loss + self._prox(params, anchor) if self.cfg.proximal_mu > 0 else loss

    # -- a round -------------------------------------------------------------------------------
    def train(self, global_state: Mapping[str, torch.Tensor], sampled: Sequence[int], *, rnd: int, seed: int,
              client_opt: dict[str, Any]) -> tuple[list[dict[str, torch.Tensor]], list[float]]:
        """States (aligned with ``sampled``; a client without data returns the global state)
        and mean losses (clients with data, in ``sampled`` order); ``client_opt`` is updated in
        place when ``persistent_client_optimizer`` is set."""
        fed = self.fed
        active = [cid for cid in sampled if fed.sizes[cid] > 0]
        states_by_cid: dict[int, dict[str, torch.Tensor]] = {}
        losses_by_cid: dict[int, float] = {}
        if active:
            states_by_cid, losses_by_cid = self._train_active(global_state, active, rnd=rnd, seed=seed,
                                                              client_opt=client_opt)
        states = [states_by_cid[cid] if cid in states_by_cid else clone_state(global_state) for cid in sampled]
        return states, [losses_by_cid[cid] for cid in sampled if cid in losses_by_cid]

    def _train_active(self, global_state: Mapping[str, torch.Tensor], active: list[int], *, rnd: int, seed: int,
                      client_opt: dict[str, Any]) -> tuple[dict[int, dict[str, torch.Tensor]], dict[int, float]]:
        cfg, device = self.cfg, self.device
        n_clients = len(active)
        names = self.param_names
        params = {n: global_state[n].to(device).unsqueeze(0).repeat(n_clients, *([1] * global_state[n].dim()))
                  for n in names}
        constants = [n for n, _ in self.worker.named_buffers()] + [n for n in self.all_params if n not in params]
        buffers = {f"m.{n}": global_state[n].to(device) for n in constants}
        anchor = {n: p.clone() for n, p in params.items()} if cfg.proximal_mu > 0 else {}
        momentum, wd, lr = cfg.momentum, cfg.weight_decay, cfg.lr
        bufs: dict[str, torch.Tensor] = {}
        if momentum != 0:
            bufs = {n: torch.zeros_like(p) for n, p in params.items()}
            if cfg.persistent_client_optimizer:
                for c, cid in enumerate(active):
                    saved = (client_opt.get(str(cid)) or {}).get("state", {})
                    for n in names:
                        buf = (saved.get(self.all_params.index(n)) or {}).get("momentum_buffer")
                        if buf is not None:
                            bufs[n][c] = buf.to(device)

        orders = [client_orders(self.fed.sizes[cid], cfg.local_epochs,
                                derive_seed(seed, "fl-client", str(rnd), str(cid))) for cid in active]
        offsets = self.offsets[torch.tensor(active)].unsqueeze(1)
        total = torch.zeros(n_clients, dtype=torch.float64)
        count = torch.zeros(n_clients, dtype=torch.long)
        full_step = vmap(grad_and_value(self._loss_full), in_dims=(0, 0, 0, None))
        masked_step = vmap(grad_and_value(self._loss_masked), in_dims=(0, 0, 0, 0, None))
        with torch.no_grad():
            for idx, mask in batch_plan(orders, cfg.batch_size):
                rows = (idx + offsets).flatten().to(device)
                batch = {k: v.index_select(0, rows).view(*idx.shape, *v.shape[1:]) for k, v in self.pool.items()}
                if bool(mask.all()):
                    grads, loss = full_step(params, anchor, batch, buffers)
                    live = None
                else:
                    mask_d = mask.to(device)
                    grads, loss = masked_step(params, anchor, batch, mask_d, buffers)
                    live = mask.any(1)
                self._sgd(params, grads, bufs, live, momentum=momentum, wd=wd, lr=lr)
                on = live if live is not None else torch.ones(n_clients, dtype=torch.bool)
                total += torch.where(on, loss.detach().cpu().double(), 0.0)
                count += on.long()

        losses = (total / count.clamp(min=1)).tolist()
        state_order = list(global_state)
        states: dict[int, dict[str, torch.Tensor]] = {}
        for c, cid in enumerate(active):
            state = {k: (params[k][c] if k in params else global_state[k]).detach().to("cpu").clone()
                     for k in state_order}
            states[cid] = state
            if cfg.persistent_client_optimizer:
                opt_state: dict[int, Any] = {}
                if momentum != 0 and int(count[c]) > 0:
                    opt_state = {self.all_params.index(n): {"momentum_buffer": bufs[n][c].detach().to("cpu").clone()}
                                 for n in names}
                elif momentum != 0:
                    opt_state = copy.deepcopy((client_opt.get(str(cid)) or {}).get("state", {}))
                client_opt[str(cid)] = {"state": opt_state, "param_groups": copy.deepcopy(self.group_template)}
        return states, {cid: losses[c] for c, cid in enumerate(active)}

    @staticmethod
    def _sgd(params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], bufs: dict[str, torch.Tensor],
             live: torch.Tensor | None, *, momentum: float, wd: float, lr: float) -> None:
        """``torch.optim.SGD``'s single-tensor step (no dampening, no Nesterov) on stacked
        tensors, in place; clients with ``live`` False keep their parameters and buffers."""
        for n, p in params.items():
            g = grads[n]
            if wd != 0:
                g = g.add(p, alpha=wd)
            if momentum != 0:
                buf = bufs[n].mul(momentum).add_(g)
                if live is not None:
                    keep = live.view(-1, *([1] * (p.dim() - 1))).to(p.device)
                    buf = torch.where(keep, buf, bufs[n])
                bufs[n] = buf
                g = buf
            if live is None:
                p.add_(g, alpha=-lr)
            else:
                keep = live.view(-1, *([1] * (p.dim() - 1))).to(p.device)
                p.copy_(torch.where(keep, p.add(g, alpha=-lr), p))
