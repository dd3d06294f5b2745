"""The Dynafed aggregator (server side of arXiv 2211.10878, as the reference code runs it).

Per ``aggregate(global_state, updates)`` call (one server round):

1. Until synthesis, record ``global_state`` (what this round's clients started from) as the
   next trajectory snapshot; the first call records w^0. Snapshots are flat float32 parameter
   vectors (buffers excluded, as in the reference).
2. If D_syn does not exist yet and the buffer holds ``min_trajectory_length`` (L) snapshots
   w^0..w^{L-1}, synthesise D_syn once (:func:`pk_dynafed.data.synthesis.synthesize`). With L = 25
   this happens in round 25, so rounds 1..24 are plain averaging.
3. Average: unweighted mean of the clients with positive weight (``average = "uniform"``,
   the reference) or the example-weighted mean, via pk-core's FedAvg (float64).
4. Once D_syn exists: refresh norm statistics with ``bn_refresh_passes`` no-grad train-mode
   passes over D_syn (a no-op without running statistics), then ``distill_iter`` epochs of a
   fresh Adam(``distill_lr``) over D_syn (shuffled, batch ``distill_batch``), each step with
   DSA augmentation and the soft-label ``kd_loss``. The result is the new global model.

Noise images start at ``pixel_mean + pixel_std * N(0, 1)`` per channel; empty lists (the
default) take the dataset's own train-split channel statistics from ``ServerContext.info.extra``
(``pixel_mean`` / ``pixel_std``, set by pk-fl's image datasets), i.e. N(0, 1) in the normalised
space the reference works in; without them, 0 and 1.

Diagnostics: ``last_metrics`` (logged by ``fedsim`` as ``agg_*`` per round) and ``summary()``
(``fit.agg_*``): the normalised matching loss at the start and end of synthesis (means of the
first and last 10 iterations), the learned step size, the learned labels' mean max-probability
and the number of classes they cover, and the mean absolute change of the images.

All randomness (noise init, start indices, targets, augmentation, shuffling) draws from
``context.generator``, which the simulator checkpoints; the trajectory, D_syn, the learned step
size and the matching losses are in :meth:`Dynafed.state_dict`, so a run resumed at a round
boundary continues identically. ``last_timing`` holds wall-clock seconds of the last call
(``synthesis_s``, ``finetune_s``) and is deliberately kept out of the state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from pk.core.builtins.components import FedAvg
from pk.core.errors import ConfigError
from pk.core.torch_helpers import check_updates
from pk_dynafed.data.dsa import augment, parse_strategy
from pk_dynafed.data.synthesis import FlatModel, SyntheticSet, kd_loss, synthesize

DEFAULTS: dict[str, Any] = {
    "average": "uniform", "min_trajectory_length": 25, "ipc": 15, "syn_steps": 20, "expert_epochs": 3,
    "iterations": 3000, "min_start_epoch": 0, "max_start_epoch": 50, "weight_averaging": True,
    "least_ave_num": 2, "max_ave_num": 3, "lr_img": 0.05, "lr_label": 0.01, "lr_lr": 1e-5, "lr_teacher": 0.04,
    "label_init": 0.0, "learn_labels": True, "hard_label_scale": 10.0, "pixel_mean": [], "pixel_std": [],
    "dsa_strategy": "color_crop_cutout_flip_scale_rotate", "distill_iter": 20, "distill_lr": 1e-4,
    "distill_batch": 256, "bn_refresh_passes": 3,
}


def _config(config: Any) -> SimpleNamespace:
    """The config as a namespace with every field (reference defaults for missing ones), validated."""
    cfg = SimpleNamespace(**{k: getattr(config, k, v) for k, v in DEFAULTS.items()})
    if cfg.average not in ("uniform", "examples"):
        raise ConfigError(f"aggregator.average must be \"uniform\" or \"examples\", got {cfg.average!r}")
    positive = ("ipc", "syn_steps", "expert_epochs", "distill_batch")
    bad = [k for k in positive if int(getattr(cfg, k)) < 1]
    if bad or cfg.min_trajectory_length < cfg.expert_epochs + 1 + cfg.min_start_epoch:
        raise ConfigError(
            f"aggregator dynafed: {', '.join(bad) or 'min_trajectory_length'} out of range; need ipc, syn_steps, "
            "expert_epochs, distill_batch >= 1 and min_trajectory_length >= min_start_epoch + expert_epochs + 1"
        )
    if cfg.iterations < 0 or cfg.distill_iter < 0 or not 1 <= cfg.least_ave_num <= cfg.max_ave_num:
        raise ConfigError(
            "aggregator dynafed: iterations and distill_iter must be >= 0 and 1 <= least_ave_num <= max_ave_num"
        )
    try:
        cfg.families = parse_strategy(cfg.dsa_strategy)
    except ValueError as exc:
        raise ConfigError(f"aggregator.dsa_strategy: {exc}") from None
    return cfg


class Dynafed:
    """Unweighted FedAvg, then (after the one-time synthesis) fine-tuning on D_syn.

    ``kind = "weights"``: updates are full state dicts ``(state, weight, meta)``. Raises
    ``ValueError`` on an empty round or zero total weight; never mutates its inputs.
    """

    kind = "weights"

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.cfg = _config(config)
        self.context = context
        gen = getattr(context, "generator", None)
        self.generator: torch.Generator = gen if gen is not None else torch.Generator().manual_seed(0)
        self.device = getattr(context, "device", "cpu") or "cpu"
        self._module: nn.Module | None = None
        self._flat: FlatModel | None = None
        self.trajectory: list[torch.Tensor] = []
        self.synthetic: SyntheticSet | None = None
        self.synthesis_round = -1
        self.rounds_seen = 0
        self.last_client_weights: list[float] = []
        self.last_timing: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}
        self._image_change: float | None = None

    # -- model and shapes ------------------------------------------------------------------
    def _net(self) -> FlatModel:
        if self._flat is None:
            build = getattr(self.context, "build_model", None)
            if build is None:
                raise ConfigError(
                    "aggregator dynafed needs a ServerContext with build_model (run it under trainer fedsim)"
                )
            self._module = build()
            self._flat = FlatModel(self._module)
        return self._flat

    def _shape_and_classes(self) -> tuple[list[int], int]:
        info = getattr(self.context, "info", None)
        classes = int(getattr(info, "num_classes", 0) or 0)
        shape = list(((getattr(info, "extra", None) or {}).get("image_shape")) or [])
        if not shape and getattr(info, "num_features", None):
            shape = [int(info.num_features)]
        if classes < 2 or not shape:
            raise ConfigError("aggregator dynafed needs the dataset's num_classes and image_shape/num_features "
                              "(ServerContext.info); run it under trainer fedsim on a classification dataset")
        return shape, classes

    # -- the server step --------------------------------------------------------------------
    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any], state: Any = None
    ) -> tuple[dict[str, torch.Tensor], Any]:
        check_updates(updates)
        self.last_timing = {}
        self.last_metrics = {}
        self.rounds_seen += 1
        if self.synthetic is None:
            self.trajectory.append(self._net().flatten(global_state))
            if len(self.trajectory) >= self.cfg.min_trajectory_length:
                t0 = time.perf_counter()
                self.synthesize()
                self.synthesis_round = self.rounds_seen
                self.last_timing["synthesis_s"] = time.perf_counter() - t0
                self.last_metrics = self.summary()
        weights = [
            (1.0 if float(w) > 0 else 0.0) if self.cfg.average == "uniform" else float(w) for _s, w, _m in updates
        ]
        averaged, _ = FedAvg(None).aggregate(global_state, [(s, w, m) for (s, _w, m), w in zip(updates, weights)])
        total = sum(weights)
        self.last_client_weights = [w / total for w in weights]
        if self.synthetic is not None:
            t0 = time.perf_counter()
            averaged = self.finetune(averaged)
            self.last_timing["finetune_s"] = time.perf_counter() - t0
        return averaged, state

    def init_stats(self, channels: int) -> tuple[list[float], list[float]]:
        """Noise mean / std per channel: the config's, else the dataset's, else (0, 1)."""
        extra = getattr(getattr(self.context, "info", None), "extra", None) or {}
        mean = list(self.cfg.pixel_mean) or list(extra.get("pixel_mean") or []) or [0.0]
        std = list(self.cfg.pixel_std) or list(extra.get("pixel_std") or []) or [1.0]
        for name, vals in (("pixel_mean", mean), ("pixel_std", std)):
            if len(vals) not in (1, channels):
                raise ConfigError(f"aggregator.{name} has {len(vals)} values; give 1 or one per channel ({channels})")
        return mean, std

    def synthesize(self) -> SyntheticSet:
        """Distil D_syn from the stored trajectory (once); keeps and returns it."""
        shape, classes = self._shape_and_classes()
        net = self._net()
        assert self._module is not None
        self._module.train()
        mean, std = self.init_stats(int(shape[0]) if len(shape) == 3 else 1)
        cfg = SimpleNamespace(**{**vars(self.cfg), "init_mean": mean, "init_std": std})
        gen_state = self.generator.get_state()
        self.synthetic = synthesize(net, self.trajectory, num_classes=classes, input_shape=shape, cfg=cfg,
                                    families=self.cfg.families, gen=self.generator, device=self.device)
        # the initial images again (same generator state) for the image-change diagnostic
        probe = torch.Generator().manual_seed(0)
        probe.set_state(gen_state)
        from pk_dynafed.data.synthesis import init_synthetic

        init_images, _ = init_synthetic(classes, self.cfg.ipc, shape, pixel_mean=mean, pixel_std=std, label_init=0.0,
                                        hard_label_scale=1.0, learn_labels=True, gen=probe)
        self._image_change = float((self.synthetic.images - init_images).abs().mean())
        return self.synthetic

    def summary(self) -> dict[str, float]:
        """Synthesis diagnostics (empty before synthesis); see the module docstring."""
        syn = self.synthetic
        if syn is None:
            return {}
        probs = torch.softmax(syn.label_logits, dim=-1)
        out = {
            "synthesis_round": float(self.synthesis_round),
            "syn_lr": float(syn.syn_lr),
            "label_max_prob": float(probs.max(-1).values.mean()),
            "label_classes": float(torch.unique(probs.argmax(-1)).numel()),
        }
        if syn.losses:
            head, tail = syn.losses[:10], syn.losses[-10:]
            out["matching_loss_start"] = float(sum(head) / len(head))
            out["matching_loss_end"] = float(sum(tail) / len(tail))
        if self._image_change is not None:
            out["image_change"] = float(self._image_change)
        return out

    def finetune(self, averaged: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The reference ``datadistill`` step on a copy of ``averaged``; returns the new state
        (CPU tensors, dtypes of ``averaged``). ``distill_iter = 0`` returns it unchanged."""
        syn = self.synthetic
        assert syn is not None
        self._net()
        model = self._module
        assert model is not None
        model.load_state_dict({k: v.to(self.device) for k, v in averaged.items()})
        x, y = syn.images.to(self.device), syn.label_logits.to(self.device)
        model.train()
        if any(getattr(m, "track_running_stats", False) for m in model.modules()):
            with torch.no_grad():
                for _ in range(self.cfg.bn_refresh_passes):
                    model(x)
        if self.cfg.distill_iter > 0:
            opt = torch.optim.Adam(model.parameters(), lr=self.cfg.distill_lr)
            for _epoch in range(self.cfg.distill_iter):
                order = torch.randperm(x.shape[0], generator=self.generator).to(self.device)
                for start in range(0, x.shape[0], self.cfg.distill_batch):
                    idx = order[start : start + self.cfg.distill_batch]
                    opt.zero_grad(set_to_none=True)
                    kd_loss(model(augment(x[idx], self.cfg.families, self.generator)), y[idx]).backward()
                    opt.step()
        out = model.state_dict()
        return {k: out[k].detach().to(averaged[k].device, averaged[k].dtype).clone() for k in averaged}

    # -- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Trajectory, D_syn, learned step size, matching losses, counters (tensors/lists/numbers)."""
        syn = self.synthetic
        return {
            "trajectory": [w.clone() for w in self.trajectory],
            "rounds_seen": self.rounds_seen,
            "synthesis_round": self.synthesis_round,
            "synthesized": syn is not None,
            "images": syn.images.clone() if syn is not None else torch.empty(0),
            "label_logits": syn.label_logits.clone() if syn is not None else torch.empty(0),
            "syn_lr": syn.syn_lr if syn is not None else float(self.cfg.lr_teacher),
            "matching_losses": list(syn.losses) if syn is not None else [],
            "image_change": -1.0 if self._image_change is None else float(self._image_change),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.trajectory = [w.clone() for w in state["trajectory"]]
        self.rounds_seen = int(state["rounds_seen"])
        self.synthesis_round = int(state["synthesis_round"])
        change = float(state.get("image_change", -1.0))
        self._image_change = None if change < 0 else change
        self.synthetic = None
        if state["synthesized"]:
            self.synthetic = SyntheticSet(
                state["images"].clone(),
                state["label_logits"].clone(),
                float(state["syn_lr"]),
                [float(v) for v in state["matching_losses"]],
            )
