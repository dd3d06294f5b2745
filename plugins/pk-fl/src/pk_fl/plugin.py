"""pk-fl registrations and config dataclasses (stdlib + pk.core only; no torch here).

Bases other FL plugins inherit: :class:`ImageFileConfig` (an image dataset read from files,
with a seeded synthetic stand-in) and :class:`FedSimConfig` (a federated simulation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk.core import hookimpl
from pk.core.configs import FileSource, OptimConfig
from pk.core.hookspecs import Register

FL_BASE_PAPER = {
    "title": "Communication-Efficient Learning of Deep Networks from Decentralized Data",
    "year": 2017,
    "url": "https://arxiv.org/abs/1602.05629",
}


# -- datasets ----------------------------------------------------------------------------
@dataclass
class SyntheticImagesConfig:
    """Seeded class-template images + Gaussian noise; ``image_shape`` = [C, H, W]."""

    num_samples: int = field(default=1200, metadata={"ge": 2})
    image_shape: list[int] = field(default_factory=lambda: [1, 8, 8], metadata={"ge": 1})
    num_classes: int = field(default=10, metadata={"ge": 2})
    noise: float = field(default=0.35, metadata={"ge": 0})
    num_valid: int = field(default=100, metadata={"ge": 0})
    num_test: int = field(default=300, metadata={"ge": 1})


@dataclass
class ImageFileConfig(FileSource):
    """An image dataset read from files: ``source`` auto | file | download | synthetic ("auto"
    falls back to ``synthetic_samples`` seeded synthetic images when no file is found; no
    official download is known), ``path`` the files; ``num_valid`` images carved off for
    validation."""

    source: Literal["auto", "file", "download", "synthetic"] = "auto"
    num_valid: int = field(default=500, metadata={"ge": 0})
    synthetic_samples: int = field(default=2000, metadata={"ge": 20})


@dataclass
class MnistConfig(ImageFileConfig):
    """MNIST idx(.gz) files; default the shared t10k split (10,000): 8,000 train / 500 valid
    (server proxy pool) / 1,500 test, by a seeded permutation."""

    split_prefix: Literal["t10k", "train"] = "t10k"
    num_test: int = field(default=1500, metadata={"ge": 1})


@dataclass
class DigitsConfig(ImageFileConfig):
    """scikit-learn digits (1,797 8x8 images, pixels / 16)."""

    num_valid: int = field(default=200, metadata={"ge": 0})
    num_test: int = field(default=360, metadata={"ge": 1})
    synthetic_samples: int = field(default=1797, metadata={"ge": 20})


@dataclass
class Cifar10Config(ImageFileConfig):
    """CIFAR-10 from ``path`` (or the shared ``cifar10-dev`` slice): a folder with ``train.npz`` and
    ``test.npz`` (``x`` uint8 N x 32 x 32 x 3, ``y`` int in 0..9), the binary batches
    (``data_batch_1..5.bin``, ``test_batch.bin``) or the python batches (``data_batch_1..5``,
    ``test_batch``; read with an unpickler that admits only numpy arrays). Valid is carved from
    the training images, test is the test file. ``num_train`` > 0 keeps that many training
    images (a seeded subset) for small CPU runs."""

    num_valid: int = field(default=1000, metadata={"ge": 0})
    num_train: int = field(default=0, metadata={"ge": 0})
    synthetic_samples: int = field(default=1200, metadata={"ge": 20})


# -- models ------------------------------------------------------------------------------
@dataclass
class CNNConfig:
    """Dynafed ConvNet: ``depth`` conv blocks of ``width`` channels (paper: 128, 3)."""

    width: int = field(default=32, metadata={"ge": 1, "le": 4096})
    depth: int = field(default=3, metadata={"ge": 1, "le": 16})
    norm: Literal["instancenorm", "none"] = "instancenorm"


# -- trainer -----------------------------------------------------------------------------
@dataclass
class FedSimConfig(OptimConfig):
    """In-process federated simulation (one trainer run = ``rounds`` server rounds).

    Clients: ``num_clients`` shards of the train split from ``partition``; each round
    ``max(1, int(num_clients * participation))`` are sampled (seeded), train ``local_epochs``
    and return full state dicts. ``weighting`` sets the weight handed to the aggregator
    ("examples" = client sample count, "uniform" = 1, i.e. unweighted as in Dynafed's code).
    ``proximal_mu`` > 0 turns clients into FedProx clients (loss + mu * ||w - w_round||^2,
    no 1/2 factor, as in Dynafed's reference). ``attack`` applies to a fixed, seeded
    ``malicious_fraction`` of clients; LIE shifts by ``lie_z`` std, or with ``lie_z_rule =
    "paper"`` by the paper's z_max for the round's sampled clients and attackers.
    ``client_batching``: "loop" trains the sampled clients one after another, "vmap" all at once
    with ``torch.func`` (same client states to float tolerance; SGD only, no BatchNorm or
    dropout; see :mod:`pk_fl.trainers.vectorised`).
    """

    rounds: int = field(default=10, metadata={"ge": 1, "le": 100_000})
    num_clients: int = field(default=10, metadata={"ge": 1, "le": 100_000, "budget": True})
    participation: float = field(default=1.0, metadata={"gt": 0, "le": 1, "budget": True})
    local_epochs: int = field(default=1, metadata={"ge": 0, "le": 10_000})
    batch_size: int = field(default=32, metadata={"ge": 1, "budget": True})
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = field(default=0.05, metadata={"gt": 0})
    momentum: float = field(default=0.0, metadata={"ge": 0, "lt": 1})
    persistent_client_optimizer: bool = False
    client_batching: Literal["loop", "vmap"] = "loop"
    proximal_mu: float = field(default=0.0, metadata={"ge": 0})
    weighting: Literal["examples", "uniform"] = "examples"
    partition: Literal["iid", "dirichlet", "dynafed-dirichlet", "shards"] = field(
        default="iid", metadata={"protocol": True})
    alpha: float = field(default=0.5, metadata={"gt": 0, "protocol": True})
    shards_per_client: int = field(default=2, metadata={"ge": 1, "protocol": True})
    attack: Literal["none", "label-flip", "all-to-one", "sign-flip", "scale", "gaussian", "lie",
                    "lie-own"] = field(default="none", metadata={"protocol": True})
    malicious_fraction: float = field(default=0.0, metadata={"ge": 0, "lt": 1, "protocol": True})
    attack_scale: float = field(default=5.0, metadata={"protocol": True})
    attack_sigma: float = field(default=1.0, metadata={"ge": 0, "protocol": True})
    lie_z: float = field(default=1.0, metadata={"protocol": True})
    lie_z_rule: Literal["fixed", "paper"] = field(default="fixed", metadata={"protocol": True})
    proxy_samples: int = field(default=100, metadata={"ge": 0})
    eval_split: str = field(default="test", metadata={"protocol": True})
    eval_every: int = field(default=1, metadata={"ge": 0})
    eval_batch_size: int = field(default=1000, metadata={"ge": 1})
    checkpoint_every: int = field(default=1, metadata={"ge": 0})
    plot: bool = True


@dataclass
class FlowerConfig(FedSimConfig):
    """``fedsim``'s fields, run as a Flower ServerApp/ClientApp (flwr >= 1.20, ``pk-fl[flower]``):
    same partition, client trainer, attacks, aggregator and seeds, so the result matches ``fedsim``.
    ``backend``: "in-process" (Flower's ServerApp, strategy loop and ClientApps in this process
    through an in-memory Grid) or "ray" (``flwr.simulation.run_simulation``; needs ray).
    Not resumable; ``persistent_client_optimizer`` is refused (ClientApps are stateless)."""

    backend: Literal["in-process", "ray"] = "in-process"
    checkpoint_every: int = field(default=0, metadata={"ge": 0})


# -- aggregators ---------------------------------------------------------------------------
@dataclass
class MedianConfig:
    """Coordinate-wise median of the clients with positive weight (weights otherwise ignored)."""


@dataclass
class TrimmedMeanConfig:
    """Coordinate-wise mean after trimming ``b`` values from each side, where
    ``b = ceil(trim_ratio * m) + 1`` (Dynafed's rule; ``plus_one = false`` drops the +1),
    capped at ``(m - 1) // 2``."""

    trim_ratio: float = field(default=0.2, metadata={"ge": 0, "lt": 0.5})
    plus_one: bool = True


@dataclass
class KrumConfig:
    """Krum: pick the client whose ``m - f - 2`` nearest neighbours are closest, with
    ``f = ceil(byzantine_ratio * m) + 1`` (Dynafed's rule); ``multi`` > 1 averages the best."""

    byzantine_ratio: float = field(default=0.2, metadata={"ge": 0, "lt": 1})
    plus_one: bool = True
    multi: int = field(default=1, metadata={"ge": 1})


@dataclass
class ABAVGConfig:
    """Weights = each client's accuracy on the server proxy set, normalised (whole proxy set,
    not the reference's last batch); needs ``trainer.proxy_samples`` > 0."""


@dataclass
class FLTrustConfig:
    """FLTrust: trust = ReLU(cos(client update, server update)) with the server update from
    ``server_epochs`` epochs of SGD (``server_lr``, batch ``server_batch_size``) on the proxy
    (root) set; client updates rescaled to the server update's norm."""

    server_epochs: int = field(default=1, metadata={"ge": 1, "le": 1000})
    server_lr: float = field(default=0.05, metadata={"gt": 0})
    server_batch_size: int = field(default=32, metadata={"ge": 1})


@hookimpl
def pk_register_datasets(register: Register) -> None:
    mod = "pk_fl.data.images"
    register("synthetic-images", f"{mod}:build_synthetic_images", config=SyntheticImagesConfig,
             summary="Seeded synthetic image classification (template + noise), the FL default",
             tasks=("classification",))
    register("mnist", f"{mod}:build_mnist", config=MnistConfig,
             summary="MNIST from idx(.gz) files (default: shared mnist_t10k), 1x28x28, 10 classes",
             tasks=("classification",))
    register("sklearn-digits", f"{mod}:build_sklearn_digits", config=DigitsConfig,
             summary="scikit-learn 8x8 digits from digits.csv.gz, 1x8x8, 10 classes", tasks=("classification",))
    register("cifar10", f"{mod}:build_cifar10", config=Cifar10Config,
             summary="CIFAR-10 from train/test.npz, the binary or the python batches (numpy-only unpickler), "
                     "3x32x32", tasks=("classification",))


@hookimpl
def pk_register_models(register: Register) -> None:
    register("cnn", "pk_fl.models.cnn:build_cnn", config=CNNConfig,
             summary="Dynafed ConvNet: conv3x3 + instance norm + ReLU + avgpool blocks, linear head",
             tasks=("classification",),
             paper={"title": "DYNAFED: Tackling Client Data Heterogeneity with Global Dynamics", "year": 2023,
                    "url": "https://arxiv.org/abs/2211.10878"})


@hookimpl
def pk_register_trainers(register: Register) -> None:
    register("fedsim", "pk_fl.trainers.simulator:FedSimTrainer", config=FedSimConfig,
             summary="In-process federated simulator: sampling, local epochs, attacks, any aggregator, resume",
             tasks=("classification",), paper=FL_BASE_PAPER, accepts=("aggregator",))
    register("flower", "pk_fl.trainers.flower:FlowerTrainer", config=FlowerConfig,
             summary="fedsim's rounds as a Flower ServerApp/ClientApp simulation (in-process grid or Ray)",
             tasks=("classification",), paper=FL_BASE_PAPER, accepts=("aggregator",))


@hookimpl
def pk_register_aggregators(register: Register) -> None:
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
    register("abavg", f"{mod}:ABAVG", config=ABAVGConfig, tags=("proxy-data",),
             summary="ABAVG: clients weighted by their accuracy on the server proxy set (Dynafed code base)")
    register("fltrust", f"{mod}:FLTrust", config=FLTrustConfig, tags=("robust", "proxy-data"),
             summary="FLTrust: trust = ReLU(cos) with a server update on a root set, norm-clipped updates",
             paper={"title": "FLTrust: Byzantine-robust Federated Learning via Trust Bootstrapping", "year": 2021,
                    "url": "https://arxiv.org/abs/2012.13995"})
