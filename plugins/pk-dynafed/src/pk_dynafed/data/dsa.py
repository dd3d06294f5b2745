"""Differentiable Siamese augmentation (Zhao & Bilen 2021) as used by MTT/Dynafed, mode "S".

Each call draws ONE family from the strategy (e.g. "color_crop_cutout_flip_scale_rotate")
and applies it with per-sample random parameters. Every op is differentiable w.r.t. the
images ``x [B, C, H, W]`` (float); randomness comes only from the given ``torch.Generator``.
Parameters follow the reference ``ParamDiffAug``: flip p 0.5, scale 1.2, rotate 15 degrees,
crop pad 0.125, cutout 0.5, brightness 1.0, saturation 2.0, contrast 0.5. With one channel,
saturation is the identity (each pixel equals its channel mean), so "color" reduces to
brightness + contrast.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

FLIP_P = 0.5
SCALE = 1.2
ROTATE_DEG = 15.0
CROP_PAD = 0.125
CUTOUT = 0.5
BRIGHTNESS = 1.0
SATURATION = 2.0
CONTRAST = 0.5


def _rand(gen: torch.Generator, *shape: int, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(*shape, generator=gen).to(device=like.device, dtype=like.dtype)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def scale(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Independent x/y zoom by factors in [1/1.2, 1.2]."""
    b = x.shape[0]
    sx = _rand(gen, b, like=x) * (SCALE - 1.0 / SCALE) + 1.0 / SCALE
    sy = _rand(gen, b, like=x) * (SCALE - 1.0 / SCALE) + 1.0 / SCALE
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _affine(x, theta)


def rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rotation by an angle uniform in [-15, 15] degrees."""
    angle = (_rand(gen, x.shape[0], like=x) - 0.5) * 2 * ROTATE_DEG / 180 * math.pi
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Horizontal flip of each sample with probability 0.5."""
    mask = _rand(gen, x.shape[0], 1, 1, 1, like=x) < FLIP_P
    return torch.where(mask, x.flip(3), x)


def brightness(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return x + (_rand(gen, x.shape[0], 1, 1, 1, like=x) - 0.5) * BRIGHTNESS


def saturation(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(gen, x.shape[0], 1, 1, 1, like=x) * SATURATION) + mean


def contrast(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(gen, x.shape[0], 1, 1, 1, like=x) + CONTRAST) + mean


def crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``CROP_PAD * size`` pixels, zero fill (integer shifts)."""
    b, _c, h, w = x.shape
    sh, sw = int(h * CROP_PAD + 0.5), int(w * CROP_PAD + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=gen).to(x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=gen).to(x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1).expand(b, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1).expand(b, h, w)
    padded = F.pad(x, [1, 1, 1, 1])  # out-of-range shifts land on the zero border
    batch = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Zero one random square of side ``CUTOUT * size`` per sample (clipped at the border)."""
    b, _c, h, w = x.shape
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=gen).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=gen).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


FAMILIES: dict[str, tuple[Callable[[torch.Tensor, torch.Generator], torch.Tensor], ...]] = {
    "color": (brightness, saturation, contrast),
    "crop": (crop,),
    "cutout": (cutout,),
    "flip": (flip,),
    "scale": (scale,),
    "rotate": (rotate,),
}


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Families of ``strategy`` ("none" or "" -> no augmentation); unknown names raise ValueError."""
    if strategy in ("", "none"):
        return ()
    names = tuple(strategy.split("_"))
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown DSA families {unknown}; choose from {', '.join(FAMILIES)} joined by '_', or 'none'")
    return names


def augment(x: torch.Tensor, families: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """Apply one family drawn uniformly from ``families`` (mode "S"); identity for flat inputs
    (``x.dim() != 4``) or an empty strategy. Shape is preserved."""
    if not families or x.dim() != 4:
        return x
    family = families[int(torch.randint(0, len(families), (1,), generator=gen))]
    for op in FAMILIES[family]:
        x = op(x, gen)
    return x
