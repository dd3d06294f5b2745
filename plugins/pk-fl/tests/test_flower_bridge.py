"""The Flower bridge driven through Flower's own Message API, in process (no Ray needed).
Skips cleanly when flwr (the ``pk-fl[flower]`` extra) is not installed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

flwr = pytest.importorskip("flwr", reason="flwr not installed (pip install 'pk-fl[flower]')")

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from pk_fl.aggregators import CoordinateMedian  # noqa: E402
from pk_fl.flower import make_strategy  # noqa: E402

from pk.core.builtins.components import FedAvg  # noqa: E402


def state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 2, generator=g), "b": torch.randn(3, generator=g)}


class FakeGrid:
    """Enough of flwr's Grid for FedAvg.configure_train (node ids and message construction)."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes
        self.run_id = 1

    def get_node_ids(self) -> list[int]:
        return self.nodes


def replies_for(messages: list[Message], states: list[dict[str, torch.Tensor]], sizes: list[int]) -> list[Message]:
    out = []
    for msg, s, n in zip(messages, states, sizes):
        content = RecordDict({"arrays": ArrayRecord(s), "metrics": MetricRecord({"num-examples": n})})
        out.append(Message(content=content, reply_to=msg))
    return out


@pytest.fixture(autouse=True)
def server_identity(monkeypatch):
    """Flower's ServerApp runtime sets the task identity that message construction reads."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 0)):
        monkeypatch.setattr(TaskIdentity, attr, value)


@pytest.mark.parametrize("aggregator", [FedAvg(None), CoordinateMedian(SimpleNamespace())])
def test_bridge_matches_in_process_aggregator(aggregator):
    glob = state(0)
    strategy = make_strategy(aggregator, min_train_nodes=3, min_available_nodes=3, fraction_train=1.0)
    messages = list(strategy.configure_train(1, ArrayRecord(glob), ConfigRecord({}), FakeGrid([11, 12, 13])))
    assert strategy.global_state is not None and torch.equal(strategy.global_state["w"], glob["w"])
    states, sizes = [state(i) for i in (1, 2, 3)], [10, 30, 60]
    by_node = {m.metadata.dst_node_id: m for m in messages}
    replies = replies_for([by_node[n] for n in (11, 12, 13)], states, sizes)
    arrays, metrics = strategy.aggregate_train(1, replies)
    got = arrays.to_torch_state_dict()
    want, _ = type(aggregator)(None).aggregate(glob, [(s, float(n), {}) for s, n in zip(states, sizes)])
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    assert sum(float(v) for v in metrics.values()) == pytest.approx(1.0)
