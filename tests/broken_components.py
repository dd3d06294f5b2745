"""Deliberately broken components used by test_contract_suite_catches.py and test_contract_suite_catches_more.py."""

from __future__ import annotations

import os

import torch
from torch import nn

from pk.core.base import TensorBundle
from pk.core.builtins.components import FedAvg, SupervisedTrainer, build_synthetic_classification
from pk.core.builtins.plugin import SyntheticClassificationConfig
from pk.core.contracts import DatasetInfo


class MutatingAggregator(FedAvg):
    def aggregate(self, global_state, updates, state=None):
        out, st = super().aggregate(global_state, updates, state)
        for k in global_state:
            global_state[k].add_(1.0)
        return out, st


class FirstClientAggregator:
    kind = "weights"

    def __init__(self, config=None, context=None):
        pass

    def aggregate(self, global_state, updates, state=None):
        if not updates or sum(w for _, w, _ in updates) <= 0:
            raise ValueError("empty")
        return {k: v.clone() for k, v in updates[0][0].items()}, state


class LenientAggregator(FedAvg):
    def aggregate(self, global_state, updates, state=None):
        if not updates:
            return dict(global_state), state
        return super().aggregate(global_state, updates, state)


class MeanClaimingRobust(FedAvg):
    robust = True


class LeakyCalibrator:
    def __init__(self, config=None):
        pass

    def calibrate(self, attn, mask, *, layer=0):
        return torch.full_like(attn, 1.0 / attn.shape[-1])


class Noisy(nn.Module):
    def __init__(self, d, c):
        super().__init__()
        self.lin = nn.Linear(d, c)

    def predict(self, batch):
        return self.lin(batch["x"]) + torch.randn(batch["x"].shape[0], self.lin.out_features)

    def loss(self, batch):
        return nn.functional.cross_entropy(self.predict(batch), batch["y"])


def build_noisy(config, info):
    return Noisy(info.num_features, info.num_classes)


class OneLogit(Noisy):
    def predict(self, batch):
        return self.lin(batch["x"])[:, :1]


def build_wrong_shape(config, info):
    return OneLogit(info.num_features, info.num_classes)


def build_leaky(config, *, root=None, seed=0):
    good = build_synthetic_classification(SyntheticClassificationConfig(), seed=seed)
    tensors = dict(good.tensors)
    tensors["test"] = {k: torch.cat([v, good.tensors["train"][k][:5]]) for k, v in good.tensors["test"].items()}
    return TensorBundle(info=DatasetInfo(task="classification", num_features=good.info.num_features,
                                         num_classes=good.info.num_classes), tensors=tensors)


class OutOfRangeEvaluator:
    metrics = {"accuracy": (0.0, 1.0, True)}

    def __init__(self, config=None):
        pass

    def evaluate(self, model, data, run):
        return {"accuracy": 2.0}


def build_mlp_no_calibrator(config, info):
    """Declares accepts=("calibrator",) in the test, but its signature takes no calibrator."""
    from pk.core.builtins.components import MLP

    return MLP(info.num_features, info.num_classes, [config.width], 0.0, "relu")


class UnusedParameter(nn.Module):
    """Has a layer its loss never uses: no gradient reaches it."""

    def __init__(self, d, c):
        super().__init__()
        self.lin = nn.Linear(d, c)
        self.forgotten = nn.Linear(d, c)

    def predict(self, batch):
        return self.lin(batch["x"])

    def loss(self, batch):
        return nn.functional.cross_entropy(self.predict(batch), batch["y"])


def build_unused_parameter(config, info):
    return UnusedParameter(info.num_features, info.num_classes)


class BatchCentred(UnusedParameter):
    """Centres features on the batch mean even in eval mode: rows leak into each other."""

    def predict(self, batch):
        x = batch["x"]
        return self.lin(x - x.mean(0, keepdim=True))


def build_batch_centred(config, info):
    return BatchCentred(info.num_features, info.num_classes)


class TinyGraph(dict):
    """The few parts of a PyG Data a node-classification check touches."""

    @property
    def num_nodes(self):
        return self["x"].shape[0]

    @property
    def edge_index(self):
        return self["edge_index"]

    def clone(self):
        return TinyGraph({k: v.clone() for k, v in self.items()})


