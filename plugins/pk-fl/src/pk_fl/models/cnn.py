"""Dynafed's "ConvNet" family: ``depth`` x [Conv3x3(width) -> instance norm (GroupNorm with
``width`` groups, affine) -> ReLU -> AvgPool 2x2] -> Linear(width*h*w -> C).

For 28x28 inputs the first convolution pads by 3 (28 -> 32, as in the reference), so three
pools give 4x4. No BatchNorm buffers, so parameter averaging and trajectories stay simple.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError


class ConvNet(nn.Module):
    """``predict(batch) -> [B, C]`` logits from ``batch["x"]`` of shape ``[B, C_in, H, W]``."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int, depth: int, norm: str) -> None:
        super().__init__()
        channels, h, w = image_shape
        layers: list[nn.Module] = []
        for i in range(depth):
            pad = 3 if (i == 0 and h == 28 and w == 28) else 1
            layers.append(nn.Conv2d(channels if i == 0 else width, width, 3, padding=pad))
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            if norm == "instancenorm":
                layers.append(nn.GroupNorm(width, width, affine=True))
            layers.append(nn.ReLU())
            if min(h, w) >= 2:
                layers.append(nn.AvgPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * h * w, num_classes)
        self.image_shape = (image_shape[0], image_shape[1], image_shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flattened input
            x = x.view(x.shape[0], *self.image_shape)
        return self.classifier(self.features(x.float()).flatten(1))

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["x"])

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch["x"]), batch["y"])


def build_cnn(config: Any, info: DatasetInfo) -> ConvNet:
    """Build from ``info.extra["image_shape"]`` ([C, H, W]) and ``info.num_classes``."""
    shape = (info.extra or {}).get("image_shape")
    if not shape or len(shape) != 3 or not info.num_classes:
        raise ConfigError(
            "model cnn needs an image dataset (info.extra['image_shape'] = [C, H, W]); "
            'use model.name = "mlp" for flat features'
        )
    if config.norm not in ("instancenorm", "none"):
        raise ConfigError(f"model.norm must be \"instancenorm\" or \"none\", got {config.norm!r}")
    return ConvNet(
        (int(shape[0]), int(shape[1]), int(shape[2])), int(info.num_classes), config.width, config.depth, config.norm
    )
