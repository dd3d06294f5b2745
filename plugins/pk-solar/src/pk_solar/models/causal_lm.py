"""Models: a tiny Llama (``tiny-llama``) and its depth up-scaled version (``dus-llama``).

Both wrap a Hugging Face ``LlamaForCausalLM`` (or whatever causal LM a checkpoint holds) in
:class:`CausalLM`, which adds pk's ``loss(batch)`` / ``predict(batch) -> [B, T, V]`` and
carries the compute the weights already cost (``compute_offset``, FLOPs = 6·P·tokens), so
a continued run reports total compute.

Checkpoint paths (``init_from``, ``base_checkpoint``) may be a Hugging Face model folder,
a pk run dir (its ``artifacts/hf-model`` export is used) or a folder written by the
trainer's ``export_dir``; ``{seed}`` is replaced by the dataset's seed (the run seed) and
``{cache}`` by pk's cache folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo
from pk.core.errors import CheckpointError, ConfigError

SIDECAR = "pk_solar.json"


class CausalLM(nn.Module):
    """pk model around a Hugging Face causal LM.

    ``batch``: ``input_ids`` and ``labels``, ``[B, T]`` int64. ``predict`` -> logits
    ``[B, T, V]``; ``loss`` -> mean next-token cross-entropy (nats/token). Always runs with
    ``use_cache=False`` (training and scoring never need the KV cache).
    """

    def __init__(self, lm: Any, *, compute_offset: float = 0.0, provenance: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.compute_offset = float(compute_offset)
        self.provenance = dict(provenance or {})

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, use_cache=False).logits

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["input_ids"])

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(batch["input_ids"])
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten())

    def num_parameters(self) -> int:
        """All parameters (embeddings and lm_head included), the P of 6·P·tokens."""
        return sum(p.numel() for p in self.parameters())

    @property
    def num_layers(self) -> int:
        return int(self.lm.config.num_hidden_layers)


def llama_config(config: Any, vocab_size: int, layers: int) -> Any:
    """A ``LlamaConfig`` from the pk config fields (width, heads, positions)."""
    from transformers import LlamaConfig

    if config.hidden % config.heads or config.heads % config.kv_heads or (config.hidden // config.heads) % 2:
        raise ConfigError(f"model.hidden ({config.hidden}) must divide by heads ({config.heads}) into an even "
                          f"head size (RoPE rotates pairs), heads by kv_heads ({config.kv_heads})")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden,
        intermediate_size=config.intermediate,
        num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads,
        num_hidden_layers=layers,
        max_position_embeddings=config.max_positions,
        rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def _vocab(info: DatasetInfo) -> int:
    vocab = info.extra.get("vocab_size") or info.num_classes
    if not vocab:
        raise ConfigError("tiny-llama needs a causal-lm dataset that reports its vocabulary (e.g. text-lm)")
    return int(vocab)


def fill_path(path: str, seed: int) -> Path:
    """``path`` with ``{seed}`` -> the run seed and ``{cache}`` -> pk's cache folder
    (``PK_CACHE_DIR`` or the user cache), so a recipe can chain runs without writing
    outside its batch dir and the cache."""
    if "{cache}" in path:
        from pk.core.paths import cache_dir

        path = path.replace("{cache}", str(cache_dir()))
    return Path(path.replace("{seed}", str(int(seed)))).expanduser()


def resolve_checkpoint(path: str, info: DatasetInfo) -> Path:
    """The Hugging Face folder behind ``path`` (``{seed}`` filled from the dataset's seed,
    ``{cache}`` with pk's cache folder)."""
    filled = fill_path(path, int(info.extra.get("seed", 0)))
    for candidate in (filled, filled / "artifacts" / "hf-model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise CheckpointError(
        f"{filled}: no Hugging Face model (config.json) there or in its artifacts/hf-model; train the base first "
        "(run the recipe's base arm, or `pk train` with trainer.export_dir) and point the path at it"
    )


def load_checkpoint(path: str, info: DatasetInfo) -> tuple[Any, dict[str, Any]]:
    """Load a causal LM and its pk sidecar (compute spent, vocabulary) from ``path``."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # pk's console owns progress output
    folder = resolve_checkpoint(path, info)
    sidecar: dict[str, Any] = {}
    if (folder / SIDECAR).is_file():
        sidecar = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot load the model ({str(exc).splitlines()[0]}); re-export it") from None
    vocab = _vocab(info)
    if int(lm.config.vocab_size) != vocab:
        raise CheckpointError(
            f"{folder}: vocabulary {lm.config.vocab_size} but the dataset's tokenizer gives {vocab}; "
            "use the dataset and tokenizer the base was trained on"
        )
    chars = info.extra.get("chars")
    if chars and sidecar.get("chars") and sidecar["chars"] != chars:
        raise CheckpointError(f"{folder}: trained on another character vocabulary; "
                              "use the same text and tokenizer as the base")
    return lm, sidecar


def build_tiny_llama(config: Any, info: DatasetInfo) -> CausalLM:
    """``tiny-llama``: a fresh ``layers``-layer Llama, or the weights of ``init_from``."""
    if config.init_from:
        lm, sidecar = load_checkpoint(config.init_from, info)
        return CausalLM(lm, compute_offset=float(sidecar.get("flops", 0.0)),
                        provenance={"init_from": str(resolve_checkpoint(config.init_from, info))})
    from transformers import LlamaForCausalLM

    return CausalLM(LlamaForCausalLM(llama_config(config, _vocab(info), config.layers)))


def build_dus_llama(config: Any, info: DatasetInfo) -> CausalLM:
    """``dus-llama``: DUS (m = ``n_remove``) of ``base_checkpoint``, or of a fresh
    ``layers``-layer tiny Llama when no checkpoint is given (tests, smoke runs)."""
    from pk_solar.models.dus import depth_upscale

    if config.base_checkpoint:
        base, sidecar = load_checkpoint(config.base_checkpoint, info)
        offset = float(sidecar.get("flops", 0.0))
        origin = str(resolve_checkpoint(config.base_checkpoint, info))
    else:
        from transformers import LlamaForCausalLM

        base, offset, origin = LlamaForCausalLM(llama_config(config, _vocab(info), config.layers)), 0.0, "fresh"
    n = int(base.config.num_hidden_layers)
    up = depth_upscale(base, config.n_remove)
    return CausalLM(up, compute_offset=offset,
                    provenance={"base": origin, "base_layers": n, "n_remove": config.n_remove,
                                "layers": up.config.num_hidden_layers})
