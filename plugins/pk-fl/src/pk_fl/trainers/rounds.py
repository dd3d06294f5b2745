"""The pieces of a federated round that ``fedsim`` (:mod:`pk_fl.trainers.simulator`) and the
Flower bridge (:mod:`pk_fl.trainers.flower_bridge`) share: the federation (client shards,
malicious ids, proxy set), client sampling, the client trainer, the server step and the fit
summary.

Randomness is derived, not sequential, so that any host (fedsim's loop, a Flower ClientApp in
another process) reproduces it: the partition, the malicious ids and the proxy set come from
``derive_seed(run.seed, "fl-partition" | "fl-malicious" | "fl-proxy")``; round r's client sample
from ``derive_seed(seed, "fl-sampling", r)``; client k's batch order and any global-RNG use in
round r (dropout) from ``derive_seed(seed, "fl-client", r, k)``; round r's attack noise from
``derive_seed(seed, "fl-attack", r)``.

The aggregator receives ``updates = [(state_dict, weight, meta)]`` in ascending client id with
``meta = {"client_id": int, "num_examples": int}`` and nothing else (:data:`META_KEYS`): which
clients are malicious is ground truth that only the simulator's own logs hold. ``weight`` is the
client's example count (``weighting = "examples"``) or 1 (``"uniform"``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pk.core.errors import ConfigError, DataError
from pk.core.seed import derive_seed
from pk_fl.data.partition import partition
from pk_fl.trainers.attacks import LABEL_ATTACKS, MODEL_ATTACKS, lie_paper_z, poison_labels, poison_updates

#: the only keys of ``meta`` an aggregator ever sees
META_KEYS = ("client_id", "num_examples")


def split_tensors(data: Any, split: str) -> dict[str, torch.Tensor]:
    """All tensors of ``split`` as one dict (uses ``data.tensors`` when it is a TensorBundle)."""
    tensors = getattr(data, "tensors", None)
    if isinstance(tensors, Mapping) and split in tensors:
        return dict(tensors[split])
    batches = list(data.loader(split, 4096))
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def proxy_subset(
    valid: Mapping[str, torch.Tensor], samples: int, num_classes: int, seed: int
) -> dict[str, torch.Tensor]:
    """A class-balanced server proxy set: ``samples // C`` random examples per class (the
    remainder filled from a seeded shuffle of the rest) drawn from ``valid``."""
    rng = np.random.default_rng(seed)
    y = valid["y"].numpy()
    per_class = samples // num_classes
    chosen: list[int] = []
    for c in range(num_classes):
        pool = np.flatnonzero(y == c)
        chosen += rng.permutation(pool)[:per_class].tolist()
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    chosen += rng.permutation(rest)[: max(0, samples - len(chosen))].tolist()
    idx = torch.as_tensor(sorted(chosen), dtype=torch.long)
    return {k: v[idx] for k, v in valid.items()}


def malicious_ids(num_clients: int, fraction: float, seed: int) -> list[int]:
    """``round(fraction * K)`` client ids chosen once from a seeded permutation."""
    count = int(round(fraction * num_clients))
    return sorted(np.random.default_rng(seed).permutation(num_clients)[:count].tolist())


def sample_clients(num_clients: int, participation: float, generator: torch.Generator) -> list[int]:
    """``max(1, int(K * participation))`` ids drawn without replacement, returned sorted."""
    m = max(1, int(num_clients * participation))
    return sorted(torch.randperm(num_clients, generator=generator)[:m].tolist())


def round_generator(seed: int, name: str, *parts: int) -> torch.Generator:
    """A fresh CPU generator seeded from ``(seed, name, *parts)``."""
    return torch.Generator().manual_seed(derive_seed(seed, name, *(str(p) for p in parts)))


def client_meta(client_id: int, num_examples: int) -> dict[str, Any]:
    """What an aggregator may know about a client (exactly :data:`META_KEYS`)."""
    return {"client_id": client_id, "num_examples": num_examples}


def clone_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in state.items()}


@dataclass
class Federation:
    """The fixed per-run setup both hosts share: client shards (index order), their sizes, the
    malicious ids (ground truth: never handed to an aggregator) and the server proxy set."""

    shards: list[dict[str, torch.Tensor]]
    sizes: list[int]
    malicious: frozenset[int]
    num_classes: int
    proxy: dict[str, torch.Tensor] | None


def build_federation(cfg: Any, data: Any, seed: int) -> Federation:
    """Partition ``data``'s train split for ``cfg`` (a :class:`pk_fl.plugin.FedSimConfig`)."""
    num_classes = int(data.info.num_classes or 0)
    if cfg.attack in LABEL_ATTACKS and num_classes < 2:
        raise ConfigError("label attacks need a classification dataset with num_classes >= 2")
    train = split_tensors(data, "train")
    labels = train["y"].numpy()
    if len(labels) < cfg.num_clients:
        raise DataError(
            f"{len(labels)} training examples cannot feed {cfg.num_clients} clients; lower trainer.num_clients"
        )
    shards_idx = partition(labels, cfg.num_clients, cfg.partition, derive_seed(seed, "fl-partition"),
                           alpha=cfg.alpha, shards_per_client=cfg.shards_per_client)
    shards = [{k: v[torch.as_tensor(idx, dtype=torch.long)] for k, v in train.items()} for idx in shards_idx]
    bad = malicious_ids(cfg.num_clients, cfg.malicious_fraction if cfg.attack != "none" else 0.0,
                        derive_seed(seed, "fl-malicious"))
    proxy = None
    if cfg.proxy_samples > 0 and "valid" in data.splits:
        proxy = proxy_subset(
            split_tensors(data, "valid"), cfg.proxy_samples, max(num_classes, 1), derive_seed(seed, "fl-proxy")
        )
    return Federation(shards, [len(i) for i in shards_idx], frozenset(bad), num_classes, proxy)


