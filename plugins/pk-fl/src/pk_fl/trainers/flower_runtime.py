"""Where the Flower apps of :mod:`pk_fl.trainers.flower_bridge` run (optional extra
``pk-fl[flower]``): ``run_inprocess`` (a Grid whose nodes call the ClientApp in this process,
no Ray or sockets) and ``run_ray`` (Flower's own simulation runtime); ``quiet_flower`` keeps
Flower's per-round INFO log out of the way. flwr is imported only inside these functions.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from pk.core.errors import ConfigError
from pk_fl.trainers.flower_bridge import load_flwr


@contextlib.contextmanager
def quiet_flower(level: int = logging.ERROR) -> Iterator[None]:
    """Flower logs every round at INFO; keep its logger at ``level`` inside the block."""
    logger = logging.getLogger("flwr")
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


class _TaskIdentityScope:
    """Sets Flower's process-wide task identity (which message construction reads) as the
    ServerApp runtime would, restoring it afterwards."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id

    def __enter__(self) -> None:
        from flwr.supercore.task_identity import TaskIdentity

        self.saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = self.run_id, 0, 1

    def __exit__(self, *exc: Any) -> None:
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = self.saved


def make_inprocess_grid(client_app: Any, num_nodes: int, *, seed: int = 0, run_id: int = 1) -> Any:
    """A Flower ``Grid`` whose nodes run ``client_app`` in this thread: each message is handed to
    the ClientApp with its node's ``Context`` (``node_config`` = ``{"partition-id", "num-partitions"}``,
    a persistent ``state`` RecordDict), exactly as a SuperNode would, without Ray or sockets.
    Node ids are seeded random 63-bit ints, as Flower's are random."""
    app, _clientapp, serverapp, _strategy = load_flwr()
    import random

    from flwr.supercore.run import Run

    rng = random.Random(seed)
    node_ids = sorted({rng.getrandbits(62) + 1 for _ in range(num_nodes)})
    while len(node_ids) < num_nodes:  # pragma: no cover - collision of 62-bit draws
        node_ids = sorted(set(node_ids) | {rng.getrandbits(62) + 1})
    partitions = rng.sample(range(num_nodes), num_nodes)  # node order does not reveal the partition

    class InProcessGrid(serverapp.Grid):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self._run = Run.create_empty(run_id=run_id)
            self.contexts = {
                node: app.Context(
                    run_id=run_id,
                    node_id=node,
                    node_config={"partition-id": pid, "num-partitions": num_nodes},
                    state=app.RecordDict(),
                    run_config={},
                )
                for node, pid in zip(node_ids, partitions)
            }
            self._replies: dict[str, Any] = {}

        def set_run(self, run: Any) -> None:
            self._run = run

        @property
        def run(self) -> Any:
            return self._run

        def create_message(self, content: Any, message_type: str, dst_node_id: int, group_id: str,
                           ttl: float | None = None) -> Any:
            return app.Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

        def get_node_ids(self) -> Iterable[int]:
            return list(self.contexts)

        def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
            ids = []
            for msg in messages:
                node = msg.metadata.dst_node_id
                if node not in self.contexts:
                    raise RuntimeError(f"message for unknown node {node}")
                msg_id = str(uuid.uuid4())
                msg.metadata.__dict__["_message_id"] = msg_id
                # the node receives its own copy, as it would after (de)serialisation
                received = app.Message(content=copy.deepcopy(msg.content), dst_node_id=node,
                                       message_type=msg.metadata.message_type, group_id=msg.metadata.group_id)
                received.metadata.__dict__["_message_id"] = msg_id
                received.metadata.__dict__["_src_node_id"] = msg.metadata.src_node_id
                self._replies[msg_id] = client_app(received, self.contexts[node])
                ids.append(msg_id)
            return ids

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
            return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

        def send_and_receive(self, messages: Iterable[Any], *, timeout: float | None = None) -> Iterable[Any]:
            return list(self.pull_messages(self.push_messages(messages)))

    return InProcessGrid()


def run_inprocess(server_app: Any, client_app: Any, num_nodes: int, *, seed: int = 0) -> None:
    """Run ``server_app`` against ``num_nodes`` in-process nodes running ``client_app``."""
    app, *_ = load_flwr()
    grid = make_inprocess_grid(client_app, num_nodes, seed=seed)
    context = app.Context(run_id=grid.run.run_id, node_id=0, node_config={}, state=app.RecordDict(), run_config={})
    with _TaskIdentityScope(grid.run.run_id):
        server_app(grid, context)


def run_ray(server_app: Any, client_app: Any, num_nodes: int, *, num_cpus: float = 1.0) -> None:
    """Flower's own simulation runtime (``flwr.simulation.run_simulation``, Ray backend): the
    ClientApps run in Ray actors (other processes), the ServerApp in a thread of this one."""
    try:
        from flwr.simulation import run_simulation
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ConfigError(f"trainer.backend = \"ray\" needs flwr[simulation]: {exc}") from None
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            'trainer.backend = "ray" needs ray (pip install \'flwr[simulation]\'); use backend = "in-process"'
        )
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_nodes,
                   backend_config={"client_resources": {"num_cpus": num_cpus, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": max(1, int(num_cpus)), "include_dashboard": False}})
