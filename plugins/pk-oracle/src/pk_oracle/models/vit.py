"""``vit``: a small Vision Transformer classifier for image datasets (e.g. MNIST 1x28x28).

Patches of ``patch x patch`` pixels are flattened and linearly embedded, a learned class
token and learned position embeddings are added, then ``depth`` pre-norm Transformer
encoder blocks (``heads`` heads, MLP ``mlp_ratio x dim``, GELU) and a LayerNorm; the class
token's output goes through a linear head. ``predict(batch) -> [B, C]`` logits from
``batch["x"]`` ``[B, C, H, W]`` (or flat ``[B, C*H*W]``, reshaped by ``image_shape``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError


class SmallViT(nn.Module):
    """ViT (Dosovitskiy et al. 2021) at toy scale; see the module docstring."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, *, patch: int, dim: int, depth: int,
                 heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = image_shape
        self.patch = patch
        self.grid = (h // patch, w // patch)
        n = self.grid[0] * self.grid[1]
        self.embed = nn.Linear(c * patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, N, C*p*p]`` non-overlapping patches in row-major order."""
        b, c = x.shape[0], x.shape[1]
        p = self.patch
        x = x[:, :, : self.grid[0] * p, : self.grid[1] * p]
        x = x.reshape(b, c, self.grid[0], p, self.grid[1], p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, self.grid[0] * self.grid[1], c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().reshape(x.shape[0], *self.image_shape)
        tokens = self.embed(self.patches(x))
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["x"])

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch["x"]), batch["y"])


def build_vit(config: Any, info: DatasetInfo) -> SmallViT:
    """From ``info.extra["image_shape"]`` ([C, H, W]) and ``info.num_classes``."""
    shape = (info.extra or {}).get("image_shape")
    if not shape or len(shape) != 3 or not info.num_classes:
        raise ConfigError("model vit needs an image dataset (info.extra['image_shape'] = [C, H, W]); "
                          "use model.name = \"mlp\"")
    c, h, w = (int(v) for v in shape)
    if config.patch > min(h, w):
        raise ConfigError(f"model.patch = {config.patch} exceeds the {h}x{w} image; use a patch size <= {min(h, w)}")
    if config.dim % config.heads:
        raise ConfigError(f"model.dim = {config.dim} must divide by model.heads = {config.heads}")
    return SmallViT((c, h, w), int(info.num_classes), patch=config.patch, dim=config.dim, depth=config.depth,
                    heads=config.heads, mlp_ratio=config.mlp_ratio, dropout=config.dropout)
