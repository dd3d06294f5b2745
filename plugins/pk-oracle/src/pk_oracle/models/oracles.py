"""Oracles (the "foundation model" zoo) and the acceptance rule.

An oracle only needs ``name``, ``num_classes`` and ``predict_proba(x) -> [N, K]`` on
flattened inputs ``x: float [N, D]``; it runs under ``torch.no_grad()`` and is **never
differentiated through**: it is a filter, so any classifier (sklearn, a pk model, CLIP) fits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from pk.core.errors import ConfigError


class Oracle(Protocol):
    name: str
    num_classes: int

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor: ...


# -- sklearn oracles ---------------------------------------------------------------------
SKLEARN_FAMILIES = ("svc", "knn", "logreg", "mlp-oracle")


def make_sklearn_estimator(family: str, seed: int) -> Any:
    """The zoo's sklearn families (the pilot's settings): SVC(C=10, probability), kNN(k=3),
    LogisticRegression, and a small sklearn MLP."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    rs = seed % (2**31)
    if family == "svc":
        from sklearn import __version__ as sk_version

        if tuple(int(v) for v in sk_version.split(".")[:2]) >= (1, 9):  # SVC(probability=True) is deprecated
            from sklearn.calibration import CalibratedClassifierCV

            return CalibratedClassifierCV(SVC(C=10.0, gamma="scale", random_state=rs), ensemble=False)
        return SVC(C=10.0, gamma="scale", probability=True, random_state=rs)
    if family == "knn":
        return KNeighborsClassifier(n_neighbors=3)
    if family == "logreg":
        return LogisticRegression(max_iter=2000, random_state=rs)
    if family == "mlp-oracle":
        return MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=rs)
    raise ConfigError(f"unknown oracle family {family!r}; use one of {', '.join(SKLEARN_FAMILIES)}, "
                      "'clip' or 'model:<name>'")


#: families whose fitted state is plain arrays and scalars (cached as npz); SVC's calibrated
#: ensemble and kNN's tree are not, so they are refitted (kNN's fit only stores the data)
CACHEABLE_FAMILIES = ("logreg", "mlp-oracle")


class NotCacheable(Exception):
    """Raised by ``state()`` when an object's state is not plain arrays and scalars."""


