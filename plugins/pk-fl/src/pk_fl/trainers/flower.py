"""The trainer "flower": pk's federated simulation run as a Flower ServerApp/ClientApp.

Same config fields as ``fedsim`` (plus ``backend``), same partition, client trainer, attacks,
aggregator (built once via ``run.build("aggregator", context=...)``) and derived RNG, so the
same config and seed give the same result as ``fedsim`` (bit-identical on CPU with the
in-process backend; the Ray backend trains the same clients in other processes). Flower does
the messaging: a ``query`` round maps nodes to partitions, then ``strategy.start`` runs the
rounds with server-side evaluation through ``evaluate_fn``.

``backend``: "in-process" (a Grid whose nodes call the ClientApp in this process: Flower's
ServerApp, strategy loop, Message/RecordDict round trips and ClientApp dispatch, without Ray)
or "ray" (``flwr.simulation.run_simulation``, ClientApps in Ray actors). Deployment across
processes (SuperLink + SuperNodes + ``flwr run``) uses :mod:`pk_fl.trainers.flower_deploy`. Not resumable
(Flower keeps no pk checkpoint); a persistent client optimiser is refused (ClientApps are
stateless).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import numpy as np
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk.core.torch_helpers import classification_metrics
from pk_fl.trainers.rounds import fit_summary, plot_history
from pk_fl.trainers.simulator import FedSimTrainer


class FlowerTrainer(FedSimTrainer):
    """See the module docstring; ``evaluate`` is fedsim's (per-example scores saved)."""

    resumable = False

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if config.persistent_client_optimizer:
            raise ConfigError("trainer flower: persistent_client_optimizer needs client state across rounds, which "
                              "stateless Flower ClientApps do not keep; use trainer fedsim")
        if getattr(config, "client_batching", "loop") != "loop":
            raise ConfigError('trainer flower: client_batching = "vmap" is fedsim\'s; Flower ClientApps train one '
                              'client each (use client_batching = "loop")')

    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        from pk_fl.trainers import flower_bridge as flower
        from pk_fl.trainers import flower_runtime

        cfg = self.config
        device = run.device
        fed, aggregator = self.setup(model, data, run)
        template = copy.deepcopy(model).cpu()
        history: list[dict[str, float]] = []
        round_start = {"t": time.perf_counter()}
        round_seconds: list[float] = []

        def on_round(rnd: int, metrics: dict[str, float]) -> None:
            run.log(rnd, "train", **metrics)
            entry = {"round": float(rnd)}
            if "malicious_weight" in metrics:
                entry["malicious_weight"] = metrics["malicious_weight"]
            history.append(entry)

        def evaluate_fn(rnd: int, arrays: Any) -> Any:
            from flwr.app import MetricRecord

            if rnd > 0:
                round_seconds.append(time.perf_counter() - round_start["t"])
            model.load_state_dict(arrays.to_torch_state_dict())
            out = None
            if cfg.eval_every > 0 and (rnd == 0 or rnd % cfg.eval_every == 0 or rnd == cfg.rounds):
                m = classification_metrics(model, data, cfg.eval_split, cfg.eval_batch_size, device)
                run.log(rnd, "server", **m)
                if rnd == 0:
                    history.append({"round": 0.0, "accuracy": m["accuracy"]})
                else:
                    history[-1]["accuracy"] = m["accuracy"]
                out = MetricRecord(m)
            round_start["t"] = time.perf_counter()
            return out

        with flower_runtime.quiet_flower():
            strategy = flower.make_fedsim_strategy(cfg, fed, aggregator, run.seed, on_round=on_round)
        initial = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result: dict[str, Any] = {}
        server_app = flower.make_server_app(strategy, initial, cfg.rounds, cfg.num_clients, evaluate_fn, result)
        client_app = flower.make_client_app(cfg, fed, lambda: copy.deepcopy(template).to(device), run.seed, device)
        t0 = time.perf_counter()
        with flower_runtime.quiet_flower():
            if cfg.backend == "ray":
                flower_runtime.run_ray(server_app, client_app, cfg.num_clients, num_cpus=1.0)
            else:
                flower_runtime.run_inprocess(server_app, client_app, cfg.num_clients, seed=run.seed)
        wall = time.perf_counter() - t0
        if "flower" not in result:
            raise RuntimeError("the Flower ServerApp ended without a result (see the flwr log above)")
        model.load_state_dict(result["flower"].arrays.to_torch_state_dict())
        if cfg.plot:
            plot_history(history, run.artifact_path("accuracy.png"))
        self.timing = {"backend": cfg.backend, "rounds_timed": len(round_seconds), "wall_seconds": wall,
                       "seconds_per_round": float(np.mean(round_seconds)) if round_seconds else float("nan")}
        run.artifact_path("timing.json").write_text(json.dumps(self.timing, indent=2))
        return fit_summary(cfg, fed, history, cfg.rounds, aggregator)
