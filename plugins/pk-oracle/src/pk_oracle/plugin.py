"""pk-oracle registrations and config dataclasses (stdlib and pk.core only: no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pk.core import hookimpl
from pk.core.builtins.plugin import SupervisedConfig
from pk.core.hookspecs import Register

PAPER = {
    "title": "Foundation Model-oriented Robustness: Robust Image Model Evaluation with Pretrained Models",
    "year": 2024,
    "url": "https://arxiv.org/abs/2308.10632",
}
VIT_PAPER = {"title": "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", "year": 2021,
             "url": "https://arxiv.org/abs/2010.11929"}
MADRY_PAPER = {"title": "Towards Deep Learning Models Resistant to Adversarial Attacks", "year": 2018,
               "url": "https://arxiv.org/abs/1706.06083"}
TASKS = ("classification",)


#: the default oracle zoo
DEFAULT_ZOO = ("svc", "knn", "logreg")


@dataclass
class OracleZooConfig:
    """What ``fmr`` and ``pgd`` share: the oracle zoo (``oracles``, see FMRConfig), its
    acceptance ``rule`` ("all" or "majority" of the oracles) and threshold ``tau`` on the
    zoo's mean p(y), the first ``max_test`` test images (0 = all) and the zoo ``cache``."""

    oracles: list[str] = field(default_factory=lambda: list(DEFAULT_ZOO))
    rule: Literal["all", "majority"] = "all"
    tau: float = field(default=0.5, metadata={"ge": 0, "le": 1})
    batch_size: int = field(default=512, metadata={"ge": 1})
    max_test: int = field(default=0, metadata={"ge": 0})
    cache: bool = True


@dataclass
class FMRConfig(OracleZooConfig):
    """The FMR evaluator (paper Algorithm 1, reconstructed; see the plugin README).

    For each test image: z0 = E(x); ascend the evaluated model's cross-entropy in latent
    space with normalised steps of ``step_size`` for at most ``budget`` steps; a step is kept
    only while the oracle zoo still assigns the true label; stop at the first fool.
    ``oracles``: "svc", "knn", "logreg", "mlp-oracle" (sklearn families), "model:<registered
    model>" (a pk model trained on the train split) and "clip" (needs ``clip_path`` or
    ``PK_CLIP_PATH``; skipped with a message otherwise). ``generator``: "pca", "autoencoder",
    "pixel" (the baseline: z = x) or "custom" (``generator_factory`` = "module:callable" called
    with (``generator_path``, image_shape), returning an object with ``encode``/``decode``, e.g.
    a VQGAN wrapper around local weights). ``pgd_eps`` > 0 also runs the fixed-eps
    PGD-Linf baseline and reports how many PGD images the zoo rejects. ``oracle_data``:
    the zoo is fitted on the train split (the targets' own data, the pilot's setting) or on
    ``"heldout"`` test images after the first ``max_test`` (never trained on, never scored).
    """

    generator: Literal["pca", "autoencoder", "pixel", "custom"] = "pca"
    latent_dim: int = field(default=24, metadata={"ge": 1})
    generator_factory: str = ""
    generator_path: str = ""
    ae_epochs: int = field(default=60, metadata={"ge": 0})
    oracle_data: Literal["train", "heldout"] = "train"
    clip_path: str = ""
    model_oracle_epochs: int = field(default=20, metadata={"ge": 0})
    step_size: float = field(default=0.25, metadata={"gt": 0})
    budget: int = field(default=40, metadata={"ge": 0})
    min_oracle_accuracy: float = field(default=0.9, metadata={"ge": 0, "le": 1})
    allow_weak_oracles: bool = False
    pgd_eps: float = field(default=0.1, metadata={"ge": 0})
    pgd_steps: int = field(default=20, metadata={"ge": 0})
    pgd_step_size: float = field(default=0.02, metadata={"gt": 0})
    grid_images: int = field(default=16, metadata={"ge": 0})
    per_class: bool = True

    pk_test: ClassVar[dict[str, object]] = {"budget": 3, "ae_epochs": 2, "grid_images": 0, "max_test": 64,
                                            "cache": False, "oracles": ["knn"], "pgd_steps": 2,
                                            "allow_weak_oracles": True}