def optimizer_for(cfg: Any, params: Any) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def local_train(
    cfg: Any,
    worker: nn.Module,
    global_state: Mapping[str, torch.Tensor],
    shard: Mapping[str, torch.Tensor],
    *,
    num_classes: int,
    label_attack: str,
    seed: int,
    device: str,
    optimizer_state: Any = None,
) -> tuple[dict[str, torch.Tensor], Any, float]:
    """Train ``worker`` from ``global_state`` on ``shard`` for ``cfg.local_epochs``; return
    (state on CPU, optimiser state, mean loss). Batch order and global-RNG draws (dropout) come
    from ``seed`` alone, the caller's RNG state is left untouched. FedProx adds
    ``mu * ||w - w_global||^2``."""
    worker.load_state_dict(global_state)
    worker.train()
    opt = optimizer_for(cfg, worker.parameters())
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    anchor = [p.detach().clone() for p in worker.parameters()] if cfg.proximal_mu > 0 else None
    n = int(shard["y"].shape[0])
    total, count = 0.0, 0
    shuffle = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _epoch in range(cfg.local_epochs):
            order = torch.randperm(n, generator=shuffle)
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                batch = {k: v[idx].to(device) for k, v in shard.items()}
                batch["y"] = poison_labels(batch["y"], num_classes, label_attack)
                opt.zero_grad(set_to_none=True)
                loss = worker.loss(batch)
                if anchor is not None:
                    loss = loss + cfg.proximal_mu * sum(
                        ((p - a) ** 2).sum() for p, a in zip(worker.parameters(), anchor)
                    )
                loss.backward()
                opt.step()
                total += float(loss.detach())
                count += 1
    return clone_state(worker.state_dict()), copy.deepcopy(opt.state_dict()), total / max(count, 1)


