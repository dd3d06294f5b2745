"""Flower bridge (optional extra ``pk-fl[flower]``; flwr >= 1.20 Message API, tested with 1.42).

Two levels:

1. **Any pk aggregator as a Flower strategy** (``make_strategy``): subclasses Flower's ``FedAvg``
   so Flower keeps sampling and message construction; ``configure_train`` remembers the global
   ``ArrayRecord`` it broadcasts (Flower's ``aggregate_train`` never receives it; SmartFL and
   Dynafed need it) and ``aggregate_train`` turns the replies into pk updates
   ``(state_dict, num_examples, {"client_id": str(src_node_id), "num_examples": n})`` sorted by
   client id, calls ``aggregator.aggregate`` and returns the new ``ArrayRecord`` plus a
   ``MetricRecord`` with the applied weights as ``"w/<client id>"`` and the clients'
   example-weighted metrics. Each reply must hold one ArrayRecord and one MetricRecord with
   ``weighted_by_key`` (default "num-examples"), as for Flower's own FedAvg.

2. **pk's federated simulation as a Flower app** (``make_client_app``, ``make_server_app``,
   ``run_inprocess``, ``run_ray``; the trainer ``flower`` in :mod:`pk_fl.trainers.flower`). The
   ClientApp wraps pk's client trainer (:func:`pk_fl.trainers.rounds.local_train`, label attacks
   included) and answers a ``query`` message with its partition id; the ServerApp builds the
   same partition, asks every node for its partition id, then runs :class:`FedSimStrategy`:
   the fedsim round (seeded client sample, model attacks, weights, the pk aggregator,
   :func:`pk_fl.trainers.rounds.server_step`) with Flower doing the messaging. With the same config
   and seed the result equals ``fedsim``'s (same derived RNG per round and client).

flwr is imported only inside these functions and classes' factories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pk.core.errors import ConfigError

TRAIN_RECORD, CONFIG_RECORD, METRIC_RECORD = "arrays", "config", "metrics"


def load_flwr() -> Any:
    """flwr's ``app``, ``clientapp``, ``serverapp`` and ``strategy`` modules (ConfigError without flwr)."""
    try:
        import flwr  # noqa: F401
        from flwr import app, clientapp, serverapp
        from flwr.serverapp import strategy
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ConfigError(f"the Flower bridge needs flwr (pip install 'pk-fl[flower]'): {exc}") from None
    return app, clientapp, serverapp, strategy


def build_aggregator(name: str, params: dict[str, Any] | None = None, context: Any = None) -> Any:
    """Build the registered aggregator ``name`` with config ``params`` (validated like a TOML
    ``[aggregator]`` table) and an optional :class:`pk.core.contracts.ServerContext`."""
    import dataclasses

    from pk.core.config import validate_params
    from pk.core.plugins import get_registry

    reg = get_registry().get("aggregator", name)
    values = validate_params(params or {}, reg.config, "aggregator")
    config = reg.config(**values) if reg.config is not None and dataclasses.is_dataclass(reg.config) else None
    return reg.load()(config, context=context)


def _weighted_metrics(metrics: list[Any], key: str) -> dict[str, float]:
    """Example-weighted mean of every numeric client metric except ``key``."""
    total = sum(float(m[key]) for m in metrics)
    names = sorted({k for m in metrics for k in m if k != key})
    out = {}
    for name in names:
        vals = [(float(m[name]), float(m[key])) for m in metrics if name in m and isinstance(m[name], (int, float))]
        if vals and total > 0:
            out[name] = sum(v * n for v, n in vals) / total
    return out


