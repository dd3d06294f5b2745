"""pk-dynafed registrations and config (stdlib + pk.core only; no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pk.core import hookimpl

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
    once: ``ipc`` images per class (noise ``pixel_mean + pixel_std * N(0, 1)``, i.e. standard
    normal in the reference's normalised space), soft-label logits starting at
    ``one_hot * label_init``, a learned step size starting at ``lr_teacher``; ``iterations``
    outer steps of trajectory matching (``syn_steps`` unrolled full-batch SGD steps from w^t,
    target = mean of 2..``max_ave_num`` snapshots drawn with replacement from
    w^{t+1}..w^{t+expert_epochs}, or w^{t+s} without ``weight_averaging``). From then on the
    averaged model is fine-tuned every round: ``distill_iter`` epochs of Adam(``distill_lr``)
    over D_syn in batches of ``distill_batch`` with DSA augmentation and the soft-label loss.
    ``dsa_strategy``: "_"-joined families of color, crop, cutout, flip, scale, rotate, one
    drawn per call; "none" disables augmentation (it is always off for flat inputs).
    ``learn_labels = false`` freezes hard one-hot labels (scaled by ``hard_label_scale``),
    an ablation.
    """

    average: Literal["uniform", "examples"] = "uniform"
    min_trajectory_length: int = 25
    ipc: int = 15
    syn_steps: int = 20
    expert_epochs: int = 3
    iterations: int = 3000
    min_start_epoch: int = 0
    max_start_epoch: int = 50
    weight_averaging: bool = True
    least_ave_num: int = 2
    max_ave_num: int = 3
    lr_img: float = 0.05
    lr_label: float = 0.01
    lr_lr: float = 1e-5
    lr_teacher: float = 0.04
    label_init: float = 0.0
    learn_labels: bool = True
    hard_label_scale: float = 10.0
    pixel_mean: float = 0.1307
    pixel_std: float = 0.3081
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    distill_iter: int = 20
    distill_lr: float = 1e-4
    distill_batch: int = 256
    bn_refresh_passes: int = 3

    pk_test: ClassVar[dict[str, object]] = {
        "min_trajectory_length": 4, "ipc": 1, "syn_steps": 3, "iterations": 3, "distill_iter": 2,
    }


@hookimpl
def pk_register_aggregators(register) -> None:  # type: ignore[no-untyped-def]
    register("dynafed", "pk_dynafed.aggregator:Dynafed", config=DynafedConfig,
             summary="Dynafed: unweighted FedAvg, then fine-tuning on pseudo data synthesised once from the global trajectory",
             paper=DYNAFED_PAPER, tags=("server-data-free",))
