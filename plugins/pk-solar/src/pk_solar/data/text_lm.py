"""The ``text-lm`` dataset: a text file cut into next-token windows for causal LM training.

Text: a local file (``dataset.path``), ``tinyshakespeare/input.txt`` from the shared data
folder, or the bundled public-domain text (Shakespeare sonnets and speeches, ~12 kB) as the
embedded default. Split by character offset: first ``1 - valid - test`` train, then valid,
then test (nanoGPT convention). Tokenizer: ``"char"`` (vocabulary = sorted character set of
the whole text; 65 symbols on tinyshakespeare), ``"byte"`` (256 ids) or a local Hugging Face
tokenizer folder. Batches: ``input_ids`` and ``labels`` (shifted by one), both ``[B, T]`` int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from pk.core.base import TensorBundle
from pk.core.contracts import DatasetInfo
from pk.core.datasource import locate
from pk.core.errors import ConfigError, DataError

BUNDLED_TEXT = "public_domain.txt"


@dataclass
class TextBundle(TensorBundle):
    """A TensorBundle of windows; ``split_keys`` are the windows' global start offsets."""

    def split_keys(self, split: str) -> list[int]:
        return [int(x) for x in self.tensors[split]["offset"]]


def read_text(config: Any) -> tuple[str, str, str]:
    """Return ``(text, source, origin)``; ``source`` is "file" or "synthetic" (bundled)."""
    found = locate("text-lm", source=config.source, path=config.path, shared_folder="tinyshakespeare",
                   required=("input.txt",))
    if found is None:
        text = resources.files("pk_solar.data").joinpath("texts", BUNDLED_TEXT).read_text(encoding="utf-8")
        return text, "synthetic", f"bundled:{BUNDLED_TEXT}"
    path = Path(found) / "input.txt" if Path(found).is_dir() else Path(found)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); give a plain text file in dataset.path") from None
    if not text:
        raise DataError(f"{path}: empty file; give a text file with content in dataset.path")
    return text, "file", str(path)


class Tokenizer:
    """char / byte / Hugging Face tokenizer behind one ``encode`` and ``vocab_size``."""

    def __init__(self, spec: str, text: str) -> None:
        self.spec = spec
        self.chars = ""
        if spec == "char":
            self.chars = "".join(sorted(set(text)))
            self._index = {c: i for i, c in enumerate(self.chars)}
            self.vocab_size = len(self.chars)
        elif spec == "byte":
            self.vocab_size = 256
        else:
            path = Path(spec).expanduser()
            if not path.is_dir():
                raise ConfigError(f"dataset.tokenizer = {spec!r}: use 'char', 'byte' or a local tokenizer folder")
            from transformers import AutoTokenizer

            try:
                self._hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            except (OSError, ValueError) as exc:
                reason = str(exc).splitlines()[0]
                raise DataError(f"{path}: cannot load a tokenizer ({reason}); check the folder") from None
            self.vocab_size = len(self._hf)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids as a 1-D int64 tensor."""
        if self.spec == "char":
            return torch.tensor([self._index[c] for c in text], dtype=torch.int64)
        if self.spec == "byte":
            return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).to(torch.int64)
        return torch.tensor(self._hf(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)


def windows(tokens: torch.Tensor, context: int, stride: int, base_offset: int) -> dict[str, torch.Tensor]:
    """Cut ``tokens`` into ``[N, context]`` inputs and labels shifted by one, with offsets."""
    starts = torch.arange(0, max(len(tokens) - context, 0), stride)
    if len(starts) == 0:
        return {"input_ids": torch.zeros(0, context, dtype=torch.int64),
                "labels": torch.zeros(0, context, dtype=torch.int64),
                "offset": torch.zeros(0, dtype=torch.int64)}
    idx = starts[:, None] + torch.arange(context + 1)[None, :]
    chunk = tokens[idx]
    return {"input_ids": chunk[:, :-1].contiguous(), "labels": chunk[:, 1:].contiguous(),
            "offset": starts + base_offset}


def build_text_lm(config: Any, *, root: Any = None, seed: int = 0) -> TextBundle:
    """The ``text-lm`` bundle (splits train/valid/test by character offset)."""
    if config.context < 2:
        raise ConfigError(f"dataset.context must be >= 2, got {config.context}")
    if not (0 < config.valid_fraction < 0.5 and 0 < config.test_fraction < 0.5):
        raise ConfigError("dataset.valid_fraction and test_fraction must lie in (0, 0.5)")
    text, source, origin = read_text(config)
    tokenizer = Tokenizer(config.tokenizer, text)
    n = len(text)
    cut_valid = int(n * (1 - config.valid_fraction - config.test_fraction))
    cut_test = int(n * (1 - config.test_fraction))
    parts = {"train": (0, cut_valid), "valid": (cut_valid, cut_test), "test": (cut_test, n)}
    stride = config.train_stride or config.context
    tensors = {}
    for split, (a, b) in parts.items():
        tokens = tokenizer.encode(text[a:b])
        tensors[split] = windows(tokens, config.context, stride if split == "train" else config.context, a)
        if tensors[split]["input_ids"].shape[0] == 0:
            raise DataError(f"{origin}: the {split} split is shorter than context {config.context}; "
                            "use a longer text or smaller context")
    info = DatasetInfo(
        task="causal-lm",
        num_classes=tokenizer.vocab_size,
        max_len=config.context,
        extra={"vocab_size": tokenizer.vocab_size, "context": config.context, "source": source, "origin": origin,
               "tokenizer": config.tokenizer, "chars": tokenizer.chars, "seed": int(seed), "characters": n},
    )
    params = {k: v for k, v in vars(config).items()} | {"origin": origin, "chars": len(text)}
    return TextBundle(info=info, tensors=tensors, params=params)
