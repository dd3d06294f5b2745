"""pk's federated simulation as a deployable Flower app (SuperLink + SuperNodes + ``flwr run``).

``python -m pk_fl.trainers.flower_deploy init APP_DIR`` writes a Flower app folder (``pyproject.toml``
with ``[tool.flwr.app.components]`` pointing at this module's ``server_app`` / ``client_app``,
and run-config keys ``pk-config`` and ``out-dir``). Each SuperNode is started with
``--node-config "partition-id=K num-partitions=N"``; ``flwr run APP_DIR <connection> --run-config
'pk-config="/abs/cfg.toml" out-dir="/abs/out"'`` then runs the pk config (a resolved pk TOML:
``[dataset] [model] [trainer] [aggregator] [run]``, trainer ``fedsim`` or ``flower`` fields)
across the processes. Every process builds the same data and partition from the config and
seed (so each needs the data locally, like a real client); the ServerApp writes
``out-dir/result.json`` (``metrics`` as ``pk train`` names them, per-round ``history``) and
``out-dir/model.pt`` (safetensors-free torch file read with ``weights_only=True``).
"""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, MetricRecord
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

APP_MODULE = "pk_flower_app"


@lru_cache(maxsize=4)
def _setup(config_path: str) -> dict[str, Any]:
    """Resolve the pk config and build data, model, federation (cached per process)."""
    import torch

    from pk.core.config import load_toml, resolve
    from pk.core.plugins import get_registry
    from pk.core.runner import Components
    from pk.core.seed import seed_everything
    from pk_fl.trainers.rounds import build_federation

    resolved = resolve(load_toml(Path(config_path)), get_registry())
    if resolved.run.threads:
        torch.set_num_threads(resolved.run.threads)
    seed_everything(resolved.run.seed, deterministic=resolved.run.deterministic)
    components = Components(resolved, "cpu")
    data = components.dataset()
    model = components.model(data.info)
    cfg = resolved.component("trainer")
    if getattr(cfg, "persistent_client_optimizer", False):
        raise ValueError("persistent_client_optimizer is not supported by stateless Flower ClientApps")
    fed = build_federation(cfg, data, resolved.run.seed)
    return {"resolved": resolved, "components": components, "data": data, "model": model, "cfg": cfg, "fed": fed}


client_app = ClientApp()


@lru_cache(maxsize=4)
def _inner_client(config_path: str) -> Any:
    from pk_fl.trainers.flower_bridge import make_client_app

    s = _setup(config_path)
    template = copy.deepcopy(s["model"]).cpu()
    return make_client_app(s["cfg"], s["fed"], lambda: copy.deepcopy(template), s["resolved"].run.seed, "cpu")


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    return _inner_client(str(context.run_config["pk-config"]))(msg, context)


@client_app.query()
def _query(msg: Message, context: Context) -> Message:
    return _inner_client(str(context.run_config["pk-config"]))(msg, context)


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    import torch

    from pk.core.builtins.components import FedAvg
    from pk.core.contracts import ServerContext
    from pk.core.io import save_tensors
    from pk.core.seed import derive_seed
    from pk.core.torch_helpers import classification_metrics
    from pk_fl.trainers.flower_bridge import discover_partitions, make_fedsim_strategy
    from pk_fl.trainers.flower_runtime import quiet_flower
    from pk_fl.trainers.rounds import fit_summary

    s = _setup(str(context.run_config["pk-config"]))
    out_dir = Path(str(context.run_config["out-dir"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg, fed, data, model, seed = s["cfg"], s["fed"], s["data"], s["model"], s["resolved"].run.seed
    template = copy.deepcopy(model).cpu()
    server_ctx = ServerContext(build_model=lambda: copy.deepcopy(template), device="cpu",
                               generator=torch.Generator().manual_seed(derive_seed(seed, "fl-aggregator")),
                               proxy_data=fed.proxy, info=data.info)
    aggregator = s["components"].build("aggregator", context=server_ctx) or FedAvg(None)
    history: list[dict[str, float]] = []

    def on_round(rnd: int, metrics: dict[str, float]) -> None:
        history.append({"round": float(rnd), **metrics})

    def evaluate_fn(rnd: int, arrays: Any) -> Any:
        model.load_state_dict(arrays.to_torch_state_dict())
        if cfg.eval_every > 0 and (rnd == 0 or rnd % cfg.eval_every == 0 or rnd == cfg.rounds):
            m = classification_metrics(model, data, cfg.eval_split, cfg.eval_batch_size, "cpu")
            if rnd == 0:
                history.append({"round": 0.0, "accuracy": m["accuracy"]})
            else:
                history[-1]["accuracy"] = m["accuracy"]
            return MetricRecord(m)
        return None

    with quiet_flower():
        strategy = make_fedsim_strategy(cfg, fed, aggregator, seed, on_round=on_round)
    strategy.partitions = discover_partitions(grid, cfg.num_clients)
    from flwr.app import ArrayRecord

    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord({k: v.detach().cpu() for k, v in model.state_dict().items()}),
        num_rounds=cfg.rounds,
        evaluate_fn=evaluate_fn,
    )
    model.load_state_dict(result.arrays.to_torch_state_dict())
    metrics = {f"fit.{k}": v for k, v in fit_summary(cfg, fed, history, cfg.rounds, aggregator).items()}
    test = classification_metrics(model, data, "test", cfg.eval_batch_size, "cpu")
    metrics.update({f"test.{k}": v for k, v in test.items()})
    save_tensors(out_dir / "model.pt", {"model": model.state_dict()})
    (out_dir / "result.json").write_text(
        json.dumps(
            {
                "metrics": metrics,
                "history": history,
                "partitions": {str(k): str(v) for k, v in strategy.partitions.items()},
            },
            indent=2,
        )
    )


PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "pk-flower-app"
version = "0.1.0"
description = "pk's federated simulation (pk-fl) as a Flower app"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "pk"

[tool.flwr.app.components]
serverapp = "{module}:server_app"
clientapp = "{module}:client_app"

[tool.flwr.app.config]
pk-config = ""
out-dir = ""
"""


def write_app(app_dir: str | Path) -> Path:
    """Write the Flower app folder (pyproject + a module re-exporting this one's apps)."""
    app_dir = Path(app_dir)
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "pyproject.toml").write_text(PYPROJECT.format(module=APP_MODULE))
    (app_dir / f"{APP_MODULE}.py").write_text(textwrap.dedent('''\
        """Flower app entry points: pk-fl's ServerApp and ClientApp (see pk_fl.trainers.flower_deploy)."""

        from pk_fl.trainers.flower_deploy import client_app, server_app

        __all__ = ["client_app", "server_app"]
        '''))
    return app_dir


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "init":
        print("usage: python -m pk_fl.trainers.flower_deploy init APP_DIR", file=sys.stderr)
        return 2
    print(write_app(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
