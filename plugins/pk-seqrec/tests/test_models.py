"""Model properties: causality, padding invariance, the attention seam, BERT4Rec masking."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_seqrec.models.bert4rec import BERT4Rec, cloze_mask
from pk_seqrec.models.encoder import masked_softmax
from pk_seqrec.models.gru4rec import GRU4Rec
from pk_seqrec.models.sasrec import SASRec
from torch import nn

N, L = 30, 8
torch.set_num_threads(1)


def _left(items: list[int], width: int = L) -> torch.Tensor:
    return torch.tensor([[0] * (width - len(items)) + items])


def _right(items: list[int], width: int = L) -> torch.Tensor:
    return torch.tensor([items + [0] * (width - len(items))])


def _models() -> list[nn.Module]:
    torch.manual_seed(0)
    return [SASRec(N, L, hidden=16, heads=2, inner=32).eval(), BERT4Rec(N, L, hidden=16, heads=2, inner=32).eval(),
            GRU4Rec(N, hidden=16).eval()]


items_st = st.lists(st.integers(1, N), min_size=1, max_size=L)


@given(items=items_st, extra=st.integers(1, 6))
def test_padding_never_changes_scores(items: list[int], extra: int) -> None:
    for model in _models():
        with torch.no_grad():
            base = model.predict({"seq": _left(items)})
            more = (model.predict({"seq": _left(items, L + extra)})
                    if not isinstance(model, (SASRec, BERT4Rec)) else None)
            right = model.predict({"seq": _right(items)})
        assert torch.allclose(base, right, atol=1e-5), type(model).__name__
        if more is not None:
            assert torch.allclose(base, more, atol=1e-5)
        assert torch.isneginf(base[:, 0]).all() and torch.isfinite(base[:, 1:]).all()


@given(items=items_st, extra=st.integers(1, 4))
def test_more_padding_leaves_transformer_scores_unchanged(items: list[int], extra: int) -> None:
    torch.manual_seed(0)
    model = SASRec(N, L + extra, hidden=16, heads=2, inner=32).eval()
    with torch.no_grad():
        assert torch.allclose(model.predict({"seq": _left(items)}), model.predict({"seq": _left(items, L + extra)}),
                              atol=1e-5)


@given(items=st.lists(st.integers(1, N), min_size=L, max_size=L), t=st.integers(0, L - 2),
       replacement=st.lists(st.integers(1, N), min_size=L, max_size=L))
def test_sasrec_is_causal(items: list[int], t: int, replacement: list[int]) -> None:
    model = _models()[0]
    changed = items[: t + 1] + replacement[t + 1 :]
    with torch.no_grad():
        a, b = model.encode(torch.tensor([items])), model.encode(torch.tensor([changed]))
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6)
    if changed != items:  # the check can fail: later positions do see the change
        assert not torch.allclose(a, b, atol=1e-6)


def test_all_position_loss_equals_prefix_losses() -> None:
    """One causal pass with targets at every position = the mean of per-prefix losses."""
    torch.manual_seed(0)
    model = SASRec(N, L, hidden=16, heads=2, inner=32, dropout=0.0, attn_dropout=0.0).eval()
    items = [3, 7, 1, 9, 4, 4, 12]
    full = model.loss({"seq": _left(items[:-1]), "targets": _left(items[1:])})
    prefix = torch.stack([model.loss({"seq": _left(items[:j]), "target": torch.tensor([items[j]])})
                          for j in range(1, len(items))])
    assert torch.allclose(full, prefix.mean(), atol=1e-5)


@given(rows=st.lists(items_st, min_size=1, max_size=5), targets=st.lists(st.integers(1, N), min_size=5, max_size=5))
def test_last_position_shortcut_equals_the_full_pass(rows: list[list[int]], targets: list[int]) -> None:
    """Left-padded rows with one target at the newest position (evaluation, prefix training):
    the last-layer shortcut gives the full pass's state and loss."""
    model = _models()[0]
    seq = torch.cat([_left(r) for r in rows])
    tg = torch.zeros_like(seq)
    tg[:, -1] = torch.tensor(targets[: len(rows)])
    with torch.no_grad():
        full = model.encode(seq)
        assert torch.allclose(model.encode(seq, last_only=True)[:, 0], full[:, -1], atol=1e-5)
        assert torch.allclose(model.user_state(seq), full[:, -1], atol=1e-5)
        expected = nn.functional.cross_entropy(full[:, -1] @ model.item_embedding.weight.t(), tg[:, -1])
        assert torch.allclose(model.loss({"seq": seq, "targets": tg}), expected, atol=1e-5)