def server_step(
    cfg: Any,
    fed: Federation,
    aggregator: Any,
    agg_state: Any,
    global_state: Mapping[str, torch.Tensor],
    sampled: Sequence[int],
    states: list[dict[str, torch.Tensor]],
    *,
    rnd: int,
    seed: int,
) -> tuple[dict[str, torch.Tensor], Any, dict[str, float], list[float]]:
    """Model attacks, weights, aggregation of one round. ``sampled`` ascending, ``states``
    aligned with it. Returns (new global state, aggregator state, round metrics, applied weights).

    Model attacks are applied here (they need the round's other updates: LIE), before the
    aggregator, which sees only ``(state, weight, client_meta)``."""
    mal_pos = [i for i, cid in enumerate(sampled) if cid in fed.malicious]
    benign_pos = [i for i in range(len(sampled)) if i not in mal_pos]
    lie_z = lie_paper_z(len(sampled), len(mal_pos)) if cfg.lie_z_rule == "paper" else cfg.lie_z
    if cfg.attack in MODEL_ATTACKS and mal_pos:
        poisoned = poison_updates(
            global_state,
            [states[i] for i in mal_pos],
            cfg.attack,
            scale=cfg.attack_scale,
            sigma=cfg.attack_sigma,
            z=lie_z,
            generator=round_generator(seed, "fl-attack", rnd),
            benign=[states[i] for i in benign_pos],
        )
        states = list(states)
        for i, s in zip(mal_pos, poisoned):
            states[i] = s
    sizes = fed.sizes
    weights = [float(sizes[cid]) if cfg.weighting == "examples" else (1.0 if sizes[cid] else 0.0) for cid in sampled]
    if sum(weights) <= 0:
        raise DataError(
            f"round {rnd}: the sampled clients {list(sampled)} hold no training examples (zero total weight); "
            "raise trainer.participation or use a less extreme partition"
        )
    updates = [(s, w, client_meta(cid, sizes[cid])) for s, w, cid in zip(states, weights, sampled)]
    new_state, agg_state = aggregator.aggregate(global_state, updates, agg_state)
    applied = list(getattr(aggregator, "last_client_weights", None) or [w / sum(weights) for w in weights])
    metrics: dict[str, float] = {"malicious_sampled": float(len(mal_pos))}
    if cfg.attack == "lie" and mal_pos:
        metrics["lie_z"] = lie_z
    if mal_pos:
        metrics["malicious_weight"] = float(sum(applied[i] for i in mal_pos))
    for name, value in (getattr(aggregator, "last_metrics", None) or {}).items():
        metrics[f"agg_{name}"] = float(value)
    return new_state, agg_state, metrics, applied


def fit_summary(cfg: Any, fed: Federation, history: list[dict[str, float]], rounds_run: int,
                aggregator: Any = None) -> dict[str, float]:
    """``fit.*`` metrics: rounds run (``epochs_run``), final/best server accuracy, mean weight on
    malicious clients over the rounds that sampled one, and ``agg_<name>`` for each entry of the
    aggregator's optional ``summary()`` dict."""
    accs = [h["accuracy"] for h in history if "accuracy" in h]
    mal = [h["malicious_weight"] for h in history if "malicious_weight" in h]
    out = {
        "epochs_run": float(rounds_run),
        "final_accuracy": accs[-1] if accs else float("nan"),
        "best_accuracy": max(accs) if accs else float("nan"),
        "num_malicious": float(len(fed.malicious)),
    }
    if mal:
        out["malicious_weight_mean"] = float(np.mean(mal))
    summary = getattr(aggregator, "summary", None)
    if callable(summary):
        out.update({f"agg_{k}": float(v) for k, v in summary().items()})
    return out


def plot_history(history: list[dict[str, float]], path: Any) -> None:
    """Accuracy per round and, when any round sampled a malicious client, the total weight the
    aggregator gave malicious clients per round (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    acc = [h for h in history if "accuracy" in h]
    mal = [h for h in history if "malicious_weight" in h]
    fig, axes = plt.subplots(1, 2 if mal else 1, figsize=(9 if mal else 5, 3.2), squeeze=False)
    ax = axes[0][0]
    ax.plot([h["round"] for h in acc], [h["accuracy"] for h in acc], marker=".")
    ax.set_xlabel("round")
    ax.set_ylabel("server accuracy")
    ax.grid(alpha=0.3)
    if mal:
        ax = axes[0][1]
        ax.plot([h["round"] for h in mal], [h["malicious_weight"] for h in mal], marker=".", color="tab:red")
        ax.set_xlabel("round")
        ax.set_ylabel("weight on malicious clients")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
