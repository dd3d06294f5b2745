"""Sequence augmentations and ECL-SR's substitution bookkeeping, vectorised over a batch.

Every function takes ``seq`` [B, L] long, padded on the LEFT (zeros first, newest item at
``seq[:, -1]``, no padding between real items) and returns tensors of the same width; the
outputs of the crop/mask/reorder views obey the same layout. Randomness comes from
``generator`` when given, else from torch's global RNG (which pk-seqrec's trainer
checkpoints, so resumed runs stay bit-identical).
"""

from __future__ import annotations

import math

import torch
from pk_seqrec.models.encoder import position_ids


def _uniform(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) floats of ``shape`` on ``like``'s device (drawn on CPU when a generator is given)."""
    if generator is None:
        return torch.rand(shape, device=like.device)
    return torch.rand(shape, generator=generator).to(like.device)


def real_lengths(seq: torch.Tensor) -> torch.Tensor:
    """[B] number of real (non-zero) items per row."""
    return (seq != 0).sum(1)


def pack_left(seq: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Keep the items where ``keep`` (bool [B, L]) in their order, left-padded with zeros."""
    order = torch.argsort(keep.to(torch.int8), dim=1, stable=True)  # dropped first, kept last, order kept
    count = keep.sum(1, keepdim=True)
    width = seq.shape[1]
    slot_is_real = torch.arange(width, device=seq.device)[None] >= width - count
    return seq.gather(1, order) * slot_is_real


def _random_ranks(candidates: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """[B, L] rank of each position in a uniformly random order of the row's candidates
    (candidates first, ranks 0..c-1; non-candidates get ranks >= c)."""
    keys = _uniform(tuple(candidates.shape), candidates, generator)
    keys = keys.masked_fill(~candidates, 2.0)
    return keys.argsort(1).argsort(1)


def crop(seq: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep one contiguous run of max(1, floor(ratio * n)) items, start uniform in [0, n - run]."""
    n = real_lengths(seq)
    run = torch.clamp(torch.floor(n.double() * ratio).long(), min=1)
    run = torch.minimum(run, n)
    start = torch.floor(_uniform((seq.shape[0],), seq, generator).double() * (n - run + 1).double()).long()
    rel = position_ids(seq)
    keep = (seq != 0) & (rel >= start[:, None]) & (rel < (start + run)[:, None])
    return pack_left(seq, keep)


def mask_items(seq: torch.Tensor, ratio: float, mask_token: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace floor(ratio * n) uniformly chosen real items by ``mask_token``."""
    n = real_lengths(seq)
    count = torch.floor(n.double() * ratio).long()
    chosen = _random_ranks(seq != 0, generator) < count[:, None]
    return seq.masked_fill(chosen, mask_token)


def reorder(seq: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle a contiguous window of floor(ratio * n) real items (start uniform)."""
    B, L = seq.shape
    n = real_lengths(seq)
    run = torch.floor(n.double() * ratio).long()
    start = torch.floor(_uniform((B,), seq, generator).double() * (n - run + 1).double()).long()
    rel = position_ids(seq)
    window = (seq != 0) & (rel >= start[:, None]) & (rel < (start + run)[:, None])
    absolute_start = (L - n + start).double()[:, None]
    keys = torch.arange(L, device=seq.device, dtype=torch.double)[None].expand(B, L).clone()
    jitter = absolute_start + _uniform((B, L), seq, generator).double() * run.double()[:, None]
    keys = torch.where(window, jitter, keys)
    return seq.gather(1, torch.argsort(keys, dim=1, stable=True))


def random_augment(seq: torch.Tensor, *, crop_ratio: float, mask_ratio: float, reorder_ratio: float, mask_token: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """CL4SRec view: per row, one of crop / mask / reorder chosen uniformly."""
    which = torch.floor(_uniform((seq.shape[0],), seq, generator) * 3).long().clamp_max(2)[:, None]
    cropped = crop(seq, crop_ratio, generator)
    masked = mask_items(seq, mask_ratio, mask_token, generator)
    reordered = reorder(seq, reorder_ratio, generator)
    return torch.where(which == 0, cropped, torch.where(which == 1, masked, reordered))


def substitution_positions(seq: torch.Tensor, ratio: float, strategy: str, max_len: int,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """bool [B, L]: the positions ECL-SR masks for the generator (never padding).

    "sample": exactly min(floor(ratio * n + 1), n - 1) positions, uniform among the real
    items except the oldest (the release raises for n = 1; here nothing is masked).
    "prob": Bernoulli(ratio) per real item except the absolute index 0 of a full-length
    (``max_len``) row, keeping the first ceil(ratio * max_len + 1) chosen (oldest first);
    a row with none chosen masks its newest item.
    """
    real = seq != 0
    n = real.sum(1)
    rel = position_ids(seq)
    if strategy == "sample":
        candidates = real & (rel > 0)
        count = torch.minimum(torch.floor(n.double() * ratio + 1).long(), (n - 1).clamp_min(0))
        return candidates & (_random_ranks(candidates, generator) < count[:, None])
    if strategy == "prob":
        first_of_full_row = (rel == 0) & (n >= max_len)[:, None]
        candidates = real & ~first_of_full_row
        chosen = candidates & (_uniform(tuple(seq.shape), seq, generator) < ratio)
        cap = math.ceil(ratio * max_len + 1)
        chosen = chosen & (chosen.long().cumsum(1) <= cap)
        none = ~chosen.any(1) & real[:, -1]
        chosen[:, -1] |= none
        return chosen
    raise ValueError(f"mask_strategy must be 'sample' or 'prob', got {strategy!r}")


def replacement_labels(original: torch.Tensor, substituted: torch.Tensor) -> torch.Tensor:
    """float [B, L]: 1 where a real position's item changed, else 0 (a masked slot the
    generator reconstructed exactly counts as original; padding is 0)."""
    return ((substituted != original) & (original != 0)).float()