class SklearnOracle:
    """Wraps a fitted sklearn classifier; classes must be ``0..K-1`` (missing ones get p = 0)."""

    def __init__(self, name: str, estimator: Any, num_classes: int) -> None:
        self.name = name
        self.estimator = estimator
        self.num_classes = num_classes

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json meta, arrays)``: the public fitted attributes (``coef_``, ``coefs_``...) of a
        family in CACHEABLE_FAMILIES; raises NotCacheable for the others or for any attribute
        that is not an array, a list of arrays or a JSON scalar."""
        if self.name not in CACHEABLE_FAMILIES:
            raise NotCacheable(self.name)
        scalars: dict[str, Any] = {}
        lists: dict[str, int] = {}
        arrays: dict[str, np.ndarray] = {}
        for key, value in vars(self.estimator).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            if isinstance(value, np.ndarray) and value.dtype != object:
                arrays[key] = value
            elif isinstance(value, list) and value and all(isinstance(v, np.ndarray) and v.dtype != object
                                                           for v in value):
                lists[key] = len(value)
                arrays.update({f"{key}.{i}": v for i, v in enumerate(value)})
            elif value is None or isinstance(value, (bool, int, float, str)) or (
                    isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)):
                scalars[key] = value.item() if isinstance(value, np.generic) else value
            elif isinstance(value, np.generic):
                scalars[key] = value.item()
            else:
                raise NotCacheable(f"{self.name}.{key}: {type(value).__name__}")
        meta = {"kind": "sklearn", "name": self.name, "num_classes": self.num_classes, "scalars": scalars,
                "lists": lists}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], seed: int) -> SklearnOracle:
        """Rebuild from ``state()``: a fresh estimator of the family (same seed, same settings)
        with the fitted attributes set back; predicts exactly as the fitted one did."""
        est = make_sklearn_estimator(meta["name"], seed)
        for key, value in meta["scalars"].items():
            setattr(est, key, value)
        for key, count in meta["lists"].items():
            setattr(est, key, [arrays[f"{key}.{i}"] for i in range(count)])
        for key, value in arrays.items():
            if "." not in key:
                setattr(est, key, value)
        return cls(meta["name"], est, int(meta["num_classes"]))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().reshape(x.shape[0], -1).cpu().double().numpy()
        proba = np.zeros((flat.shape[0], self.num_classes))
        if flat.shape[0]:
            proba[:, np.asarray(self.estimator.classes_, dtype=int)] = self.estimator.predict_proba(flat)
        return torch.from_numpy(proba).float()


class TorchOracle:
    """A classifier ``nn.Module`` (e.g. a registered pk model) used as an oracle.

    ``image_shape`` reshapes flat inputs back to what the module's ``predict`` expects."""

    def __init__(self, name: str, module: nn.Module, num_classes: int, image_shape: Sequence[int] | None) -> None:
        self.name = name
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape) if image_shape else None

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json meta, arrays)``: the module's state dict as float arrays (rebuild the module
        the same way, then ``load_state``)."""
        arrays = {}
        for key, value in self.module.state_dict().items():
            if value.dtype not in (torch.float32, torch.float64, torch.int64):
                raise NotCacheable(f"{self.name}.{key}: {value.dtype}")
            arrays[key] = value.detach().cpu().numpy()
        return {"kind": "torch", "name": self.name, "num_classes": self.num_classes,
                "image_shape": list(self.image_shape) if self.image_shape else None}, arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> TorchOracle:
        self.module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)
        return self

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        if self.image_shape is not None:
            x = x.reshape(x.shape[0], *self.image_shape)
        return torch.softmax(self.module.predict({"x": x}).float(), dim=-1).cpu()


class CLIPZeroShotOracle:
    """CLIP zero-shot: prompts "a photo of the digit {c}" -> normalised text embeddings;
    logits = logit_scale * cos(image, text). Greyscale inputs are repeated to 3 channels and
    resized to the vision tower's size (tiny 8x8 digits make a poor CLIP oracle)."""

    def __init__(self, model: Any, processor: Any | None, class_names: Sequence[str], image_shape: Sequence[int] | None,
                 prompt: str = "a photo of the digit {}") -> None:
        self.name = "clip"
        self.model = model.eval()
        self.num_classes = len(class_names)
        self.image_shape = tuple(image_shape) if image_shape else None
        self.image_size = int(model.config.vision_config.image_size)
        with torch.no_grad():
            if processor is not None:
                tokens = processor(text=[prompt.format(c) for c in class_names], return_tensors="pt", padding=True)
                ids, mask = tokens["input_ids"], tokens.get("attention_mask")
            else:  # a tokenizer-free test model: one synthetic token id per class
                vocab = int(model.config.text_config.vocab_size)
                ids = (torch.arange(self.num_classes) % (vocab - 2) + 1).unsqueeze(1).repeat(1, 4)
                mask = torch.ones_like(ids)
            text = model.get_text_features(input_ids=ids, attention_mask=mask)
            text = getattr(text, "pooler_output", text)
            self.text = nn.functional.normalize(text, dim=-1)
        mean = getattr(getattr(processor, "image_processor", None), "image_mean", None) or [0.4815, 0.4578, 0.4082]
        std = getattr(getattr(processor, "image_processor", None), "image_std", None) or [0.2686, 0.2613, 0.2758]
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        img = x.detach().float().reshape(n, *(self.image_shape or (1, 1, x[0].numel())))
        if img.dim() == 3:
            img = img.unsqueeze(1)
        if img.shape[1] == 1:
            img = img.repeat(1, 3, 1, 1)
        img = nn.functional.interpolate(img, size=(self.image_size, self.image_size), mode="bilinear",
                                        align_corners=False)
        feats = self.model.get_image_features(pixel_values=(img - self.mean) / self.std)
        feats = nn.functional.normalize(getattr(feats, "pooler_output", feats), dim=-1)
        logits = self.model.logit_scale.exp() * feats @ self.text.T
        return torch.softmax(logits, dim=-1)


