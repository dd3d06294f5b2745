"""ASMG (Peng et al., RecSys'21): a GRU meta-generator over the sequence of past models.

Mechanism (danni9594/ASMG ``ASMGgru_multi``, re-expressed for pk's next-item backbones):

- **Input sequence.** The naive incremental models M̂_j (IU: M̂_j = M̂_{j-1} fine-tuned on
  block j only) form a chain kept apart from the served model. The generator reads the last
  ``seq_length`` of them.
- **Generator.** Every scalar parameter is a time series over that sequence and runs
  through its own GRU cell (hidden size ``rnn_hidden``, gates without biases, as in the
  release): the GRU weights are per *position* of a tensor, so the item table's rows share
  one set per column (the release's embedding case) and every other tensor has one set per
  element (its MLP case). After reading model k the cell emits y_k = W_hy·h_k + b_y
  (``residual``: y_k = x_k + W_hy·h_k + b_y with W_hy = b_y = 0 at start, so the generator
  starts as IU; pk's choice — the release starts from random output weights).
- **Training on the next block ("multi").** Output k (after reading M̂_j) is scored with the
  model's own loss on block j+1, for every k of the window at once, weighted ``linear`` (k /
  Σk, the release's default), ``uniform`` or ``exp``. One meta step takes one batch from
  each of those blocks (as many steps as batches of the newest block, ``meta_epochs``
  passes, Adam at ``meta_lr``).
- **Hidden state across periods.** The window's initial hidden state is the state after the
  model that just left the window (the release saves h after the first step and restores it
  at the next period); it starts at 0, and grown item rows start at 0.

At block t (the served model is W_{t-1}, its item table grown to ``known[t]``): (1) train the
generator on the window M̂_{t-s}..M̂_{t-1} against blocks t-s+1..t; (2) M̂_t = fine-tune
M̂_{t-1} on block t (new item rows: the served model's fresh rows); (3) W_t = the last output
for the window M̂_{t-s+1}..M̂_t. Test on block t+1 follows. Nothing reads block t+1.

Vocabulary growth (pk addition, the release has a fixed vocabulary): an item row that an
older M̂_j lacks takes its value from the first later model in the window that has it (else
the served model's fresh row); output k is cut to the items known after block j+1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.torch_helpers import make_optimizer, to_device
from pk_iurs.data import batches, num_rows
from pk_iurs.trainers.base import LossOf, StreamTrainer

EMB = "item_embedding.weight"


class ParallelGRU(nn.Module):
    """One GRU cell per position p of a ``[N, P]`` input (scalar input per cell, hidden
    ``[N, P, d]``); rows n share the cells. ``step`` returns the new hidden state and the
    output y [N, P] (plus x when ``residual``)."""

    def __init__(self, positions: int, hidden: int, residual: bool = True) -> None:
        super().__init__()
        a = 1.0 / math.sqrt(hidden)
        self.u = nn.Parameter(torch.empty(3, positions, hidden).uniform_(-a, a))  # input -> z, r, candidate
        self.w = nn.Parameter(torch.empty(3, positions, hidden, hidden).uniform_(-a, a))  # hidden -> z, r, candidate
        self.w_hy = nn.Parameter(torch.zeros(positions, hidden) if residual
                                 else torch.empty(positions, hidden).uniform_(-a, a))
        self.b_y = nn.Parameter(torch.zeros(positions))
        self.residual = residual
        self.hidden = hidden

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xin = x[..., None]  # [N, P, 1]

        def rec(i: int, state: torch.Tensor) -> torch.Tensor:
            return torch.einsum("npi,pij->npj", state, self.w[i])

        z = torch.sigmoid(xin * self.u[0] + rec(0, h))
        r = torch.sigmoid(xin * self.u[1] + rec(1, h))
        cand = torch.tanh(xin * self.u[2] + rec(2, r * h))
        h = (1 - z) * h + z * cand
        y = (h * self.w_hy).sum(-1) + self.b_y
        return h, (x + y if self.residual else y)


class ModelGenerator(nn.Module):
    """The ASMG generator for a model whose item table is ``EMB`` (rows share per-column
    cells) and whose other parameters (``shapes``, in order) are flattened into one vector
    (one cell per element)."""

    def __init__(self, emb_dim: int, shapes: Mapping[str, torch.Size], hidden: int, residual: bool = True) -> None:
        super().__init__()
        self.shapes = {k: torch.Size(v) for k, v in shapes.items()}
        flat = sum(int(math.prod(s)) for s in self.shapes.values())
        self.emb = ParallelGRU(emb_dim, hidden, residual)
        self.flat = ParallelGRU(max(flat, 1), hidden, residual)
        self.flat_size = flat

    def zero_state(self, rows: int) -> dict[str, torch.Tensor]:
        return {"emb": torch.zeros(rows, self.emb.u.shape[1], self.emb.hidden),
                "flat": torch.zeros(1, self.flat.u.shape[1], self.flat.hidden)}

    def flatten(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self.shapes:
            return torch.zeros(1)
        return torch.cat([params[k].reshape(-1) for k in self.shapes])

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        out, at = {}, 0
        for name, shape in self.shapes.items():
            n = int(math.prod(shape))
            out[name] = vec[at:at + n].reshape(shape)
            at += n
        return out

    def forward(self, window: Sequence[Mapping[str, torch.Tensor]], state: Mapping[str, torch.Tensor]
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Read the models of ``window`` (equal-shaped parameter dicts) from ``state``;
        return the generated parameters after each model (item row 0, the padding row, is
        copied from the input) and the state after the FIRST one."""
        h_emb, h_flat = state["emb"], state["flat"]
        outputs, first = [], {}
        for k, params in enumerate(window):
            h_emb, y_emb = self.emb.step(params[EMB], h_emb)
            h_flat, y_flat = self.flat.step(self.flatten(params)[None], h_flat)
            if k == 0:
                first = {"emb": h_emb, "flat": h_flat}
            y_emb = torch.cat([params[EMB][:1], y_emb[1:]])  # the padding row is not generated
            outputs.append({EMB: y_emb, **self.unflatten(y_flat[0])})
        return outputs, first


