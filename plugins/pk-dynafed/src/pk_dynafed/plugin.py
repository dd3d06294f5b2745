"""pk-dynafed registrations and config (stdlib + pk.core only; no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pk.core import hookimpl
from pk.core.hookspecs import Register

DYNAFED_PAPER = {
    "title": "DYNAFED: Tackling Client Data Heterogeneity with Global Dynamics",
    "year": 2023,
    "url": "https://arxiv.org/abs/2211.10878",
}


@dataclass
class DynafedConfig:
    """Dynafed server step. Defaults are the reference CIFAR-10 scripts (pipilurj/DynaFed).

    Rounds before synthesis: unweighted mean of the clients (``average = "uniform"``; clients
    with weight 0 are left out), every global model recorded as a trajectory snapshot.
    When ``min_trajectory_length`` (L) snapshots w^0..w^{L-1} exist, D_syn is synthesised
    once: ``ipc`` images per class (noise ``pixel_mean + pixel_std * N(0, 1)`` per channel, i.e.
    standard normal in the reference's normalised space; empty lists take the dataset's own
    train-split channel statistics, 0 / 1 for non-image data), soft-label logits starting at
    ``one_hot * label_init``, a learned step size starting at ``lr_teacher``; ``iterations``
    outer steps of trajectory matching (``syn_steps`` unrolled full-batch SGD steps from w^t,
    target = mean of 2..``max_ave_num`` snapshots drawn with replacement from
    w^{t+1}..w^{t+expert_epochs}, or w^{t+s} without ``weight_averaging``). From then on the
    averaged model is fine-tuned every round: ``distill_iter`` epochs of Adam(``distill_lr``)
    over D_syn in batches of ``distill_batch`` with DSA augmentation and the soft-label loss.
    ``dsa_strategy``: "_"-joined families of color, crop, cutout, flip, scale, rotate, one
    drawn per call; "none" disables augmentation (it is always off for flat inputs).
    ``learn_labels = false`` freezes hard one-hot labels (scaled by ``hard_label_scale``),
    an ablation. ``iterations = 0`` fine-tunes on the initial noise images and labels: the
    control that isolates what the synthesis contributes.
    """

    average: Literal["uniform", "examples"] = "uniform"
    min_trajectory_length: int = field(default=25, metadata={"ge": 2, "le": 100_000})
    ipc: int = field(default=15, metadata={"ge": 1, "le": 10_000})
    syn_steps: int = field(default=20, metadata={"ge": 1, "le": 10_000})
    expert_epochs: int = field(default=3, metadata={"ge": 1, "le": 10_000})
    iterations: int = field(default=3000, metadata={"ge": 0, "le": 1_000_000})
    min_start_epoch: int = field(default=0, metadata={"ge": 0})
    max_start_epoch: int = field(default=50, metadata={"ge": 0})
    weight_averaging: bool = True
    least_ave_num: int = field(default=2, metadata={"ge": 1})
    max_ave_num: int = field(default=3, metadata={"ge": 1})
    lr_img: float = field(default=0.05, metadata={"ge": 0})
    lr_label: float = field(default=0.01, metadata={"ge": 0})
    lr_lr: float = field(default=1e-5, metadata={"ge": 0})
    lr_teacher: float = field(default=0.04, metadata={"gt": 0})
    label_init: float = 0.0
    learn_labels: bool = True
    hard_label_scale: float = field(default=10.0, metadata={"gt": 0})
    pixel_mean: list[float] = field(default_factory=list)
    pixel_std: list[float] = field(default_factory=list, metadata={"gt": 0})
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    distill_iter: int = field(default=20, metadata={"ge": 0, "le": 100_000})
    distill_lr: float = field(default=1e-4, metadata={"gt": 0})
    distill_batch: int = field(default=256, metadata={"ge": 1})
    bn_refresh_passes: int = field(default=3, metadata={"ge": 0})

    pk_test: ClassVar[dict[str, object]] = {
        "min_trajectory_length": 4, "ipc": 1, "syn_steps": 3, "iterations": 3, "distill_iter": 2,
    }


@hookimpl
def pk_register_aggregators(register: Register) -> None:
    register("dynafed", "pk_dynafed.aggregators:Dynafed", config=DynafedConfig,
             summary="Dynafed: unweighted FedAvg, then fine-tuning on pseudo data synthesised once from the "
                     "global trajectory",
             paper=DYNAFED_PAPER, tags=("server-data-free",))