def load_clip_oracle(path: str, num_classes: int, image_shape: Sequence[int] | None) -> CLIPZeroShotOracle | None:
    """CLIP from local weights only (``local_files_only=True``); None when no path is given
    or it does not exist (the caller reports the skip)."""
    path = path or os.environ.get("PK_CLIP_PATH", "")
    if not path or not Path(path).exists():
        return None
    try:
        from transformers import CLIPModel, CLIPProcessor
    except ImportError:
        raise ConfigError("oracle 'clip' needs transformers; pip install 'pk-oracle[clip]'") from None
    model = CLIPModel.from_pretrained(path, local_files_only=True)
    processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
    return CLIPZeroShotOracle(model, processor, [str(c) for c in range(num_classes)], image_shape)


# -- the zoo -----------------------------------------------------------------------------
@dataclass
class OracleZoo:
    """Acceptance: ``rule="all"`` needs every oracle's argmax == y, ``"majority"`` more than
    half of them; in both cases the zoo's mean probability of y must be >= ``tau``."""

    oracles: list[Any]
    rule: str = "all"
    tau: float = 0.5

    def __post_init__(self) -> None:
        if not self.oracles:
            raise ConfigError("the oracle zoo is empty; set evaluator.oracles to at least one oracle")
        if self.rule not in ("all", "majority"):
            raise ConfigError(f"evaluator.rule must be 'all' or 'majority', got {self.rule!r}")

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.oracles]

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``[H, N, K]`` class probabilities of every oracle."""
        return torch.stack([o.predict_proba(x).float() for o in self.oracles])

    @torch.no_grad()
    def accept(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """BoolTensor ``[N]``: the zoo still assigns label ``y`` to ``x``."""
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool)
        return accept_from_probabilities(self.probabilities(x), y.cpu(), self.rule, self.tau)


def accept_from_probabilities(proba: torch.Tensor, y: torch.Tensor, rule: str, tau: float) -> torch.Tensor:
    """The acceptance rule on ``proba [H, N, K]`` and labels ``y [N]`` (pure; see OracleZoo)."""
    agree = proba.argmax(-1) == y.unsqueeze(0)
    votes = agree.all(0) if rule == "all" else agree.float().sum(0) > proba.shape[0] / 2
    p_true = proba.gather(2, y.view(1, -1, 1).expand(proba.shape[0], -1, 1)).squeeze(2).mean(0)
    return votes & (p_true >= tau)


def calibrate_tau(p_true: torch.Tensor, correct: torch.Tensor, precision: float = 0.99) -> float:
    """The smallest tau such that, among samples with ``p_true >= tau``, the oracle is right
    on at least ``precision`` of them (``p_true``: the zoo's probability of its predicted label
    on clean validation data; ``correct``: whether that prediction is the true label).
    Returns ``inf`` when no threshold reaches the target."""
    order = torch.argsort(p_true, descending=True)
    p_sorted, c_sorted = p_true[order], correct[order].float()
    running = torch.cumsum(c_sorted, 0) / torch.arange(1, len(c_sorted) + 1)
    best = float("inf")
    for i in range(len(p_sorted)):
        # a threshold at p_sorted[i] admits every sample with p >= p_sorted[i]
        last = int((p_sorted >= p_sorted[i]).nonzero().max())
        if running[last] >= precision:
            best = min(best, float(p_sorted[i]))
    return best
