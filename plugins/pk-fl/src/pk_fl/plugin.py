"""pk-fl registrations and config dataclasses (stdlib + pk.core only; no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk.core import hookimpl

FL_BASE_PAPER = {
    "title": "Communication-Efficient Learning of Deep Networks from Decentralized Data",
    "year": 2017,
    "url": "https://arxiv.org/abs/1602.05629",
}


# -- datasets ----------------------------------------------------------------------------
@dataclass
class SyntheticImagesConfig:
    """Seeded class-template images + Gaussian noise; ``image_shape`` = [C, H, W]."""

    num_samples: int = 1200
    image_shape: list[int] = field(default_factory=lambda: [1, 8, 8])
    num_classes: int = 10
    noise: float = 0.35
    num_valid: int = 100
    num_test: int = 300


@dataclass
class MnistConfig:
    """MNIST idx(.gz) files; default the shared t10k split (10,000): 8,000 train / 500 valid
    (server proxy pool) / 1,500 test, by a seeded permutation."""

    source: str = "auto"
    path: str = ""
    split_prefix: str = "t10k"
    num_valid: int = 500
    num_test: int = 1500
    synthetic_samples: int = 2000


@dataclass
class DigitsConfig:
    """scikit-learn digits (1,797 8x8 images, pixels / 16)."""

    source: str = "auto"
    path: str = ""
    num_valid: int = 200
    num_test: int = 360
    synthetic_samples: int = 1797


@dataclass
class Cifar10Config:
    """CIFAR-10 binary batches; valid carved from the training batches, test = test_batch.bin."""

    source: str = "auto"
    path: str = ""
    num_valid: int = 1000
    synthetic_samples: int = 1200


# -- models ------------------------------------------------------------------------------
@dataclass
class CNNConfig:
    """Dynafed ConvNet: ``depth`` conv blocks of ``width`` channels (paper: 128, 3)."""

    width: int = 32
    depth: int = 3
    norm: Literal["instancenorm", "none"] = "instancenorm"


# -- trainer -----------------------------------------------------------------------------
@dataclass
class FedSimConfig:
    """In-process federated simulation (one trainer run = ``rounds`` server rounds).

    Clients: ``num_clients`` shards of the train split from ``partition``; each round
    ``max(1, int(num_clients * participation))`` are sampled (seeded), train ``local_epochs``
    and return full state dicts. ``weighting`` sets the weight handed to the aggregator
    ("examples" = client sample count, "uniform" = 1, i.e. unweighted as in Dynafed's code).
    ``proximal_mu`` > 0 turns clients into FedProx clients (loss + mu * ||w - w_round||^2,
    no 1/2 factor, as in Dynafed's reference). ``attack`` applies to a fixed, seeded
    ``malicious_fraction`` of clients.
    """

    rounds: int = 10
    num_clients: int = 10
    participation: float = 1.0
    local_epochs: int = 1
    batch_size: int = 32
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    persistent_client_optimizer: bool = False
    proximal_mu: float = 0.0
    weighting: Literal["examples", "uniform"] = "examples"
    partition: Literal["iid", "dirichlet", "dynafed-dirichlet", "shards"] = "iid"
    alpha: float = 0.5
    shards_per_client: int = 2
    attack: Literal["none", "label-flip", "all-to-one", "sign-flip", "scale", "gaussian", "lie"] = "none"
    malicious_fraction: float = 0.0
    attack_scale: float = 5.0
    attack_sigma: float = 1.0
    lie_z: float = 1.0
    proxy_samples: int = 100
    eval_split: str = "test"
    eval_every: int = 1
    eval_batch_size: int = 1000
    checkpoint_every: int = 1
    plot: bool = True


# -- aggregators ---------------------------------------------------------------------------
@dataclass
class MedianConfig:
    """Coordinate-wise median of the clients with positive weight (weights otherwise ignored)."""


@dataclass
class TrimmedMeanConfig:
    """Coordinate-wise mean after trimming ``b`` values from each side, where
    ``b = ceil(trim_ratio * m) + 1`` (Dynafed's rule; ``plus_one = false`` drops the +1),
    capped at ``(m - 1) // 2``."""

    trim_ratio: float = 0.2
    plus_one: bool = True


@dataclass
class KrumConfig:
    """Krum: pick the client whose ``m - f - 2`` nearest neighbours are closest, with
    ``f = ceil(byzantine_ratio * m) + 1`` (Dynafed's rule); ``multi`` > 1 averages the best."""

    byzantine_ratio: float = 0.2
    plus_one: bool = True
    multi: int = 1


@hookimpl
def pk_register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    mod = "pk_fl.data.images"
    register("synthetic-images", f"{mod}:build_synthetic_images", config=SyntheticImagesConfig,
             summary="Seeded synthetic image classification (template + noise), the FL default", tasks=("classification",))
    register("mnist", f"{mod}:build_mnist", config=MnistConfig,
             summary="MNIST from idx(.gz) files (default: shared mnist_t10k), 1x28x28, 10 classes", tasks=("classification",))
    register("sklearn-digits", f"{mod}:build_sklearn_digits", config=DigitsConfig,
             summary="scikit-learn 8x8 digits from digits.csv.gz, 1x8x8, 10 classes", tasks=("classification",))
    register("cifar10", f"{mod}:build_cifar10", config=Cifar10Config,
             summary="CIFAR-10 from the official binary batches (no unpickling), 3x32x32", tasks=("classification",))


@hookimpl
def pk_register_models(register) -> None:  # type: ignore[no-untyped-def]
    register("cnn", "pk_fl.models.cnn:build_cnn", config=CNNConfig,
             summary="Dynafed ConvNet: conv3x3 + instance norm + ReLU + avgpool blocks, linear head",
             tasks=("classification",),
             paper={"title": "DYNAFED: Tackling Client Data Heterogeneity with Global Dynamics", "year": 2023,
                    "url": "https://arxiv.org/abs/2211.10878"})


@hookimpl
def pk_register_trainers(register) -> None:  # type: ignore[no-untyped-def]
    register("fedsim", "pk_fl.simulator:FedSimTrainer", config=FedSimConfig,
             summary="In-process federated simulator: sampling, local epochs, attacks, any aggregator, resume",
             tasks=("classification",), paper=FL_BASE_PAPER, accepts=("aggregator",))


@hookimpl
def pk_register_aggregators(register) -> None:  # type: ignore[no-untyped-def]
    mod = "pk_fl.aggregators"
    register("median", f"{mod}:CoordinateMedian", config=MedianConfig, tags=("robust",),
             summary="Coordinate-wise median (Yin et al. 2018)",
             paper={"title": "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", "year": 2018,
                    "url": "https://arxiv.org/abs/1803.01498"})
    register("trimmed-mean", f"{mod}:TrimmedMean", config=TrimmedMeanConfig, tags=("robust",),
             summary="Coordinate-wise trimmed mean (Yin et al. 2018; Dynafed's trim count)",
             paper={"title": "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", "year": 2018,
                    "url": "https://arxiv.org/abs/1803.01498"})
    register("krum", f"{mod}:Krum", config=KrumConfig, tags=("robust",),
             summary="Krum / multi-Krum (Blanchard et al. 2017)",
             paper={"title": "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent", "year": 2017,
                    "url": "https://arxiv.org/abs/1703.02757"})
