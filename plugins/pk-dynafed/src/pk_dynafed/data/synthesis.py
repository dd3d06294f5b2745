"""Trajectory-matching synthesis of Dynafed's pseudo data (MTT, Cazenavette et al. 2022).

Notation: a trajectory is a list of flat parameter vectors ``w^0..w^{L-1}`` (float32 ``[P]``,
``named_parameters`` order of the model; buffers are not part of it). D_syn is
``images [n, *input_shape]``, ``label_logits [n, C]`` (soft labels = softmax) and a scalar
step size ``syn_lr``. One outer iteration: start a functional student at ``w^t``, take
``syn_steps`` differentiable full-batch SGD steps of size ``syn_lr`` on the augmented D_syn with
:func:`kd_loss`, and score ``||w_N - target||^2 / ||w^t - target||^2``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from pk_dynafed.data.dsa import augment


def kd_loss(logits: torch.Tensor, label_logits: torch.Tensor) -> torch.Tensor:
    """Reference soft-label loss: mean over batch AND classes of ``-softmax(labels) * log_softmax(logits)``,
    i.e. soft-label cross-entropy divided by the number of classes C. Shapes ``[B, C]``."""
    return (-F.softmax(label_logits, dim=-1) * F.log_softmax(logits, dim=-1)).mean()


class FlatModel:
    """A model called with one flat parameter vector (``torch.func.functional_call``);
    buffers are taken from the module as they are."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.numels = [p.numel() for _, p in module.named_parameters()]
        self.buffers = dict(module.named_buffers())

    def flatten(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Float32 CPU ``[P]`` from a state dict (parameters only)."""
        return torch.cat([state[n].detach().to("cpu", torch.float32).reshape(-1) for n in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(flat, self.numels), self.shapes)}

    def __call__(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.module, {**self.unflatten(flat), **self.buffers}, (x,))


def matching_target(
    trajectory: Sequence[torch.Tensor], start: int, expert_epochs: int, *, weight_averaging: bool,
    least_ave_num: int, max_ave_num: int, gen: torch.Generator,
) -> tuple[torch.Tensor, list[int]]:
    """The target for start ``t``: with weight averaging, the equal-weight mean of k snapshots
    (k uniform in ``least..min(max, s)``) drawn WITH replacement from ``w^{t+1}..w^{t+s}``;
    otherwise ``w^{t+s}``. Returns (target ``[P]``, the snapshot indices used)."""
    if not weight_averaging:
        return trajectory[start + expert_epochs], [start + expert_epochs]
    high = min(max_ave_num, expert_epochs)
    low = min(least_ave_num, high)
    k = int(torch.randint(low, high + 1, (1,), generator=gen))
    picks = (start + 1 + torch.randint(0, expert_epochs, (k,), generator=gen)).tolist()
    return torch.stack([trajectory[i] for i in picks]).mean(0), picks


def matching_loss(
    net: FlatModel, start: torch.Tensor, target: torch.Tensor, images: torch.Tensor, label_logits: torch.Tensor,
    syn_lr: torch.Tensor, syn_steps: int, augment_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``||w_N - target||^2 / ||start - target||^2`` after ``syn_steps`` full-batch SGD steps of
    size ``syn_lr`` from ``start`` on ``augment_fn(images)`` with ``kd_loss``. Differentiable
    w.r.t. images, label_logits and syn_lr (the whole unrolled graph is kept)."""
    w = start.detach().clone().requires_grad_(True)
    for _ in range(syn_steps):
        loss = kd_loss(net(w, augment_fn(images)), label_logits)
        grad = torch.autograd.grad(loss, w, create_graph=True)[0]
        w = w - syn_lr * grad
    return ((w - target) ** 2).sum() / ((start - target) ** 2).sum().clamp_min(1e-12)


@dataclass
class SyntheticSet:
    """D_syn: images ``[n, *shape]``, label logits ``[n, C]`` and the learned step size."""

    images: torch.Tensor
    label_logits: torch.Tensor
    syn_lr: float
    losses: list[float] = field(default_factory=list)


def init_synthetic(num_classes: int, ipc: int, input_shape: Sequence[int], *, pixel_mean: Sequence[float],
                   pixel_std: Sequence[float], label_init: float, hard_label_scale: float, learn_labels: bool,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images ``mean_c + std_c * N(0, 1)`` per channel c (one value for every channel, or
    one per channel of ``input_shape[0]``) and label logits ``one_hot * label_init`` (learned)
    or ``one_hot * hard_label_scale`` (frozen hard labels); ``ipc`` slots per class."""
    n = num_classes * ipc
    noise = torch.randn(n, *input_shape, generator=gen)
    mean, std = channel_vector(pixel_mean, input_shape), channel_vector(pixel_std, input_shape)
    images = mean + std * noise
    classes = torch.arange(num_classes).repeat_interleave(ipc)
    one_hot = F.one_hot(classes, num_classes).float()
    return images, one_hot * (label_init if learn_labels else hard_label_scale)


def channel_vector(values: Sequence[float], input_shape: Sequence[int]) -> torch.Tensor:
    """``values`` (length 1 or the channel count ``input_shape[0]``) shaped to broadcast over
    ``[n, *input_shape]``: ``[C, 1, 1]`` for images, a scalar tensor for flat inputs."""
    vals = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    if vals.numel() == 1:
        return vals.reshape(())
    if len(input_shape) != 3 or vals.numel() != int(input_shape[0]):
        raise ValueError(
            f"{vals.numel()} per-channel values do not fit input shape {list(input_shape)}; give one value "
            "or one per channel"
        )
    return vals.reshape(-1, 1, 1)


def synthesize(
    net: FlatModel, trajectory: Sequence[torch.Tensor], *, num_classes: int, input_shape: Sequence[int], cfg: object,
    families: tuple[str, ...], gen: torch.Generator, device: str = "cpu",
    progress: Callable[[int, float], None] | None = None,
) -> SyntheticSet:
    """Run ``cfg.iterations`` outer steps of trajectory matching on ``trajectory`` (length L).

    ``cfg`` carries the :class:`pk_dynafed.plugin.DynafedConfig` fields plus ``init_mean`` /
    ``init_std`` (per-channel noise statistics; default ``pixel_mean`` / ``pixel_std``, else
    0 / 1). Start indices are uniform in ``[min_start_epoch, min(max_start_epoch, L - 1 -
    expert_epochs)]``. ``iterations = 0``
    returns the initial noise images and labels (the 0-iteration control).
    """
    length = len(trajectory)
    last_start = min(cfg.max_start_epoch, length - 1 - cfg.expert_epochs)
    if last_start < cfg.min_start_epoch:
        raise ValueError(f"a trajectory of {length} snapshots cannot supply expert_epochs={cfg.expert_epochs} "
                         f"after start {cfg.min_start_epoch}; raise min_trajectory_length")
    mean = getattr(cfg, "init_mean", None) or list(cfg.pixel_mean) or [0.0]
    std = getattr(cfg, "init_std", None) or list(cfg.pixel_std) or [1.0]
    images, labels = init_synthetic(num_classes, cfg.ipc, input_shape, pixel_mean=mean, pixel_std=std,
                                    label_init=cfg.label_init, hard_label_scale=cfg.hard_label_scale,
                                    learn_labels=cfg.learn_labels, gen=gen)
    images = images.to(device).requires_grad_(True)
    labels = labels.to(device).requires_grad_(cfg.learn_labels)
    syn_lr = torch.tensor(float(cfg.lr_teacher), device=device, requires_grad=True)
    optims = [torch.optim.Adam([images], lr=cfg.lr_img), torch.optim.Adam([syn_lr], lr=cfg.lr_lr)]
    if cfg.learn_labels:
        optims.append(torch.optim.Adam([labels], lr=cfg.lr_label))
    traj = [w.to(device) for w in trajectory]
    losses: list[float] = []
    for it in range(cfg.iterations):
        start = int(torch.randint(cfg.min_start_epoch, last_start + 1, (1,), generator=gen))
        target, _ = matching_target(traj, start, cfg.expert_epochs, weight_averaging=cfg.weight_averaging,
                                    least_ave_num=cfg.least_ave_num, max_ave_num=cfg.max_ave_num, gen=gen)
        loss = matching_loss(net, traj[start], target, images, labels, syn_lr, cfg.syn_steps,
                             lambda x: augment(x, families, gen))
        for opt in optims:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optims:
            opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(it, losses[-1])
    return SyntheticSet(images.detach().cpu(), labels.detach().cpu(), float(syn_lr.detach()), losses)