def make_strategy(aggregator: Any, **fedavg_kwargs: Any) -> Any:
    """A ``flwr.serverapp.strategy.FedAvg`` subclass instance that aggregates with ``aggregator``."""
    app, _clientapp, _serverapp, strategy = load_flwr()
    ArrayRecord, MetricRecord = app.ArrayRecord, app.MetricRecord

    class PkStrategy(strategy.FedAvg):  # type: ignore[misc, name-defined]
        """Flower FedAvg whose aggregation step is a pk aggregator."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.pk_aggregator = aggregator
            self.pk_state: Any = None
            self.global_state: dict[str, Any] | None = None
            self.last_client_weights: dict[str, float] = {}

        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
            self.global_state = arrays.to_torch_state_dict()
            return super().configure_train(server_round, arrays, config, grid)

        def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
            good = [r for r in replies if not r.has_error()]
            if not good:
                return None, None
            if self.global_state is None:
                raise ConfigError(
                    "aggregate_train was called before configure_train; the bridge needs the global model"
                )
            updates, client_metrics = [], []
            for msg in good:
                arrays = list(msg.content.array_records.values())
                metrics = list(msg.content.metric_records.values())
                if len(arrays) != 1 or len(metrics) != 1 or self.weighted_by_key not in metrics[0]:
                    raise ConfigError(
                        f"node {msg.metadata.src_node_id}: a reply needs one ArrayRecord and one MetricRecord "
                        f"with {self.weighted_by_key!r}"
                    )
                n = float(metrics[0][self.weighted_by_key])
                cid = str(msg.metadata.src_node_id)
                updates.append((arrays[0].to_torch_state_dict(), n, {"client_id": cid, "num_examples": int(n)}))
                client_metrics.append(dict(metrics[0]))
            order = sorted(range(len(updates)), key=lambda i: updates[i][2]["client_id"])
            updates = [updates[i] for i in order]
            new_state, self.pk_state = self.pk_aggregator.aggregate(self.global_state, updates, self.pk_state)
            applied = getattr(self.pk_aggregator, "last_client_weights", None)
            if not applied:
                total = sum(u[1] for u in updates)
                applied = [u[1] / total for u in updates]
            self.last_client_weights = {u[2]["client_id"]: float(w) for u, w in zip(updates, applied)}
            record = {f"w/{cid}": w for cid, w in self.last_client_weights.items()}
            record.update(_weighted_metrics(client_metrics, self.weighted_by_key))
            return ArrayRecord(new_state), MetricRecord(record)

    return PkStrategy(**fedavg_kwargs)


# -- pk's simulation as a Flower app ---------------------------------------------------------
def make_client_app(cfg: Any, fed: Any, build_model: Callable[[], Any], seed: int, device: str = "cpu") -> Any:
    """A Flower ``ClientApp`` running pk's client trainer on the node's partition.

    ``train`` messages carry the global ArrayRecord and a ConfigRecord with ``server-round`` and
    ``partition-id`` (checked against the node's own ``node_config["partition-id"]``); the reply
    holds the trained ArrayRecord and a MetricRecord with ``num-examples`` and ``client_loss``.
    A malicious partition (client behaviour) trains on poisoned labels for a label attack; model
    attacks act in the server's attack layer (:func:`pk_fl.trainers.rounds.server_step`), because LIE
    needs the round's benign updates. ``query`` messages are answered with the partition id.
    Clients are stateless (a persistent client optimiser is refused by the trainer)."""
    app, clientapp, _serverapp, _strategy = load_flwr()
    from pk.core.seed import derive_seed
    from pk_fl.trainers.attacks import LABEL_ATTACKS
    from pk_fl.trainers.rounds import local_train

    client_app = clientapp.ClientApp()
    workers: dict[str, Any] = {}

    def worker() -> Any:
        if "model" not in workers:
            workers["model"] = build_model()
        return workers["model"]

    def node_partition(context: Any) -> int:
        return int(context.node_config["partition-id"])

    @client_app.train()
    def train(msg: Any, context: Any) -> Any:
        pid = node_partition(context)
        config = msg.content[CONFIG_RECORD]
        if int(config.get("partition-id", pid)) != pid:
            raise RuntimeError(f"node with partition {pid} got the message for partition {config['partition-id']}")
        rnd = int(config["server-round"])
        global_state = msg.content[TRAIN_RECORD].to_torch_state_dict()
        label_attack = cfg.attack if pid in fed.malicious and cfg.attack in LABEL_ATTACKS else "none"
        state, _opt, loss = local_train(
            cfg,
            worker(),
            global_state,
            fed.shards[pid],
            num_classes=fed.num_classes,
            label_attack=label_attack,
            seed=derive_seed(seed, "fl-client", str(rnd), str(pid)),
            device=device,
        )
        content = app.RecordDict(
            {
                TRAIN_RECORD: app.ArrayRecord(state),
                METRIC_RECORD: app.MetricRecord({"num-examples": int(fed.sizes[pid]), "client_loss": loss}),
            }
        )
        return app.Message(content=content, reply_to=msg)

    @client_app.query()
    def query(msg: Any, context: Any) -> Any:
        pid = node_partition(context)
        content = app.RecordDict(
            {METRIC_RECORD: app.MetricRecord({"partition-id": pid, "num-examples": int(fed.sizes[pid])})}
        )
        return app.Message(content=content, reply_to=msg)

    return client_app


def discover_partitions(grid: Any, expected: int, timeout: float = 600.0) -> dict[int, int]:
    """Wait until ``expected`` nodes are connected, ask each for its partition id (a ``query``
    message); return ``{partition: node}``."""
    import time

    app, *_ = load_flwr()
    deadline = time.monotonic() + timeout
    nodes = list(grid.get_node_ids())
    while len(nodes) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {expected} Flower nodes connected within {timeout:.0f} s")
        time.sleep(0.2)
        nodes = list(grid.get_node_ids())
    messages = [app.Message(content=app.RecordDict({CONFIG_RECORD: app.ConfigRecord({})}), message_type="query",
                            dst_node_id=node) for node in nodes]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    out: dict[int, int] = {}
    for reply in replies:
        if reply.has_error():
            raise RuntimeError(f"node {reply.metadata.src_node_id} failed the partition query: {reply.error}")
        out[int(reply.content[METRIC_RECORD]["partition-id"])] = int(reply.metadata.src_node_id)
    if len(out) != len(nodes):
        raise RuntimeError(f"{len(nodes)} nodes but {len(out)} distinct partition ids answered")
    return out


def make_fedsim_strategy(cfg: Any, fed: Any, aggregator: Any, seed: int, *,
                         on_round: Callable[[int, dict[str, float]], None] | None = None) -> Any:
    """A Flower strategy that runs fedsim's round: ``partitions`` (``{partition id: node id}``)
    must be set before ``start``. Rounds sample partitions with fedsim's seeded sampler; a
    sampled partition without examples sends nothing and contributes the global state, as in
    fedsim; a failed reply fails the run. ``on_round(rnd, metrics)`` receives the round's train
    metrics (client loss, malicious weight, ``agg_*``)."""
    app, _clientapp, _serverapp, strategy = load_flwr()
    import numpy as np

    from pk_fl.trainers.rounds import clone_state, round_generator, sample_clients, server_step

    class FedSimStrategy(strategy.FedAvg):  # type: ignore[misc, name-defined]
        """fedsim's round as a Flower strategy (see :func:`make_fedsim_strategy`)."""

        def __init__(self) -> None:
            super().__init__(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_evaluate_nodes=0,
                             min_available_nodes=1)
            self.partitions: dict[int, int] = {}
            self.agg_state: Any = None
            self.global_state: dict[str, Any] | None = None
            self.sampled: list[int] = []
            self.applied: list[float] = []

        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
            if len(self.partitions) != cfg.num_clients:
                raise RuntimeError(f"{len(self.partitions)} partitions known, trainer.num_clients = {cfg.num_clients}; "
                                   "start one node per client")
            self.global_state = clone_state(arrays.to_torch_state_dict())
            self.sampled = sample_clients(
                cfg.num_clients, cfg.participation, round_generator(seed, "fl-sampling", server_round)
            )
            messages = []
            for pid in self.sampled:
                if fed.sizes[pid] == 0:
                    continue
                record = app.RecordDict({TRAIN_RECORD: arrays, CONFIG_RECORD: app.ConfigRecord(
                    {"server-round": server_round, "partition-id": pid})})
                messages.append(app.Message(content=record, message_type="train", dst_node_id=self.partitions[pid],
                                            group_id=str(server_round)))
            return messages

        def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
            assert self.global_state is not None
            by_node = {node: pid for pid, node in self.partitions.items()}
            states: dict[int, dict[str, Any]] = {}
            losses = []
            for reply in replies:
                if reply.has_error():
                    raise RuntimeError(f"round {server_round}: node {reply.metadata.src_node_id} failed: {reply.error}")
                pid = by_node[int(reply.metadata.src_node_id)]
                states[pid] = reply.content[TRAIN_RECORD].to_torch_state_dict()
                losses.append(float(reply.content[METRIC_RECORD]["client_loss"]))
            expected = [pid for pid in self.sampled if fed.sizes[pid] > 0]
            if sorted(states) != expected:
                raise RuntimeError(
                    f"round {server_round}: replies from partitions {sorted(states)}, expected {expected}"
                )
            ordered = [states[pid] if pid in states else clone_state(self.global_state) for pid in self.sampled]
            new_state, self.agg_state, metrics, self.applied = server_step(
                cfg,
                fed,
                aggregator,
                self.agg_state,
                self.global_state,
                self.sampled,
                ordered,
                rnd=server_round,
                seed=seed,
            )
            metrics = {"client_loss": float(np.mean(losses)) if losses else 0.0, **metrics}
            if on_round is not None:
                on_round(server_round, metrics)
            record = {f"w/{pid}": float(w) for pid, w in zip(self.sampled, self.applied)}
            return app.ArrayRecord(new_state), app.MetricRecord({**record, **metrics})

        def configure_evaluate(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Iterable[Any]:
            return []

    return FedSimStrategy()


def make_server_app(strategy: Any, initial_state: dict[str, Any], rounds: int, num_nodes: int,
                    evaluate_fn: Callable[[int, Any], Any] | None = None, result: dict[str, Any] | None = None) -> Any:
    """A Flower ``ServerApp`` that learns the node -> partition map, then runs ``strategy``;
    the final ``flwr`` Result lands in ``result["flower"]`` when a dict is given."""
    app, _clientapp, serverapp, _strategy = load_flwr()
    server_app = serverapp.ServerApp()

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        strategy.partitions = discover_partitions(grid, num_nodes)
        out = strategy.start(grid=grid, initial_arrays=app.ArrayRecord(initial_state), num_rounds=rounds,
                             evaluate_fn=evaluate_fn)
        if result is not None:
            result["flower"] = out

    return server_app
