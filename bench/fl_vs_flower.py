"""Rounds per second for FedAvg on MNIST t10k, one engine per subprocess, in one run:

- ``fedsim``: pk's in-process simulator, clients one after another (``client_batching = "loop"``);
- ``fedsim-vmap``: the same with all clients of a round at once (``client_batching = "vmap"``, torch.func);
- ``bridge-inprocess``: the same rounds through pk's Flower bridge (trainer ``flower``): Flower's
  ServerApp, strategy loop, Message/RecordDict round trips and ClientApps, in-process grid;
- ``bridge-ray``: the bridge on Flower's simulation runtime (ClientApps in Ray actors);
- ``flower-fedavg``: Flower's own FedAvg + a plain PyTorch ClientApp on the Ray runtime. The
  ClientApp is defined in this importable module (``fl_vs_flower``; the Ray workers get its folder
  on PYTHONPATH) and loads MNIST once per actor: Flower pickles the app with every message, and an
  app that captured the dataset in a closure ran 4.4x slower (issue 26), so this is Flower's best case;

plus server (aggregation) time per round of SmartFL (and Dynafed, when installed) vs FedAvg.

Setup (as the fl-base note's reference figures): all 10,000 t10k images split IID over
``--clients`` clients (default 50, 200 each), all sampled every round, MLP 784-200-10, one local
epoch of plain SGD (lr 0.05, batch 32), server evaluation on the 10,000 images after every round.

    .venv/bin/python bench/fl_vs_flower.py --rounds 4 [--engines fedsim,fedsim-vmap,flower-fedavg] [--skip-server]

Rates use rounds 2..R (the first round holds Ray's start-up); ``first_round_s`` is reported
apart; pk's engines also report ``cpu_s_per_round`` over the same rounds (one thread, so it is
robust to a shared box). Every engine runs with one torch thread; Ray gets 2 CPUs (2 actors x 1 CPU). ``cpu_s`` is
the CPU time of the engine's whole process tree (start-up and data loading included) as reaped
by its subprocess, ``wall_s`` its wall clock. The last lines compare loop, vmap and Flower, and
each pk engine with the round's bare arithmetic timed in the same run (``arithmetic_floor``): how
near the machine's limit it runs, so how much any client batching could still gain.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

from pk.core.testing import MemoryRun

CLIENTS, HIDDEN, LR, BATCH = 50, 200, 0.05, 32
ENGINES = ("fedsim", "fedsim-vmap", "bridge-inprocess", "bridge-ray", "flower-fedavg")


def mnist_bundle() -> Any:
    """TensorBundle with train = test = the 10,000 t10k images (the reference setup)."""
    import torch
    from pk_fl.data.readers import load_mnist_idx

    from pk.core.base import TensorBundle
    from pk.core.contracts import DatasetInfo
    from pk.core.paths import shared_data_dir

    shared = shared_data_dir()
    if shared is None:
        sys.exit("no shared data dir with mnist_t10k (set PK_SHARED_DATA)")
    images, labels = load_mnist_idx(shared / "mnist_t10k")
    x = images.unsqueeze(1).float() / 255.0
    split = {"x": x, "y": labels, "index": torch.arange(len(labels))}
    info = DatasetInfo(task="classification", num_features=784, num_classes=10, extra={"image_shape": [1, 28, 28]})
    return TensorBundle(info=info, tensors={"train": split, "test": split})


class BenchRun(MemoryRun):
    """An in-memory run handle whose aggregator comes from ``aggregator_factory(context)``."""

    def __init__(self, aggregator_factory: Any, seed: int = 0) -> None:
        super().__init__(seed=seed, builders={"aggregator": lambda context=None, **_: aggregator_factory(context)})

    @property
    def server_log(self) -> list[tuple[int, float]]:
        """``(round, accuracy)`` of every server evaluation logged so far."""
        return [(step, m["accuracy"]) for step, split, m in self.logs if split == "server"]


def sim_config(rounds: int, participation: float = 1.0, num_clients: int = CLIENTS,
               client_batching: str = "loop") -> Any:
    from pk_fl.plugin import FedSimConfig

    return FedSimConfig(rounds=rounds, num_clients=num_clients, participation=participation, local_epochs=1,
                        batch_size=BATCH, lr=LR, proxy_samples=100, checkpoint_every=0, plot=False,
                        eval_batch_size=2000, client_batching=client_batching)


def run_pk(rounds: int, aggregator_factory: Any, data: Any, cfg: Any = None,
           trainer_name: str = "fedsim") -> dict[str, Any]:
    import torch
    from pk_fl.trainers.flower import FlowerTrainer
    from pk_fl.trainers.simulator import FedSimTrainer

    from pk.core.builtins.components import MLP

    torch.manual_seed(0)
    model = MLP(784, 10, [HIDDEN], 0.0, "relu")
    trainer = (FlowerTrainer if trainer_name == "flower" else FedSimTrainer)(cfg or sim_config(rounds))
    run = BenchRun(aggregator_factory)
    stamps: list[float] = []
    cpu_stamps: list[float] = []
    log = run.log

    def timed_log(step: int, split: str = "train", **metrics: float) -> None:
        if split == "server":
            stamps.append(time.perf_counter())
            cpu_stamps.append(time.process_time())
        log(step, split, **metrics)

    run.log = timed_log  # type: ignore[method-assign]
    t0 = time.perf_counter()
    trainer.fit(model, data, run)
    per_round = [b - a for a, b in zip(stamps, stamps[1:])]
    steady = per_round[1:] or per_round
    first = 1 if len(cpu_stamps) > 2 else 0  # the same rounds as ``steady``
    return {**getattr(trainer, "timing", {}), "fit_wall_s": time.perf_counter() - t0, "first_round_s": per_round[0],
            "seconds_per_round": sum(steady) / len(steady), "rounds_per_s": len(steady) / sum(steady),
            "cpu_s_per_round": (cpu_stamps[-1] - cpu_stamps[first]) / (len(cpu_stamps) - 1 - first),
            "final_accuracy": run.server_log[-1][1]}


def pk_side(rounds: int, engine: str, clients: int) -> dict[str, Any]:
    import dataclasses

    import torch

    from pk.core.builtins.components import FedAvg

    torch.set_num_threads(1)
    data = mnist_bundle()
    cfg = sim_config(rounds, num_clients=clients, client_batching="vmap" if engine == "fedsim-vmap" else "loop")
    if engine in ("fedsim", "fedsim-vmap"):
        return run_pk(rounds, lambda ctx: FedAvg(None), data, cfg)
    from pk_fl.plugin import FlowerConfig

    fcfg = FlowerConfig(**{**dataclasses.asdict(cfg), "backend": "ray" if engine == "bridge-ray" else "in-process"})
    return run_pk(rounds, lambda ctx: FedAvg(None), data, fcfg, trainer_name="flower")


def server_side(rounds: int) -> dict[str, Any]:
    """Server time per round of FedAvg, SmartFL (and Dynafed if installed), 20 of 50 clients per round."""
    import torch
    from pk_fl.trainers.flower_bridge import build_aggregator

    from pk.core.builtins.components import FedAvg
    from pk.core.plugins import get_registry

    torch.set_num_threads(1)
    data = mnist_bundle()
    data.tensors = {"train": data.tensors["train"], "valid": data.tensors["train"], "test": data.tensors["test"]}
    rules: dict[str, Any] = {"fedavg": lambda ctx: FedAvg(None),
                             "smartfl": lambda ctx: build_aggregator("smartfl", {"steps": 30, "lr": 0.1}, ctx)}
    if "dynafed" in get_registry().names("aggregators"):
        rules["dynafed"] = lambda ctx: build_aggregator("dynafed", {}, ctx)
    out = {}
    for name, factory in rules.items():
        r = run_pk(rounds, factory, data, sim_config(rounds, participation=0.4))
        out[name] = {"server_s_per_round": r["server_seconds_per_round"], "round_s": r["seconds_per_round"]}
    base = out["fedavg"]["server_s_per_round"]
    for name in out:
        out[name]["server_time_vs_fedavg"] = out[name]["server_s_per_round"] / base
    return out


_FLOWER_DATA: dict[str, Any] = {}


def flower_net() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))


def flower_train(msg: Any, context: Any) -> Any:
    """The plain PyTorch client: one epoch of SGD on partition ``partition-id`` of ``num-partitions``
    equal chunks; MNIST is loaded once per process (a Ray actor) and kept in ``_FLOWER_DATA``."""
    import torch
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from torch import nn

    torch.set_num_threads(1)
    if not _FLOWER_DATA:
        train = mnist_bundle().tensors["train"]
        _FLOWER_DATA.update(x=train["x"], y=train["y"])
    x, y = _FLOWER_DATA["x"], _FLOWER_DATA["y"]
    parts = torch.arange(len(y)).chunk(int(context.node_config["num-partitions"]))
    idx = parts[int(context.node_config["partition-id"])]
    model = flower_net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    order = idx[torch.randperm(len(idx))]
    for s in range(0, len(order), BATCH):
        b = order[s : s + BATCH]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        opt.step()
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                          "metrics": MetricRecord({"num-examples": len(idx)})})
    return Message(content=content, reply_to=msg)


def flower_client_app() -> Any:
    """A ClientApp whose train function is :func:`flower_train` of the importable module
    ``fl_vs_flower``, so Ray pickles it by reference (no data travels with the messages)."""
    from flwr.clientapp import ClientApp

    app = ClientApp()
    app.train()(flower_train)
    return app


def flower_side(rounds: int, clients: int = CLIENTS) -> dict[str, Any]:
    """Flower 1.42 Message API, its own FedAvg + Ray backend (2 actors x 1 CPU), the same experiment."""
    import os

    import torch
    from flwr.app import ArrayRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    sys.path.insert(0, here)
    import fl_vs_flower  # this file as an importable module, not __main__

    data = mnist_bundle()
    x, y = data.tensors["train"]["x"], data.tensors["train"]["y"]
    torch.set_num_threads(1)
    net = fl_vs_flower.flower_net
    client = fl_vs_flower.flower_client_app()

    stamps: list[tuple[int, float, float]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = net()
        model.load_state_dict(arrays.to_torch_state_dict())
        with torch.no_grad():
            acc = float((model(x).argmax(1) == y).float().mean())
        stamps.append((server_round, time.perf_counter(), acc))
        return MetricRecord({"accuracy": acc})

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=clients,
                          min_available_nodes=clients)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(net().state_dict()), num_rounds=rounds,
                       evaluate_fn=evaluate_fn)

    t0 = time.perf_counter()
    run_simulation(server_app=server, client_app=client, num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}})
    wall = time.perf_counter() - t0
    times = [t for _r, t, _a in stamps]
    per_round = [b - a for a, b in zip(times, times[1:])]
    steady = per_round[1:] or per_round
    return {"fit_wall_s": wall, "first_round_s": per_round[0] if per_round else float("nan"),
            "seconds_per_round": sum(steady) / len(steady), "rounds_per_s": len(steady) / sum(steady),
            "final_accuracy": stamps[-1][2] if stamps else float("nan")}


def arithmetic_floor(clients: int, repeats: int = 5) -> dict[str, float]:
    """Seconds per round of the round's dense arithmetic alone, one torch thread, no autograd,
    optimiser, sampling or copies: every client's forward, backward (weight gradients, and the
    hidden layer's input gradient) and SGD update at the engines' batch shape, then the server
    evaluation on the 10,000 images in batches of 2,000. ``per_client_s``: clients one after
    another with 32-row batches (what the loop computes); ``stacked_s``: the same steps with all
    clients stacked into one ``bmm`` per layer (what vmap computes). The best of ``repeats``."""
    import torch

    torch.set_num_threads(1)
    per_client = 10_000 // clients
    steps = -(-per_client // BATCH)
    gen = torch.Generator().manual_seed(0)
    w1, w2 = 0.05 * torch.randn(784, HIDDEN, generator=gen), 0.05 * torch.randn(HIDDEN, 10, generator=gen)
    x = torch.randn(BATCH, 784, generator=gen)
    xs, w1s, w2s = x.expand(clients, -1, -1).contiguous(), w1.expand(clients, -1, -1).contiguous(), \
        w2.expand(clients, -1, -1).contiguous()
    evals = torch.randn(2000, 784, generator=gen)

    def step(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, mm: Any) -> None:
        h = torch.relu(mm(x, w1))
        g = mm(h, w2).softmax(-1)
        dh = mm(g, w2.transpose(-1, -2)) * (h > 0)
        w2.sub_(mm(h.transpose(-1, -2), g), alpha=LR)
        w1.sub_(mm(x.transpose(-1, -2), dh), alpha=LR)

    def evaluate() -> None:
        for _ in range(5):
            torch.relu(evals @ w1) @ w2

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, repeat=repeats, number=1))

    with torch.no_grad():
        loop_s = best(lambda: [step(x, w1, w2, torch.mm) for _ in range(clients * steps)])
        stacked_s = best(lambda: [step(xs, w1s, w2s, torch.bmm) for _ in range(steps)])
        eval_s = best(evaluate)
    return {"per_client_s": loop_s + eval_s, "stacked_s": stacked_s + eval_s, "eval_s": eval_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--clients", type=int, default=CLIENTS)
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {', '.join(ENGINES)}")
    ap.add_argument("--role", default="all", help=argparse.SUPPRESS)
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per engine subprocess")
    args = ap.parse_args()
    if args.role != "all":
        res = (flower_side(args.rounds, args.clients) if args.role == "flower-fedavg"
               else pk_side(args.rounds, args.role, args.clients))
        print("RESULT " + json.dumps(res))
        return
    result: dict[str, Any] = {}
    for engine in [e for e in args.engines.split(",") if e]:
        if engine not in ENGINES:
            sys.exit(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "--role", engine, "--rounds", str(args.rounds),
                                   "--clients", str(args.clients)], capture_output=True, text=True,
                                  timeout=args.timeout)
            lines = [ln[7:] for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            result[engine] = json.loads(lines[-1]) if lines else {"error": proc.stderr[-2000:]}
        except subprocess.TimeoutExpired:
            result[engine] = {"error": f"no result within {args.timeout} s"}
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result[engine]["wall_s"] = time.perf_counter() - t0
        result[engine]["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(engine, json.dumps(result[engine]), file=sys.stderr, flush=True)
    floor = arithmetic_floor(args.clients)
    result["arithmetic_floor"] = floor
    if not args.skip_server:
        result["server_time"] = server_side(max(3, args.rounds // 2))
    print(json.dumps(result, indent=2))
    rate = {e: result[e]["rounds_per_s"] for e in ("fedsim", "fedsim-vmap", "flower-fedavg")
            if "rounds_per_s" in result.get(e, {})}
    if rate:
        print("rounds/s: " + ", ".join(f"{e} {r:.2f} (cpu {result[e]['cpu_s']:.0f} s, wall {result[e]['wall_s']:.0f} s)"
                                        for e, r in rate.items()))
        cpu = {e: result[e]["cpu_s_per_round"] for e in rate if "cpu_s_per_round" in result[e]}
        if len(cpu) == 2:
            print(f"cpu s/round: fedsim {cpu['fedsim']:.3f}, fedsim-vmap {cpu['fedsim-vmap']:.3f} "
                  f"({cpu['fedsim'] / cpu['fedsim-vmap']:.2f}x less CPU per round)")
    best_floor = min(floor["per_client_s"], floor["stacked_s"])
    print(f"arithmetic floor (s/round, one thread): per-client {floor['per_client_s']:.3f}, "
          f"stacked {floor['stacked_s']:.3f} (of which evaluation {floor['eval_s']:.3f})")
    for e in ("fedsim", "fedsim-vmap"):
        if e in rate:
            print(f"{e}: {1 / rate[e]:.3f} s/round = {rate[e] * best_floor:.0%} of the machine's limit "
                  f"(the faster floor / its time); the most any batching could gain: {1 / (rate[e] * best_floor):.2f}x")
    for a, b, goal in (("fedsim-vmap", "fedsim", 2.0), ("fedsim-vmap", "flower-fedavg", 5.0),
                       ("fedsim", "flower-fedavg", None)):
        if a in rate and b in rate:
            ratio = rate[a] / rate[b]
            verdict = "" if goal is None else f" (goal >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'})"
            print(f"{a} / {b}: {ratio:.2f}x{verdict}")


if __name__ == "__main__":
    main()
