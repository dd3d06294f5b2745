"""The in-process federated simulator, registered as the trainer "fedsim".

One ``fit`` runs ``rounds`` server rounds. Per round: sample clients (seeded), broadcast the
global state, train each sampled client locally (label attacks act here; one after another, or
all at once with ``client_batching = "vmap"``: :mod:`pk_fl.trainers.vectorised`), let model attacks
rewrite the malicious clients' states, aggregate with the run's configured ``[aggregator]``
(built once via ``run.build("aggregator", context=ServerContext(...))``; core "fedavg" when
none is configured), evaluate on ``eval_split``, log, checkpoint. The round's pieces, and how
their randomness is derived, are in :mod:`pk_fl.trainers.rounds`.

The aggregator's generator is ``run.generator("fl-aggregator")``. A
:class:`pk.core.train_state.TrainState` checkpoints it with the model, the global RNG state and
(in ``extra``) the client optimiser states, the aggregator's state and the round history;
``epoch`` and ``step`` count completed rounds. So a run resumed at a round boundary ends
bit-identical on CPU.

The aggregator's second return value is handed back to it on the next round and checkpointed;
an aggregator may also keep state itself and expose ``state_dict()`` / ``load_state_dict()``,
``last_client_weights`` (logged as the weight put on malicious clients) and ``last_metrics`` (a
dict of floats, logged as ``agg_<name>`` in the round's train metrics).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import numpy as np
from torch import nn

from pk.core.contracts import RunHandle, ServerContext
from pk.core.errors import ConfigError
from pk.core.seed import derive_seed
from pk.core.torch_helpers import classification_metrics
from pk.core.train_state import TrainState
from pk_fl.trainers.attacks import LABEL_ATTACKS
from pk_fl.trainers.rounds import (
    Federation,
    build_federation,
    clone_state,
    fit_summary,
    local_train,
    plot_history,
    round_generator,
    sample_clients,
    server_step,
)
from pk_fl.trainers.vectorised import VmapClients, check_vmap_config


class FedSimTrainer:
    """See the module docstring. ``fit`` returns ``epochs_run`` (rounds run), final/best server
    accuracy, mean weight the aggregator put on malicious clients. Seconds per round (total and
    server side) go to ``artifacts/timing.json`` and ``self.timing``. ``evaluate`` saves
    per-example correctness and loss (``run.save_example_scores``)."""

    resumable = True

    def __init__(self, config: Any) -> None:
        self.config = config
        if config.rounds < 1 or config.num_clients < 1 or config.local_epochs < 0:
            raise ConfigError("trainer.rounds and trainer.num_clients must be >= 1 and local_epochs >= 0")
        if not 0 < config.participation <= 1:
            raise ConfigError(f"trainer.participation must be in (0, 1], got {config.participation}")
        if not 0 <= config.malicious_fraction < 1:
            raise ConfigError(f"trainer.malicious_fraction must be in [0, 1), got {config.malicious_fraction}")
        check_vmap_config(config)

    def server_context(self, model: nn.Module, fed: Federation, data: Any, run: RunHandle) -> ServerContext:
        template = copy.deepcopy(model).cpu()
        device = run.device
        return ServerContext(build_model=lambda: copy.deepcopy(template).to(device), device=device,
                             generator=run.generator("fl-aggregator"), proxy_data=fed.proxy, info=data.info)

    def setup(self, model: nn.Module, data: Any, run: RunHandle) -> tuple[Federation, Any]:
        """The federation and the run's aggregator (core "fedavg" when none is configured)."""
        fed = build_federation(self.config, data, run.seed)
        aggregator = run.build("aggregator", context=self.server_context(model, fed, data, run))
        if aggregator is None:
            from pk.core.builtins.components import FedAvg

            aggregator = FedAvg(None)
        return fed, aggregator

    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        device = run.device
        fed, aggregator = self.setup(model, data, run)
        worker = copy.deepcopy(model)
        vectorised = VmapClients(cfg, worker, fed, device) if cfg.client_batching == "vmap" else None

        agg_state = None
        client_opt: dict[str, Any] = {}
        history: list[dict[str, float]] = []
        state = TrainState(model)
        state.epoch = 0  # completed rounds; round 0 is the initial model
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            state.load_state_dict(ckpt, run)
            client_opt = dict(state.extra["client_optimizers"])
            agg_state = state.extra["aggregator_state"]
            if state.extra.get("aggregator") is not None and hasattr(aggregator, "load_state_dict"):
                aggregator.load_state_dict(state.extra["aggregator"])
            history = list(state.extra["history"])
            run.echo(f"resumed at round {state.start_epoch}")
        elif cfg.eval_every > 0:
            m0 = classification_metrics(model, data, cfg.eval_split, cfg.eval_batch_size, device)
            run.log(0, "server", **m0)
            history.append({"round": 0.0, "accuracy": m0["accuracy"]})

        round_seconds, server_seconds = [], []
        start_round = state.start_epoch
        for rnd in run.progress(range(start_round, cfg.rounds + 1), total=cfg.rounds - start_round + 1,
                                description="rounds"):
            t0 = time.perf_counter()
            sampled = sample_clients(cfg.num_clients, cfg.participation, round_generator(run.seed, "fl-sampling", rnd))
            global_state = clone_state(model.state_dict())
            if vectorised is not None:
                states, losses = vectorised.train(global_state, sampled, rnd=rnd, seed=run.seed, client_opt=client_opt)
            else:
                states, losses = self.train_loop(fed, worker, global_state, sampled, rnd=rnd, seed=run.seed,
                                                 device=device, client_opt=client_opt)
            t1 = time.perf_counter()
            new_state, agg_state, metrics, _applied = server_step(
                cfg, fed, aggregator, agg_state, global_state, sampled, states, rnd=rnd, seed=run.seed
            )
            server_seconds.append(time.perf_counter() - t1)
            model.load_state_dict(new_state)
            metrics = {"client_loss": float(np.mean(losses)) if losses else 0.0, **metrics}
            run.log(rnd, "train", **metrics)
            entry: dict[str, float] = {"round": float(rnd)}
            if "malicious_weight" in metrics:
                entry["malicious_weight"] = metrics["malicious_weight"]
            if cfg.eval_every > 0 and (rnd % cfg.eval_every == 0 or rnd == cfg.rounds):
                m = classification_metrics(model, data, cfg.eval_split, cfg.eval_batch_size, device)
                run.log(rnd, "server", **m)
                entry["accuracy"] = m["accuracy"]
            history.append(entry)
            round_seconds.append(time.perf_counter() - t0)
            if cfg.checkpoint_every > 0 and (rnd % cfg.checkpoint_every == 0 or rnd == cfg.rounds):
                state.epoch = state.step = rnd
                state.extra = {
                    "client_optimizers": dict(client_opt),
                    "aggregator_state": agg_state,
                    "aggregator": aggregator.state_dict() if hasattr(aggregator, "state_dict") else None,
                    "history": history,
                }
                state.save(run)
        if cfg.plot:
            plot_history(history, run.artifact_path("accuracy.png"))
        out = fit_summary(cfg, fed, history, cfg.rounds, aggregator)
        if round_seconds:  # wall-clock figures stay out of the (deterministic) result metrics
            self.timing = {"rounds_timed": len(round_seconds), "seconds_per_round": float(np.mean(round_seconds)),
                           "server_seconds_per_round": float(np.mean(server_seconds))}
            run.artifact_path("timing.json").write_text(json.dumps(self.timing, indent=2))
        return out

    def train_loop(self, fed: Federation, worker: nn.Module, global_state: dict[str, Any], sampled: list[int], *,
                   rnd: int, seed: int, device: str, client_opt: dict[str, Any]) -> tuple[list[Any], list[float]]:
        """The sampled clients one after another (``client_batching = "loop"``): their states
        (aligned with ``sampled``; a client without data returns the global state) and mean
        losses; ``client_opt`` updated in place when ``persistent_client_optimizer`` is set."""
        cfg = self.config
        states, losses = [], []
        for cid in sampled:
            if fed.sizes[cid] == 0:
                states.append(clone_state(global_state))
                continue
            label_attack = cfg.attack if cid in fed.malicious and cfg.attack in LABEL_ATTACKS else "none"
            client_state, opt_state, loss = local_train(
                cfg, worker, global_state, fed.shards[cid], num_classes=fed.num_classes, label_attack=label_attack,
                seed=derive_seed(seed, "fl-client", str(rnd), str(cid)), device=device,
                optimizer_state=client_opt.get(str(cid)) if cfg.persistent_client_optimizer else None,
            )
            if cfg.persistent_client_optimizer:
                client_opt[str(cid)] = opt_state
            states.append(client_state)
            losses.append(loss)
        return states, losses

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        per_example: dict[str, Any] = {}
        metrics = classification_metrics(model, data, split, self.config.eval_batch_size, run.device,
                                         examples=per_example)
        if hasattr(run, "save_example_scores"):
            run.save_example_scores(split, per_example)
        return metrics
