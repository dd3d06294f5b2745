"""Properties of the augmentations, ECL-SR's substitution rules and the contrastive losses."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_eclsr.models.augment import (
    crop,
    mask_items,
    random_augment,
    reorder,
    replacement_labels,
    substitution_positions,
)
from pk_eclsr.models.losses import cosine_info_nce, discriminator_loss, nt_xent
from pk_seqrec.models.encoder import position_ids

N = 30


@st.composite
def left_padded(draw: st.DrawFn, max_width: int = 12, num_items: int = 30, max_rows: int = 6) -> torch.Tensor:
    """[B, W] long: rows of 1..W real items in 1..num_items, zeros on the left only."""
    width = draw(st.integers(2, max_width))
    rows = draw(st.integers(1, max_rows))
    out = torch.zeros(rows, width, dtype=torch.long)
    for r in range(rows):
        n = draw(st.integers(1, width))
        items = draw(st.lists(st.integers(1, num_items), min_size=n, max_size=n))
        out[r, width - n :] = torch.tensor(items)
    return out


def assert_valid_layout(seq: torch.Tensor, num_items: int, *, allow_mask: bool) -> None:
    """Left padding only (no zero after a real item), >= 1 real item, ids in range."""
    real = seq != 0
    assert bool(real.any(1).all()), "a row lost all its items"
    first_real = real.long().argmax(1)
    after_first = torch.arange(seq.shape[1])[None] >= first_real[:, None]
    assert bool((real == after_first).all()), f"padding inside a sequence:\n{seq}"
    top = num_items + 1 if allow_mask else num_items
    assert int(seq.min()) >= 0 and int(seq.max()) <= top

ratios = st.floats(0.0, 1.0)
seeds = st.integers(0, 2**31 - 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _items(row: torch.Tensor) -> list[int]:
    return [int(x) for x in row if x != 0]


# -- CL4SRec augmentations --------------------------------------------------------------
@given(left_padded(), ratios, seeds)
def test_crop_keeps_one_contiguous_run(seq: torch.Tensor, ratio: float, seed: int) -> None:
    out = crop(seq, ratio, _gen(seed))
    assert_valid_layout(out, N, allow_mask=False)
    for before, after in zip(seq, out, strict=True):
        src, kept = _items(before), _items(after)
        assert len(kept) == min(len(src), max(1, math.floor(len(src) * ratio)))
        assert any(src[i : i + len(kept)] == kept for i in range(len(src) - len(kept) + 1)), (src, kept)


@given(left_padded(), ratios, seeds)
def test_mask_replaces_exactly_floor_ratio_n_items(seq: torch.Tensor, ratio: float, seed: int) -> None:
    out = mask_items(seq, ratio, N + 1, _gen(seed))
    assert_valid_layout(out, N, allow_mask=True)
    assert bool(((out == seq) | (out == N + 1)).all())
    n = (seq != 0).sum(1)
    assert (out == N + 1).sum(1).tolist() == [math.floor(int(k) * ratio) for k in n]


@given(left_padded(), ratios, seeds)
def test_reorder_permutes_one_window(seq: torch.Tensor, ratio: float, seed: int) -> None:
    out = reorder(seq, ratio, _gen(seed))
    assert_valid_layout(out, N, allow_mask=False)
    assert bool(((out != 0) == (seq != 0)).all()), "reorder moved padding"
    for before, after in zip(seq, out, strict=True):
        src, new = _items(before), _items(after)
        assert sorted(src) == sorted(new)
        changed = [i for i, (a, b) in enumerate(zip(src, new, strict=True)) if a != b]
        if changed:  # everything that moved lies inside one window of floor(ratio * n) items
            assert changed[-1] - changed[0] < math.floor(len(src) * ratio)


@given(left_padded(), seeds)
def test_random_augment_views_are_valid_and_seeded(seq: torch.Tensor, seed: int) -> None:
    kwargs = {"crop_ratio": 0.2, "mask_ratio": 0.7, "reorder_ratio": 0.2, "mask_token": N + 1}
    out = random_augment(seq, generator=_gen(seed), **kwargs)
    assert out.shape == seq.shape
    assert_valid_layout(out, N, allow_mask=True)
    assert torch.equal(out, random_augment(seq, generator=_gen(seed), **kwargs))


# -- ECL-SR substitution ----------------------------------------------------------------
@given(left_padded(max_width=16), ratios, seeds)
def test_sample_masks_floor_ratio_n_plus_one_never_the_oldest(seq: torch.Tensor, ratio: float, seed: int) -> None:
    chosen = substitution_positions(seq, ratio, "sample", max_len=16, generator=_gen(seed))
    n = (seq != 0).sum(1)
    assert not bool((chosen & (seq == 0)).any()), "masked padding"
    assert not bool((chosen & (position_ids(seq) == 0) & (seq != 0)).any()), "masked the oldest item"
    expected = [min(math.floor(ratio * int(k) + 1), int(k) - 1) for k in n]
    assert chosen.sum(1).tolist() == expected


@given(left_padded(max_width=16), ratios, seeds)
def test_prob_never_masks_padding_and_masks_at_least_one(seq: torch.Tensor, ratio: float, seed: int) -> None:
    max_len = 16
    chosen = substitution_positions(seq, ratio, "prob", max_len=max_len, generator=_gen(seed))
    assert not bool((chosen & (seq == 0)).any())
    assert bool((chosen.sum(1) >= 1).all())
    assert bool((chosen.sum(1) <= math.ceil(ratio * max_len + 1)).all())
    full = (seq != 0).sum(1) >= max_len
    assert not bool((chosen[:, 0] & full).any()), "masked absolute index 0 of a full-length row"


def test_prob_with_ratio_zero_masks_only_the_newest() -> None:
    seq = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    chosen = substitution_positions(seq, 0.0, "prob", max_len=5)
    assert chosen.tolist() == [[False] * 4 + [True]] * 2


@given(left_padded(), seeds)
def test_replacement_labels_are_the_changed_real_positions(seq: torch.Tensor, seed: int) -> None:
    g = _gen(seed)
    changed = (torch.rand(seq.shape, generator=g) < 0.5) & (seq != 0)
    substituted = torch.where(changed, torch.randint(1, N + 1, seq.shape, generator=g), seq)
    labels = replacement_labels(seq, substituted)
    assert torch.equal(labels.bool(), (substituted != seq) & (seq != 0))
    assert not bool(labels[seq == 0].any())
    assert not bool(replacement_labels(seq, seq).any()), "nothing substituted must be all-original"


def test_discriminator_loss_averages_over_real_positions_with_clamp() -> None:
    prob = torch.tensor([[0.3, 1.0, 0.0, 0.9]])
    labels = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    real = torch.tensor([[False, True, True, True]])
    expected = (-math.log(1 - 1e-8) - math.log(1e-8) - math.log(1 - 0.9)) / 3
    assert float(discriminator_loss(prob, labels, real)) == pytest.approx(expected, rel=1e-5)


# -- InfoNCE against brute force --------------------------------------------------------
def _nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    views = [*z1.double(), *z2.double()]
    B = z1.shape[0]
    total = 0.0
    for i, anchor in enumerate(views):
        positive = (i + B) % (2 * B)
        denom = sum(math.exp(float(anchor @ views[j]) / t) for j in range(2 * B) if j != i)
        total += -(float(anchor @ views[positive]) / t - math.log(denom))
    return total / (2 * B)


def _cosine_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b) / max(float(a.norm() * b.norm()), 1e-8)

    total = 0.0
    for b in range(z1.shape[0]):
        logits = [cos(z1[b].double(), z2[c].double()) / t for c in range(z2.shape[0])]
        total += -(logits[b] - math.log(sum(math.exp(x) for x in logits)))
    return total / z1.shape[0]


@given(st.integers(2, 6), st.integers(1, 5), st.floats(0.2, 2.0), seeds)
def test_nt_xent_equals_brute_force(batch: int, dim: int, temperature: float, seed: int) -> None:
    g = _gen(seed)
    z1 = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    z2 = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    assert float(nt_xent(z1, z2, temperature)) == pytest.approx(_nt_xent_reference(z1, z2, temperature),
                                                               rel=1e-9, abs=1e-9)


@given(st.integers(2, 6), st.integers(1, 5), st.floats(0.05, 2.0), seeds)
def test_cosine_info_nce_equals_brute_force(batch: int, dim: int, temperature: float, seed: int) -> None:
    g = _gen(seed)
    z1 = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    z2 = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    got = float(cosine_info_nce(z1, z2, temperature))
    assert got == pytest.approx(_cosine_reference(z1, z2, temperature), rel=1e-7, abs=1e-9)