def align_window(window: Sequence[Mapping[str, torch.Tensor]],
                 current: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Give every model of ``window`` the item rows of ``current``: a row an older model lacks
    takes the value of the first later model that has it, else ``current``'s."""
    rows = current[EMB].shape[0]
    fill = current[EMB]
    out: list[dict[str, torch.Tensor]] = []
    for params in reversed(window):
        n = min(params[EMB].shape[0], rows)
        fill = torch.cat([params[EMB][:n], fill[n:]])
        out.append({**params, EMB: fill})
    return out[::-1]


def loss_weights(n: int, kind: str) -> list[float]:
    """The release's weights over the n outputs of a window: linear k/Σk, exp e^k/Σe^k, uniform."""
    if kind == "linear":
        raw = [float(k + 1) for k in range(n)]
    else:
        raw = [math.exp(k + 1) for k in range(n)] if kind == "exp" else [1.0] * n
    return [w / sum(raw) for w in raw]


def meta_train(generator: ModelGenerator, window: Sequence[Mapping[str, torch.Tensor]],
               state: Mapping[str, torch.Tensor], batch_lists: Sequence[Sequence[Any]],
               loss_of: Callable[[int, dict[str, torch.Tensor], Any], torch.Tensor], weights: Sequence[float],
               optimizer: torch.optim.Optimizer) -> int:
    """One pass: step i feeds batch ``batch_lists[k][i]`` to output k for every k; the loss is
    Σ_k weights[k] · ``loss_of(k, params_k, batch)``. Returns the number of steps."""
    steps = len(batch_lists[-1]) if batch_lists else 0
    for i in range(steps):
        outputs, _ = generator(window, state)
        loss = sum(w * loss_of(k, outputs[k], batch_lists[k][i])
                   for k, w in enumerate(weights) if i < len(batch_lists[k]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
    return steps


def _split(rows: dict[str, torch.Tensor], parts: int, info: Any, gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """``rows`` shuffled and cut into ``parts`` batches (the release's BatchLoader2)."""
    n = num_rows(rows)
    if n == 0 or parts <= 0:
        return []
    return list(batches(info, rows, max(1, -(-n // parts)), shuffle=True, generator=gen))


class ASMGTrainer(StreamTrainer):
    """ASMG (see the module docstring and ``ASMGConfig``). Memory: the IU chain (block,
    parameters) of the last ``seq_length`` models, the window's initial hidden state and
    the generator's weights."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.chain: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.state: dict[str, torch.Tensor] = {}
        self.generator: ModelGenerator | None = None
        self.generator_state: dict[str, torch.Tensor] = {}

    def _generator(self, model: nn.Module) -> ModelGenerator:
        if self.generator is None:
            cfg = self.config
            shapes = {n: p.shape for n, p in model.named_parameters() if n != EMB}
            with torch.random.fork_rng(devices=[]):  # fixed init, independent of the run's RNG stream
                torch.manual_seed(0)
                self.generator = ModelGenerator(int(model.item_embedding.weight.shape[1]), shapes, cfg.rnn_hidden,
                                                cfg.residual)
            if self.generator_state:
                self.generator.load_state_dict(self.generator_state)
        return self.generator

    def _state(self, rows: int) -> dict[str, torch.Tensor]:
        """The window's initial hidden state with item rows grown (zeros) to ``rows``."""
        assert self.generator is not None
        zero = self.generator.zero_state(rows)
        if not self.state:
            return zero
        emb = self.state["emb"]
        return {"emb": torch.cat([emb[:rows], zero["emb"][emb.shape[0]:]]), "flat": self.state["flat"]}

    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        cfg = self.config
        cost = {"examples": 0, "steps": 0, "epochs": 0}
        rows_t = data.train_rows([t])
        if num_rows(rows_t) == 0:  # nothing new: keep the served model and the chain as they are
            return cost
        gen = self._generator(model)
        current = {n: p.detach().clone() for n, p in model.named_parameters()}
        rows = current[EMB].shape[0]
        # (1) meta-train on the window M̂_{t-s}..M̂_{t-1}: output k against block j_k + 1 <= t
        window = self.chain[-cfg.seq_length:]
        if window:
            aligned = align_window([p for _, p in window], current)
            nexts = [j + 1 for j, _ in window]
            rows_next = [rows_t if b == t else data.train_rows([b]) for b in nexts]
            parts = -(-num_rows(rows_t) // cfg.batch_size)
            view = LossOf(model)

            def loss_of(k: int, params: dict[str, torch.Tensor], batch: Any) -> torch.Tensor:
                keep = data.known[nexts[k]] + 1  # the items known after block j_k + 1
                params = {**params, EMB: params[EMB][:keep]}
                return torch.func.functional_call(view, {f"inner.{n}": v for n, v in params.items()},
                                                  (to_device(batch, run.device),))

            opt = make_optimizer("adam", gen.parameters(), cfg.meta_lr, 0.0)
            shuffle = run.generator("shuffle")
            model.train()
            for _ in range(cfg.meta_epochs):
                lists = [_split(r, parts, data.info, shuffle) for r in rows_next]
                cost["steps"] += meta_train(gen, aligned, self._state(rows), lists, loss_of,
                                            loss_weights(len(window), cfg.loss_weight), opt)
                cost["examples"] += sum(int((r["targets"] != 0).sum()) for r in rows_next)
                cost["epochs"] += 1
        # (2) M̂_t = M̂_{t-1} fine-tuned on block t (rows of new items: the served model's fresh rows)
        if self.chain:
            prev = self.chain[-1][1]
            with torch.no_grad():
                for n, p in model.named_parameters():
                    src = prev[n]
                    if n == EMB:
                        p[:src.shape[0]].copy_(src[:p.shape[0]])
                    else:
                        p.copy_(src)
        c = self.train_rows(model, data, rows_t, cfg.epochs, run)
        cost = {k: cost[k] + c[k] for k in cost}
        self.chain.append((t, {n: p.detach().clone() for n, p in model.named_parameters()}))
        tuned = self.chain[-1][1]
        with torch.no_grad():
            # the window slides: its initial state becomes the state after the model that leaves it
            if len(self.chain) > cfg.seq_length:
                _, first = gen(align_window([self.chain[0][1]], tuned), self._state(rows))
                self.state = {k: v.detach() for k, v in first.items()}
                self.chain = self.chain[1:]
            # (3) W_t = the generator's last output for M̂_{t-s+1}..M̂_t
            outputs, _ = gen(align_window([p for _, p in self.chain], tuned), self._state(rows))
            for n, p in model.named_parameters():
                p.copy_(outputs[-1][n])
        return cost

    def after_update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> None:
        if t == data.pretrain_blocks - 1:  # the pretrained model opens the IU chain
            self.chain = [(t, {n: p.detach().clone() for n, p in model.named_parameters()})]
            self.state = {}

    def state_dict(self) -> dict[str, Any]:
        gen = self.generator.state_dict() if self.generator is not None else self.generator_state
        return {"chain": [{"block": torch.tensor(j), **p} for j, p in self.chain], "state": dict(self.state),
                "generator": dict(gen)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.chain = [(int(d["block"]), {k: v for k, v in d.items() if k != "block"}) for d in state["chain"]]
        self.state = dict(state["state"])
        self.generator_state = dict(state["generator"])
        self.generator = None
