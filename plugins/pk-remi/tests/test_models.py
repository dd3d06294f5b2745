"""Routing matrices, serving API and the switchable loss of the three backbones."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_remi.models import build_comirec_dr, build_comirec_sa, build_mind
from pk_remi.plugin import MultiInterestConfig, REMIConfig

from pk.core.contracts import DatasetInfo

INFO = DatasetInfo(task="candidate-matching", num_items=30, max_len=8)
BUILDERS = {"comirec-sa": build_comirec_sa, "comirec-dr": build_comirec_dr, "mind": build_mind}


def _seq(seed: int, b: int = 4, length: int = 8, num_items: int = 30) -> torch.Tensor:
    """Right-padded histories [B, L] with 1..L real items per row."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, num_items + 1, (b, length), generator=g)
    lengths = torch.randint(1, length + 1, (b,), generator=g)
    return seq * (torch.arange(length)[None, :] < lengths[:, None])


@pytest.mark.parametrize("name", list(BUILDERS))
@given(seed=st.integers(0, 2**31 - 1))
def test_routing_shape_zero_on_pads_and_stochastic_where_documented(name, seed):
    torch.manual_seed(0)
    model = BUILDERS[name](MultiInterestConfig(hidden=8, interests=3), INFO).eval()
    seq = _seq(seed)
    with torch.no_grad():
        interests, routing = model.extract(seq)
    assert interests.shape == (4, 3, 8) and routing.shape == (4, 3, 8)
    pads = (seq == 0)[:, None, :].expand_as(routing)
    assert bool((routing[pads] == 0).all()) and bool((routing >= 0).all())
    sums = routing.sum(-1)
    if model.routing_is_stochastic:
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    else:  # softmax over all L positions, then pads zeroed: 1 without padding, < 1 with
        full = (seq != 0).all(1)
        assert torch.allclose(sums[full], torch.ones_like(sums[full]), atol=1e-5)
        assert bool((sums[~full] < 1).all())


@pytest.mark.parametrize("name", list(BUILDERS))
def test_predict_ignores_padding_width_and_is_deterministic(name):
    torch.manual_seed(0)
    model = BUILDERS[name](MultiInterestConfig(hidden=8, interests=3), INFO).eval()
    seq = _seq(1)
    with torch.no_grad():
        a = model.predict({"seq": seq})
        b = model.predict({"seq": seq[:, :6] if bool((seq[:, 6:] == 0).all()) else seq})
        c = model.predict({"seq": seq})
    assert torch.equal(a, c) and torch.allclose(a, b, atol=1e-6)


def test_sa_interests_are_routing_weighted_item_embeddings():
    torch.manual_seed(0)
    model = build_comirec_sa(MultiInterestConfig(hidden=8, interests=3), INFO).eval()
    seq = _seq(2)
    interests, routing = model.extract(seq)
    emb = model.embeddings(seq) * (seq != 0)[..., None]
    assert torch.allclose(interests, torch.einsum("bkl,blh->bkh", routing, emb), atol=1e-6)


def test_dr_routing_detaches_predictions_before_the_last_iteration():
    """Routing logits are built from detached predictions, so the routing c carries no
    gradient at all (hence RR on ComiRec-DR/MIND cannot train anything; see the README),
    while the interests do reach the bilinear map through the last iteration."""
    torch.manual_seed(0)
    model = build_comirec_dr(MultiInterestConfig(hidden=8, interests=3, routing_iters=3), INFO)
    interests, routing = model.extract(_seq(3))
    assert not routing.requires_grad
    assert torch.autograd.grad(interests.sum(), model.w)[0].abs().sum() > 0
    sa = build_comirec_sa(MultiInterestConfig(hidden=8, interests=3), INFO)
    assert sa.extract(_seq(3))[1].requires_grad, "ComiRec-SA's routing A is trainable (RR acts on it)"


def _batch(seed: int, negatives: int = 20):
    g = torch.Generator().manual_seed(seed)
    return {"seq": _seq(seed), "target": torch.randint(1, 31, (4,), generator=g),
            "negatives": torch.randint(1, 31, (negatives,), generator=g)}


def test_loss_switches_ihn_and_rr_independently():
    batch = _batch(4)
    losses = {}
    for beta, lam in ((0.0, 0.0), (1.0, 0.0), (0.0, 100.0), (1.0, 100.0)):
        torch.manual_seed(0)
        model = build_comirec_sa(MultiInterestConfig(hidden=8, interests=3, ihn_beta=beta, rr_lambda=lam), INFO)
        losses[(beta, lam)] = float(model.loss(batch).detach())
        parts = model.last_loss_parts
        assert (parts["rr"] > 0) == (lam > 0)
    assert losses[(1.0, 0.0)] > losses[(0.0, 0.0)]
    assert losses[(0.0, 100.0)] > losses[(0.0, 0.0)]
    torch.manual_seed(0)
    remi = build_comirec_sa(REMIConfig(hidden=8, interests=3), INFO)
    assert float(remi.loss(batch).detach()) == pytest.approx(losses[(1.0, 100.0)], rel=1e-6)


def test_history_wider_than_max_len_is_refused():
    model = build_comirec_sa(MultiInterestConfig(hidden=8, interests=2), INFO)
    with pytest.raises(ValueError, match="max_len"):
        model.predict({"seq": torch.ones(2, 9, dtype=torch.long)})


@pytest.mark.parametrize("name", ["comirec-dr", "mind"])
def test_rr_leaves_capsule_gradients_unchanged(name):
    """Consequence of the stop-gradient routing: RR on c changes the loss value, never a
    gradient, so DR/MIND + RR trains exactly like the backbone (documented in the README)."""
    batch = _batch(5)
    grads = []
    for lam in (0.0, 100.0):
        torch.manual_seed(0)
        model = BUILDERS[name](MultiInterestConfig(hidden=8, interests=3, rr_lambda=lam), INFO).eval()
        model.loss(batch).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])
