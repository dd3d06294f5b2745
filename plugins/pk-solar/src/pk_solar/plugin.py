"""pk-solar registrations: SOLAR depth up-scaling (DUS) and causal-LM pretraining.

Stdlib and pk.core only; builders live in ``pk_solar.data``, ``pk_solar.models``,
``pk_solar.trainers`` and ``pk_solar.evaluators`` and are imported when used. The streaming up-scaler is the ``pk dus``
command (``pk_solar.cli:dus_cmd``, entry-point group ``pk.commands``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pk.core import hookimpl
from pk.core.configs import FileSource
from pk.core.hookspecs import Register

TASK = "causal-lm"
PAPER = {
    "title": "SOLAR 10.7B: Scaling Large Language Models with Simple yet Effective Depth Up-Scaling",
    "year": 2023,
    "url": "https://arxiv.org/abs/2312.15166",
    "venue": "NAACL 2024 Industry Track",
}


@dataclass
class TextLMConfig(FileSource):
    """Text cut into next-token windows of ``context`` tokens.

    ``source``: "auto" (``path``, else shared ``tinyshakespeare/input.txt``, else the bundled
    public-domain text), "file" (fail without a local file) or "synthetic" (bundled text).
    ``tokenizer``: "char", "byte" or a local Hugging Face tokenizer folder. Splits by
    character offset: train, then valid, then test. ``train_stride`` 0 means ``context``.
    """

    source: Literal["auto", "file", "synthetic"] = "auto"
    tokenizer: str = "char"
    context: int = field(default=64, metadata={"ge": 2})
    valid_fraction: float = field(default=0.05, metadata={"gt": 0, "lt": 0.5})
    test_fraction: float = field(default=0.05, metadata={"gt": 0, "lt": 0.5})
    train_stride: int = field(default=0, metadata={"ge": 0})


@dataclass
class LlamaShapeConfig:
    """The shape of a tiny Llama: ``layers`` layers, width ``hidden``, FFN ``intermediate``,
    ``heads`` attention heads sharing ``kv_heads`` KV heads, RoPE base ``rope_theta``."""

    layers: int = field(default=4, metadata={"ge": 1})
    hidden: int = field(default=64, metadata={"ge": 1})
    intermediate: int = field(default=176, metadata={"ge": 1})
    heads: int = field(default=4, metadata={"ge": 1})
    kv_heads: int = field(default=2, metadata={"ge": 1})
    max_positions: int = field(default=256, metadata={"ge": 2})
    rope_theta: float = field(default=10000.0, metadata={"gt": 0})
    tie_embeddings: bool = False


@dataclass
class TinyLlamaConfig(LlamaShapeConfig):
    """A LlamaForCausalLM of ``layers`` layers (hidden 64, FFN 176, 4 heads, 2 KV heads:
    the pilot's 378k-parameter 8-layer model at layers = 8). ``init_from``: continue from a
    checkpoint (HF folder, pk run dir or export_dir; ``{seed}`` = run seed) instead."""

    init_from: str = ""


@dataclass
class DusLlamaConfig(LlamaShapeConfig):
    """DUS of ``base_checkpoint`` with m = ``n_remove``: 2(n - m) layers, new layer j <- base
    [0..n-m-1] ++ [m..n-1]. Without a checkpoint, up-scales a fresh tiny Llama built from
    the architecture fields (``layers`` = n). ``{seed}`` in the path = run seed."""

    base_checkpoint: str = ""
    n_remove: int = field(default=1, metadata={"ge": 0})


@dataclass
class CausalLMTrainerConfig:
    """AdamW (β 0.9/0.95), warm-up then cosine to ``min_lr_ratio · lr`` (or constant).

    Length: ``steps``, or with ``total_flops > 0`` until the starting weights' compute plus
    6·P·tokens reaches ``total_flops``. ``eval_batches`` bounds the periodic validation
    (0 = whole split); the final one uses the whole split. ``export_dir`` (``{seed}`` =
    run seed, ``{cache}`` = pk's cache folder) receives the final model as a Hugging Face
    folder, for chaining runs. Budget fields (compared across arms by ``pk batch``): steps,
    ``total_flops`` and ``batch_size`` (tokens per step).
    """

    steps: int = field(default=200, metadata={"ge": 1})
    total_flops: float = field(default=0.0, metadata={"ge": 0, "budget": True})
    batch_size: int = field(default=32, metadata={"ge": 1, "budget": True})
    lr: float = field(default=2e-3, metadata={"gt": 0})
    min_lr_ratio: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    warmup_steps: int = field(default=20, metadata={"ge": 0})
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = field(default=0.1, metadata={"ge": 0})
    grad_clip: float = field(default=1.0, metadata={"ge": 0})
    eval_every: int = field(default=50, metadata={"ge": 1})
    eval_batches: int = field(default=8, metadata={"ge": 0})
    eval_batch_size: int = field(default=64, metadata={"ge": 1})
    export_dir: str = ""

    #: shrunk budget for pk's contract suite (two evaluations, so resume is exercised)
    pk_test: ClassVar[dict[str, int]] = {"steps": 6, "eval_every": 3, "eval_batches": 2, "batch_size": 8,
                                         "warmup_steps": 2}


@dataclass
class PerplexityConfig:
    batch_size: int = field(default=64, metadata={"ge": 1})


@hookimpl
def pk_register_datasets(register: Register) -> None:
    register("text-lm", "pk_solar.data.text_lm:build_text_lm", config=TextLMConfig, tasks=(TASK,),
             summary="Text as next-token windows: tinyshakespeare or a bundled public-domain text; "
                     "char/byte/HF tokenizer")


@hookimpl
def pk_register_models(register: Register) -> None:
    register("tiny-llama", "pk_solar.models.causal_lm:build_tiny_llama", config=TinyLlamaConfig, tasks=(TASK,),
             tags=("baseline",),
             summary="Tiny LlamaForCausalLM built from config (or continued from a checkpoint)")
    register("dus-llama", "pk_solar.models.causal_lm:build_dus_llama", config=DusLlamaConfig, tasks=(TASK,),
             paper=PAPER,
             summary="SOLAR depth up-scaling of a base checkpoint: layers [0..n-m-1] ++ [m..n-1]")


@hookimpl
def pk_register_trainers(register: Register) -> None:
    register("causal-lm", "pk_solar.trainers:CausalLMTrainer", config=CausalLMTrainerConfig, tasks=(TASK,),
             summary="(Continued) pretraining with warm-up + cosine, FLOP budgets, perplexity, HF export")


@hookimpl
def pk_register_evaluators(register: Register) -> None:
    register("perplexity", "pk_solar.evaluators:PerplexityEvaluator", config=PerplexityConfig, tasks=(TASK,),
             summary="Test-split perplexity and cross-entropy of a causal LM")