class TinyGraphBundle(TensorBundle):
    def loader(self, split, batch_size, *, shuffle=False, generator=None):
        yield self.tensors["graph"]


def build_tiny_graph(config, *, root=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = 12
    x = torch.randn(n, 4, generator=g)
    src = torch.arange(n)
    edge_index = torch.stack([torch.cat([src, (src + 1) % n]), torch.cat([(src + 1) % n, src])])
    graph = TinyGraph(x=x, edge_index=edge_index, y=torch.randint(0, 2, (n,), generator=g))
    info = DatasetInfo(task="node-classification", num_features=4, num_classes=2)
    return TinyGraphBundle(info=info, tensors={"graph": graph}, params={"seed": seed})


class IndexAware(nn.Module):
    """Adds each node's position in the numbering to its logits: not permutation-equivariant."""

    def __init__(self, d, c):
        super().__init__()
        self.lin = nn.Linear(d, c)

    def predict(self, graph):
        position = torch.arange(graph.num_nodes, dtype=torch.float32)[:, None] / graph.num_nodes
        return self.lin(graph["x"]) + position

    def loss(self, graph):
        return nn.functional.cross_entropy(self.predict(graph), graph["y"])


def build_index_aware(config, info):
    return IndexAware(info.num_features, info.num_classes)


def build_neighbour_mean(config, info):
    """A good twin of IndexAware: mean over each node and its neighbours, then linear."""

    class NeighbourMean(IndexAware):
        def predict(self, graph):
            x, (src, dst) = graph["x"], graph["edge_index"]
            agg = x.clone().index_add_(0, dst, x[src])
            deg = torch.ones(x.shape[0]).index_add_(0, dst, torch.ones(src.shape[0]))
            return self.lin(agg / deg[:, None])

    return NeighbourMean(info.num_features, info.num_classes)


def make_eager_trainer():
    """A supervised trainer that takes one optimiser step before looking at its step budget."""
    from pk.core.builtins.components import SupervisedTrainer
    from pk.core.torch_helpers import make_optimizer

    class EagerTrainer(SupervisedTrainer):
        def fit(self, model, data, run):
            opt = make_optimizer("sgd", model.parameters(), 0.5, 0.0)
            batch = next(iter(data.loader("train", 8)))
            opt.zero_grad()
            model.loss(batch).backward()
            opt.step()
            return super().fit(model, data, run)

    return EagerTrainer


def EagerTrainer(config):
    return make_eager_trainer()(config)


def build_tiny_seq(config, *, root=None, seed=0):
    """12 users' left-padded item sequences (width 6, 1..6 real items) over 20 items."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 7, (12,), generator=g)
    seq = torch.zeros(12, 6, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        seq[row, 6 - n:] = torch.randint(1, 21, (n,), generator=g)
    split = {"seq": seq, "target": torch.randint(1, 21, (12,), generator=g)}
    return TensorBundle(info=DatasetInfo(task="next-item", num_items=20, max_len=6),
                        tensors={"train": split, "valid": split, "test": split})


class BagOfItems(nn.Module):
    """Scores = mean embedding of the real items: blind to padding (the good twin)."""

    def __init__(self, num_items, width=8):
        super().__init__()
        self.emb = nn.Embedding(num_items + 1, width, padding_idx=0)

    def state(self, seq):
        real = (seq != 0).float().unsqueeze(-1)
        return (self.emb(seq) * real).sum(1) / real.sum(1).clamp_min(1.0)

    def predict(self, batch):
        scores = self.state(batch["seq"]) @ self.emb.weight.T
        return scores.index_fill(1, torch.tensor([0]), float("-inf"))

    def loss(self, batch):
        return nn.functional.cross_entropy(self.predict(batch)[:, 1:], batch["target"] - 1)


class ColumnPositions(BagOfItems):
    """Adds a position table indexed by the batch's column: more padding shifts every item."""

    def __init__(self, num_items, width=8):
        super().__init__(num_items, width)
        self.pos = nn.Embedding(16, width)

    def state(self, seq):
        cols = torch.arange(seq.shape[1]).expand_as(seq)
        real = (seq != 0).float().unsqueeze(-1)
        return ((self.emb(seq) + self.pos(cols)) * real).sum(1) / real.sum(1).clamp_min(1.0)


def build_bag_of_items(config, info):
    return BagOfItems(info.num_items)


def build_column_positions(config, info):
    return ColumnPositions(info.num_items)


class PairsWidth(nn.Module):
    """Sums hidden units in pairs: any odd ``width`` (which its bounds allow) breaks predict."""

    def __init__(self, num_features, num_classes, width):
        super().__init__()
        self.lin = nn.Linear(num_features, width)
        self.head = nn.Linear(max(1, width // 2), num_classes)

    def predict(self, batch):
        h = self.lin(batch["x"])
        return self.head(h.view(h.shape[0], -1, 2).sum(-1))

    def loss(self, batch):
        return nn.functional.cross_entropy(self.predict(batch), batch["y"])


def build_pairs_width(config, info):
    return PairsWidth(info.num_features, info.num_classes, config.width)


# -- broken components for the checks test_contract_suite_catches_more.py covers ------------
class UnnormalisedSum:
    """Sums w_i * state_i without dividing by the total weight: scaling the weights scales the result."""

    kind = "weights"

    def __init__(self, config=None, context=None):
        pass

    def aggregate(self, global_state, updates, state=None):
        if not updates:
            raise ValueError("no updates")
        return {k: sum(s[k] * float(w) for s, w, _ in updates) for k in global_state}, state


class GlobalAsClient(FedAvg):
    """Counts the global state as one more client of weight 1: identical updates do not come back unchanged."""

    def aggregate(self, global_state, updates, state=None):
        return super().aggregate(global_state, [*updates, (dict(global_state), 1.0, {})], state)


class SharpeningNeutral:
    """Declares ``neutral = True`` but squares and renormalises the attention (sharpens it)."""

    neutral = True

    def __init__(self, config=None):
        pass

    def calibrate(self, attn, mask, *, layer=0):
        sharp = attn * attn
        return sharp / sharp.sum(-1, keepdim=True).clamp_min(1e-12)


def build_unseeded(config, *, root=None, seed=0):
    """Ignores ``seed`` and draws from the global torch RNG: the same seed gives different data."""
    out = {}
    for split in ("train", "valid", "test"):
        out[split] = {"x": torch.randn(20, 4), "y": torch.randint(0, 2, (20,))}
    return TensorBundle(info=DatasetInfo(task="classification", num_features=4, num_classes=2), tensors=out)


def build_raw_item_ids(config, *, root=None, seed=0):
    """Keeps the raw item ids (1001..1020) instead of renumbering them 1..num_items."""
    good = build_tiny_seq(config, seed=seed)
    tensors = {s: {k: torch.where(v > 0, v + 1000, v) for k, v in t.items()} for s, t in good.tensors.items()}
    return TensorBundle(info=good.info, tensors=tensors)


def build_misspelt_task(config, *, root=None, seed=0):
    """Its info.task ("classfication") is not the task it is registered for ("classification")."""
    good = build_synthetic_classification(SyntheticClassificationConfig(num_samples=40), seed=seed)
    info = DatasetInfo(task="classfication", num_features=good.info.num_features, num_classes=good.info.num_classes)
    return TensorBundle(info=info, tensors=good.tensors)


class UnsavedProjection(UnusedParameter):
    """Its predict uses a random projection kept as a plain tensor attribute, not a buffer: not saved."""

    def __init__(self, d, c):
        super().__init__(d, c)
        self.proj = torch.randn(d, d)

    def predict(self, batch):
        return self.lin(batch["x"] @ self.proj)


def build_unsaved_projection(config, info):
    return UnsavedProjection(info.num_features, info.num_classes)


class UrandomShuffleTrainer(SupervisedTrainer):
    """Seeds its shuffle generator from os.urandom instead of the run seed: two runs differ."""

    def prepare(self, model, data, run):
        run.generator("shuffle").manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)


class ReseedingTrainer(SupervisedTrainer):
    """Re-seeds its shuffle generator in prepare (after the restore): a resumed run replays epoch 1's order."""

    def prepare(self, model, data, run):
        run.generator("shuffle").manual_seed(run.seed)
