"""Flower bridge (optional extra ``pk-fl[flower]``): run any registered pk aggregator as a
Flower strategy (Flower's Message API, ``flwr.serverapp.strategy``, flwr >= 1.20).

``make_strategy(aggregator)`` subclasses Flower's ``FedAvg`` so Flower keeps doing client
sampling and message construction, and overrides two methods:

- ``configure_train`` remembers the global ``ArrayRecord`` it broadcasts (Flower's
  ``aggregate_train`` never receives the current global model; SmartFL and Dynafed need it);
- ``aggregate_train`` drops error replies, turns each reply into a pk update
  ``(state_dict, num_examples, {"client_id": str(src_node_id)})`` sorted by client id, calls
  ``aggregator.aggregate(global_state, updates, state)`` and returns the new ``ArrayRecord``
  and a ``MetricRecord`` with the applied weights as ``"w/<client id>"``.

Each reply must hold exactly one ArrayRecord and one MetricRecord containing
``weighted_by_key`` (default "num-examples"), as for Flower's own FedAvg. flwr is imported
only inside these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pk.core.errors import ConfigError


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


def make_strategy(aggregator: Any, **fedavg_kwargs: Any) -> Any:
    """A ``flwr.serverapp.strategy.FedAvg`` subclass instance that aggregates with ``aggregator``."""
    try:
        from flwr.app import ArrayRecord, MetricRecord
        from flwr.serverapp.strategy import FedAvg
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ConfigError(f"the Flower bridge needs flwr (pip install 'pk-fl[flower]'): {exc}") from None

    class PkStrategy(FedAvg):  # type: ignore[misc, valid-type]
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
                raise ConfigError("aggregate_train was called before configure_train; the bridge needs the global model")
            updates = []
            for msg in good:
                arrays = list(msg.content.array_records.values())
                metrics = list(msg.content.metric_records.values())
                if len(arrays) != 1 or len(metrics) != 1 or self.weighted_by_key not in metrics[0]:
                    raise ConfigError(f"node {msg.metadata.src_node_id}: a reply needs one ArrayRecord and one MetricRecord "
                                      f"with {self.weighted_by_key!r}")
                updates.append((arrays[0].to_torch_state_dict(), float(metrics[0][self.weighted_by_key]),
                                {"client_id": str(msg.metadata.src_node_id)}))
            updates.sort(key=lambda u: u[2]["client_id"])
            new_state, self.pk_state = self.pk_aggregator.aggregate(self.global_state, updates, self.pk_state)
            applied = getattr(self.pk_aggregator, "last_client_weights", None)
            if not applied:
                total = sum(u[1] for u in updates)
                applied = [u[1] / total for u in updates]
            self.last_client_weights = {u[2]["client_id"]: float(w) for u, w in zip(updates, applied)}
            record = MetricRecord({f"w/{cid}": w for cid, w in self.last_client_weights.items()})
            return ArrayRecord(new_state), record

    return PkStrategy(**fedavg_kwargs)
