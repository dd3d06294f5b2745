"""The in-process federated simulator, registered as the trainer "fedsim".

One ``fit`` runs ``rounds`` server rounds. Per round: sample clients (seeded), broadcast the
global state, train each sampled client locally (label attacks act here), let model attacks
rewrite the malicious clients' states, aggregate with the run's configured ``[aggregator]``
(built once via ``run.build("aggregator", context=ServerContext(...))``; core "fedavg" when
none is configured), evaluate on ``eval_split``, log, checkpoint.

Randomness: the partition and the malicious ids come from seeds derived from the run seed
(fixed for the whole run); client sampling, batch shuffling and attack noise draw from
``run.generator("fl-sampling" | "fl-shuffle" | "fl-attack")``, whose states are checkpointed
with the global RNG state, the client optimiser states and the aggregator's state, so a run
resumed at a round boundary ends bit-identical on CPU.

The aggregator receives ``updates = [(state_dict, weight, meta)]`` in ascending client id,
``meta = {"client_id": int, "num_examples": int, "malicious": bool}``; ``weight`` is the client's
example count (``weighting = "examples"``) or 1 (``"uniform"``). The aggregator's second return
value is handed back to it on the next round and checkpointed; an aggregator may also keep
state itself and expose ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from pk.core.contracts import RunHandle, ServerContext
from pk.core.errors import ConfigError, DataError
from pk.core.seed import capture_rng_state, derive_seed, restore_rng_state
from pk.core.utils import classification_metrics
from pk_fl.attacks import LABEL_ATTACKS, MODEL_ATTACKS, poison_labels, poison_updates
from pk_fl.partition import partition

GENERATORS = ("fl-sampling", "fl-shuffle", "fl-attack")


def split_tensors(data: Any, split: str) -> dict[str, torch.Tensor]:
    """All tensors of ``split`` as one dict (uses ``data.tensors`` when it is a TensorBundle)."""
    tensors = getattr(data, "tensors", None)
    if isinstance(tensors, Mapping) and split in tensors:
        return dict(tensors[split])
    batches = list(data.loader(split, 4096))
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def proxy_subset(valid: Mapping[str, torch.Tensor], samples: int, num_classes: int, seed: int) -> dict[str, torch.Tensor]:
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


def _clone_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in state.items()}


class FedSimTrainer:
    """See the module docstring. ``fit`` returns final/best server accuracy, mean weight the
    aggregator put on malicious clients. Seconds per round (total and server side) go to
    ``artifacts/timing.json`` and ``self.timing``."""

    resumable = True

    def __init__(self, config: Any) -> None:
        self.config = config
        if config.rounds < 1 or config.num_clients < 1 or config.local_epochs < 0:
            raise ConfigError("trainer.rounds and trainer.num_clients must be >= 1 and local_epochs >= 0")
        if not 0 < config.participation <= 1:
            raise ConfigError(f"trainer.participation must be in (0, 1], got {config.participation}")
        if not 0 <= config.malicious_fraction < 1:
            raise ConfigError(f"trainer.malicious_fraction must be in [0, 1), got {config.malicious_fraction}")

    # -- client side -----------------------------------------------------------------------
    def _optimizer(self, params: Any) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def local_train(
        self,
        worker: nn.Module,
        global_state: Mapping[str, torch.Tensor],
        shard: Mapping[str, torch.Tensor],
        *,
        num_classes: int,
        label_attack: str,
        shuffle: torch.Generator,
        device: str,
        optimizer_state: Any = None,
    ) -> tuple[dict[str, torch.Tensor], Any, float]:
        """Train ``worker`` from ``global_state`` on ``shard`` for ``local_epochs``; return
        (state on CPU, optimiser state, mean loss). FedProx adds ``mu * ||w - w_global||^2``."""
        cfg = self.config
        worker.load_state_dict(global_state)
        worker.train()
        opt = self._optimizer(worker.parameters())
        if optimizer_state is not None:
            opt.load_state_dict(optimizer_state)
        anchor = [p.detach().clone() for p in worker.parameters()] if cfg.proximal_mu > 0 else None
        n = int(shard["y"].shape[0])
        total, count = 0.0, 0
        for _epoch in range(cfg.local_epochs):
            order = torch.randperm(n, generator=shuffle)
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                batch = {k: v[idx].to(device) for k, v in shard.items()}
                batch["y"] = poison_labels(batch["y"], num_classes, label_attack)
                opt.zero_grad(set_to_none=True)
                loss = worker.loss(batch)
                if anchor is not None:
                    loss = loss + cfg.proximal_mu * sum(((p - a) ** 2).sum() for p, a in zip(worker.parameters(), anchor))
                loss.backward()
                opt.step()
                total += float(loss.detach())
                count += 1
        return _clone_state(worker.state_dict()), copy.deepcopy(opt.state_dict()), total / max(count, 1)

    # -- server loop ---------------------------------------------------------------------------
    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        device = run.device
        info = data.info
        num_classes = int(info.num_classes or 0)
        if cfg.attack in LABEL_ATTACKS and num_classes < 2:
            raise ConfigError("label attacks need a classification dataset with num_classes >= 2")
        train = split_tensors(data, "train")
        labels = train["y"].numpy()
        if len(labels) < cfg.num_clients:
            raise DataError(f"{len(labels)} training examples cannot feed {cfg.num_clients} clients; lower trainer.num_clients")
        shards_idx = partition(labels, cfg.num_clients, cfg.partition, derive_seed(run.seed, "fl-partition"),
                               alpha=cfg.alpha, shards_per_client=cfg.shards_per_client)
        shards = [{k: v[torch.as_tensor(idx, dtype=torch.long)] for k, v in train.items()} for idx in shards_idx]
        sizes = [len(idx) for idx in shards_idx]
        bad = set(malicious_ids(cfg.num_clients, cfg.malicious_fraction if cfg.attack != "none" else 0.0,
                                derive_seed(run.seed, "fl-malicious")))

        proxy = None
        if cfg.proxy_samples > 0 and "valid" in data.splits:
            proxy = proxy_subset(split_tensors(data, "valid"), cfg.proxy_samples, max(num_classes, 1), derive_seed(run.seed, "fl-proxy"))
        template = copy.deepcopy(model).cpu()
        context = ServerContext(
            build_model=lambda: copy.deepcopy(template).to(device),
            device=device,
            generator=run.generator("fl-aggregator"),
            proxy_data=proxy,
            info=info,
        )
        aggregator = run.build("aggregator", context=context)
        if aggregator is None:
            from pk.core.builtins.components import FedAvg

            aggregator = FedAvg(None)
        worker = copy.deepcopy(model)
        gens = {name: run.generator(name) for name in GENERATORS}

        start_round, agg_state = 1, None
        client_opt: dict[str, Any] = {}
        history: list[dict[str, float]] = []
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            for name in GENERATORS:
                gens[name].set_state(ckpt["generators"][name])
            gens_agg = ckpt.get("generator_aggregator")
            if gens_agg is not None:
                context.generator.set_state(gens_agg)
            restore_rng_state(ckpt["rng"])
            client_opt = dict(ckpt["client_optimizers"])
            agg_state = ckpt["aggregator_state"]
            if ckpt.get("aggregator") is not None and hasattr(aggregator, "load_state_dict"):
                aggregator.load_state_dict(ckpt["aggregator"])
            history = list(ckpt["history"])
            start_round = int(ckpt["round"]) + 1
            run.echo(f"resumed at round {start_round}")
        elif cfg.eval_every > 0:
            m0 = classification_metrics(model, data, cfg.eval_split, cfg.eval_batch_size, device)
            run.log(0, "server", **m0)
            history.append({"round": 0.0, "accuracy": m0["accuracy"]})

        round_seconds, server_seconds = [], []
        for rnd in run.progress(range(start_round, cfg.rounds + 1), total=cfg.rounds - start_round + 1, description="rounds"):
            t0 = time.perf_counter()
            sampled = sample_clients(cfg.num_clients, cfg.participation, gens["fl-sampling"])
            global_state = _clone_state(model.state_dict())
            states, losses = [], []
            for cid in sampled:
                if sizes[cid] == 0:
                    states.append(_clone_state(global_state))
                    continue
                label_attack = cfg.attack if cid in bad and cfg.attack in LABEL_ATTACKS else "none"
                state, opt_state, loss = self.local_train(
                    worker, global_state, shards[cid], num_classes=num_classes, label_attack=label_attack,
                    shuffle=gens["fl-shuffle"], device=device,
                    optimizer_state=client_opt.get(str(cid)) if cfg.persistent_client_optimizer else None,
                )
                if cfg.persistent_client_optimizer:
                    client_opt[str(cid)] = opt_state
                states.append(state)
                losses.append(loss)
            mal_pos = [i for i, cid in enumerate(sampled) if cid in bad]
            if cfg.attack in MODEL_ATTACKS and mal_pos:
                poisoned = poison_updates(global_state, [states[i] for i in mal_pos], cfg.attack, scale=cfg.attack_scale,
                                          sigma=cfg.attack_sigma, z=cfg.lie_z, generator=gens["fl-attack"])
                for i, s in zip(mal_pos, poisoned):
                    states[i] = s
            weights = [float(sizes[cid]) if cfg.weighting == "examples" else (1.0 if sizes[cid] else 0.0) for cid in sampled]
            if sum(weights) <= 0:
                raise DataError(f"round {rnd}: the sampled clients {sampled} hold no training examples (zero total weight); "
                                "raise trainer.participation or use a less extreme partition")
            updates = [(s, w, {"client_id": cid, "num_examples": sizes[cid], "malicious": cid in bad})
                       for s, w, cid in zip(states, weights, sampled)]
            t1 = time.perf_counter()
            new_state, agg_state = aggregator.aggregate(global_state, updates, agg_state)
            server_seconds.append(time.perf_counter() - t1)
            model.load_state_dict(new_state)
            applied = getattr(aggregator, "last_client_weights", None) or [w / sum(weights) for w in weights]
            metrics: dict[str, float] = {"client_loss": float(np.mean(losses)) if losses else 0.0,
                                         "malicious_sampled": float(len(mal_pos))}
            if mal_pos:
                metrics["malicious_weight"] = float(sum(applied[i] for i in mal_pos))
            run.log(rnd, "train", **metrics)
            if cfg.eval_every > 0 and (rnd % cfg.eval_every == 0 or rnd == cfg.rounds):
                m = classification_metrics(model, data, cfg.eval_split, cfg.eval_batch_size, device)
                run.log(rnd, "server", **m)
                history.append({"round": float(rnd), "accuracy": m["accuracy"], **({"malicious_weight": metrics["malicious_weight"]} if mal_pos else {})})
            round_seconds.append(time.perf_counter() - t0)
            if cfg.checkpoint_every > 0 and (rnd % cfg.checkpoint_every == 0 or rnd == cfg.rounds):
                self._checkpoint(run, model, rnd, gens, context, client_opt, agg_state, aggregator, history)
        if cfg.plot:
            self._plot(history, run)
        accs = [h["accuracy"] for h in history]
        mal = [h["malicious_weight"] for h in history if "malicious_weight" in h]
        out = {
            "rounds": float(cfg.rounds),
            "final_accuracy": accs[-1] if accs else float("nan"),
            "best_accuracy": max(accs) if accs else float("nan"),
            "num_malicious": float(len(bad)),
        }
        if mal:
            out["malicious_weight_mean"] = float(np.mean(mal))
        if round_seconds:  # wall-clock figures stay out of the (deterministic) result metrics
            self.timing = {"rounds_timed": len(round_seconds), "seconds_per_round": float(np.mean(round_seconds)),
                           "server_seconds_per_round": float(np.mean(server_seconds))}
            run.artifact_path("timing.json").write_text(json.dumps(self.timing, indent=2))
        return out

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        return classification_metrics(model, data, split, self.config.eval_batch_size, run.device)

    @staticmethod
    def _checkpoint(run: RunHandle, model: nn.Module, rnd: int, gens: Mapping[str, torch.Generator], context: ServerContext,
                    client_opt: Mapping[str, Any], agg_state: Any, aggregator: Any, history: list[dict[str, float]]) -> None:
        """Everything a resume at the end of round ``rnd`` needs."""
        run.save_checkpoint({
            "model": model.state_dict(),
            "round": rnd,
            "step": rnd,
            "generators": {name: g.get_state() for name, g in gens.items()},
            "generator_aggregator": context.generator.get_state(),
            "rng": capture_rng_state(),
            "client_optimizers": dict(client_opt),
            "aggregator_state": agg_state,
            "aggregator": aggregator.state_dict() if hasattr(aggregator, "state_dict") else None,
            "history": history,
        })

    @staticmethod
    def _plot(history: list[dict[str, float]], run: RunHandle) -> None:
        """accuracy-vs-round PNG in the run's artifacts (skipped without matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([h["round"] for h in history], [h["accuracy"] for h in history], marker=".")
        ax.set_xlabel("round")
        ax.set_ylabel("server accuracy")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run.artifact_path("accuracy.png"), dpi=100)
        plt.close(fig)