@dataclass
class PGDConfig(OracleZooConfig):
    """Fixed-eps PGD-Linf robust accuracy (no random start, clamped to the data range), plus
    the share of PGD images the oracle zoo still labels with the original class."""

    eps: float = field(default=0.1, metadata={"ge": 0})
    steps: int = field(default=20, metadata={"ge": 0})
    step_size: float = field(default=0.02, metadata={"gt": 0})

    pk_test: ClassVar[dict[str, object]] = {"steps": 2, "max_test": 64, "cache": False, "oracles": ["knn"]}


@dataclass
class ViTConfig:
    """A small ViT: ``patch x patch`` patches, ``depth`` pre-norm blocks of width ``dim``."""

    patch: int = field(default=7, metadata={"ge": 1})
    dim: int = field(default=64, metadata={"ge": 1})
    depth: int = field(default=4, metadata={"ge": 1})
    heads: int = field(default=4, metadata={"ge": 1})
    mlp_ratio: float = field(default=2.0, metadata={"gt": 0})
    dropout: float = field(default=0.0, metadata={"ge": 0, "lt": 1})

    pk_test: ClassVar[dict[str, object]] = {"patch": 4, "dim": 16, "depth": 1, "heads": 2}
    pk_test_with: ClassVar[dict[str, str]] = {"dataset": "synthetic-images"}


@dataclass
class NoiseTrainerConfig(SupervisedConfig):
    """Supervised training on x + N(0, sigma^2) (clamped to the data range); best-valid weights kept."""

    sigma: float = field(default=0.3, metadata={"ge": 0})

    pk_test: ClassVar[dict[str, object]] = {"max_epochs": 2, "max_steps": 6}


@dataclass
class AdversarialTrainerConfig(SupervisedConfig):
    """PGD-Linf adversarial training (Madry et al.): loss = (1 - adv_weight) * CE(x) +
    adv_weight * CE(PGD(x)), random start in the eps ball; best-valid (clean) weights kept."""

    eps: float = field(default=0.1, metadata={"ge": 0})
    attack_steps: int = field(default=5, metadata={"ge": 1, "budget": True})
    attack_step_size: float = field(default=0.03, metadata={"gt": 0})
    adv_weight: float = field(default=1.0, metadata={"ge": 0, "le": 1})

    pk_test: ClassVar[dict[str, object]] = {"max_epochs": 2, "max_steps": 6, "attack_steps": 1}


@hookimpl
def pk_register_evaluators(register: Register) -> None:
    register("fmr", "pk_oracle.evaluators.fmr:FMREvaluator", config=FMRConfig, tasks=TASKS, paper=PAPER,
             tags=("method",),
             summary="FMR: oracle-bounded latent perturbation search; SA, PA, FMR = PA/SA, oracle acceptance, PGD")
    register("pgd", "pk_oracle.evaluators.pgd:PGDEvaluator", config=PGDConfig, tasks=TASKS, tags=("baseline",),
             summary="Fixed-eps PGD-Linf robust accuracy and the oracle zoo's agreement on PGD images")


@hookimpl
def pk_register_models(register: Register) -> None:
    register("vit", "pk_oracle.models.vit:build_vit", config=ViTConfig, tasks=TASKS, paper=VIT_PAPER,
             tags=("baseline",), summary="A small Vision Transformer (patch embedding, class token, pre-norm blocks) "
                                         "for image classification")


@hookimpl
def pk_register_trainers(register: Register) -> None:
    register("noise-augmented", "pk_oracle.trainers:NoiseAugmentedTrainer", config=NoiseTrainerConfig, tasks=TASKS,
             tags=("baseline",),
             summary="Supervised training with Gaussian input noise (a robustness baseline to rank)")
    register("pgd-adversarial", "pk_oracle.trainers:AdversarialTrainer", config=AdversarialTrainerConfig, tasks=TASKS,
             paper=MADRY_PAPER, tags=("baseline",),
             summary="PGD-Linf adversarial training (Madry et al. 2018), a robustness baseline to rank")