def test_last_position_shortcut_refuses_a_calibrator() -> None:
    model = _models()[0]
    model.encoder.calibrator = nn.Identity()  # anything: its terms need every query
    assert not model._last_column_suffices(_left([1, 2, 3]))
    with pytest.raises(ValueError, match="calibrator needs every query"):
        model.encode(_left([1, 2, 3]), last_only=True)


@given(seq=st.lists(st.integers(0, N), min_size=1, max_size=3 * L), ratio=st.floats(0.05, 0.9), seed=st.integers(0, 99))
def test_bert4rec_masks_at_most_cap_and_never_padding(seq: list[int], ratio: float, seed: int) -> None:
    x = torch.tensor([seq])
    m = cloze_mask(x, ratio, torch.Generator().manual_seed(seed))
    assert int(m.sum()) <= int(ratio * len(seq))
    assert not bool(m[x == 0].any())


def test_bert4rec_keeps_the_last_masked_positions() -> None:
    x = torch.arange(1, 11)[None]  # 10 real items, ratio 0.2 -> at most 2 kept
    m = cloze_mask(x, 0.2, None)
    draws = None
    for seed in range(50):  # find a draw with more than 2 chosen positions
        g = torch.Generator().manual_seed(seed)
        draws = torch.rand(x.shape, generator=g) < 0.2
        if int(draws.sum()) > 2:
            m = cloze_mask(x, 0.2, torch.Generator().manual_seed(seed))
            break
    assert draws is not None and int(draws.sum()) > 2
    chosen = draws.nonzero()[:, 1].tolist()
    assert m.nonzero()[:, 1].tolist() == chosen[-2:]


class Recorder(nn.Module):
    """A calibrator with one parameter that records the seam calls."""

    def __init__(self) -> None:
        super().__init__()
        self.sharpen = nn.Parameter(torch.tensor(1.0))
        self.calls: list[tuple[str, int, tuple[int, ...]]] = []

    def adjust_scores(self, scores: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        assert mask.dtype == torch.bool
        self.calls.append(("adjust", layer, tuple(scores.shape)))
        return scores * self.sharpen

    def calibrate(self, attn: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        self.calls.append(("calibrate", layer, tuple(attn.shape)))
        assert torch.all(attn[~mask.expand_as(attn)] == 0)
        return attn


def test_calibrator_seam_is_called_per_layer_and_owned() -> None:
    cal = Recorder()
    model = SASRec(N, L, hidden=16, layers=3, heads=2, inner=32, calibrator=cal)
    assert any(p is cal.sharpen for p in model.parameters()), "a Module calibrator must be a submodule"
    assert any(k.endswith("calibrator.sharpen") for k in model.state_dict())
    model.loss({"seq": _left([1, 2, 3]), "target": torch.tensor([4])}).backward()
    assert [c[:2] for c in cal.calls] == [("adjust", 0), ("calibrate", 0), ("adjust", 1), ("calibrate", 1),
                                          ("adjust", 2), ("calibrate", 2)]
    assert cal.calls[0][2] == (1, 2, L, L)
    assert cal.sharpen.grad is not None and cal.sharpen.grad.abs() > 0


def test_position_embedding_switch() -> None:
    model = SASRec(N, L, hidden=16, heads=2, inner=32, position_embedding=False).eval()
    assert model.position_embedding is None
    assert not any("position" in k for k in model.state_dict())


@given(rows=st.integers(1, 4), cols=st.integers(1, 6), seed=st.integers(0, 50))
def test_masked_softmax_rows(rows: int, cols: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(rows, cols, generator=g)
    mask = torch.rand(rows, cols, generator=g) < 0.6
    out = masked_softmax(scores, mask)
    assert torch.all(out[~mask] == 0) and torch.all(out >= 0)
    sums = out.sum(-1)
    has_key = mask.any(-1)
    assert torch.allclose(sums[has_key], torch.ones(int(has_key.sum())), atol=1e-6)
    assert torch.all(sums[~has_key] == 0)


@pytest.mark.parametrize("loss_type", ["ce", "bpr"])
def test_losses_are_finite_and_backpropagate(loss_type: str) -> None:
    model = SASRec(N, L, hidden=16, heads=2, inner=32, loss_type=loss_type)
    loss = model.loss({"seq": _left([1, 2, 3]), "targets": _left([2, 3, 4])})
    loss.backward()
    assert torch.isfinite(loss) and model.item_embedding.weight.grad.abs().sum() > 0
