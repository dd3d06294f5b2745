"""Regression tests: contrastive models get ``batch_sequences`` rows per batch, ECL-SR pools
real positions only, config bounds. Each docstring names the old code it fails on."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pk_eclsr.models import eclsr as eclsr_module
from pk_eclsr.models.cl4srec import build_cl4srec
from pk_eclsr.models.eclsr import ECLSR, build_eclsr, pool_recent
from pk_eclsr.plugin import CL4SRecConfig, ECLSRConfig
from pk_seqrec.data.datasets import build_synthetic_seq
from pk_seqrec.models.sasrec import SASRec
from pk_seqrec.plugin import NextItemTrainerConfig, SyntheticSeqConfig
from pk_seqrec.trainers.next_item import NextItemTrainer

from pk.core.config import validate_params
from pk.core.errors import ConfigError
from pk.core.testing import MemoryRun

torch.set_num_threads(1)
SMALL = {"hidden": 8, "layers": 1, "heads": 1, "inner": 8}


def _rows_seen(model: torch.nn.Module, data: Any, trainer: NextItemTrainer) -> list[int]:
    seen: list[int] = []
    loss = model.loss

    def counting(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(int(batch["seq"].shape[0]))
        return loss(batch)

    model.loss = counting  # type: ignore[method-assign]
    trainer.fit(model, data, MemoryRun())
    return seen


@pytest.mark.parametrize("name", ["eclsr", "cl4srec"])
def test_contrastive_models_get_256_sequences_per_batch(name: str) -> None:
    """With the recipes' ``batch_targets = 256`` on short histories (~6 targets per row) the
    trainer makes ~40-row batches; a contrastive model built from its default config still
    trains on 256 sequences per batch (its in-batch negatives), SASRec on ~40 rows.

    Fails on the old code: every model got the ~40-row batch (44 on Beauty, 6 on ml-100k),
    so the contrastive terms saw a fraction of the release's 256 negatives."""
    data = build_synthetic_seq(SyntheticSeqConfig(num_users=900, min_len=5, max_seq_len=10, max_len=50), seed=0)
    trainer = NextItemTrainer(NextItemTrainerConfig(batch_targets=256, max_epochs=1, max_steps=3, patience=0))
    plain = trainer._batch_rows(data)
    assert 20 <= plain <= 80
    torch.manual_seed(0)
    config = ECLSRConfig(**SMALL) if name == "eclsr" else CL4SRecConfig(**SMALL)
    build = build_eclsr if name == "eclsr" else build_cl4srec
    model = build(config, data.info)
    assert model.batch_sequences == 256
    assert _rows_seen(model, data, trainer) == [256, 256, 256]
    sasrec = SASRec(data.info.num_items, 50, **SMALL)
    assert _rows_seen(sasrec, data, trainer) == [plain] * 3


def test_pool_recent_averages_real_positions_only() -> None:
    """Brute force: the mean of the outputs at the last min(k, n) real items."""
    torch.manual_seed(0)
    seq = torch.tensor([[0, 0, 0, 0, 5, 6], [0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 9]])
    h = torch.randn(3, 6, 4)
    out = pool_recent(h, seq, 3)
    assert torch.allclose(out[0], h[0, 4:].mean(0))
    assert torch.allclose(out[1], h[1, 3:].mean(0))
    assert torch.allclose(out[2], h[2, 5])


def test_eclsr_contrastive_view_ignores_padding_outputs() -> None:
    """The contrastive representation of a user with n < k items is the mean of its n real
    outputs, whatever the batch width. Fails on the old ECL-SR, which averaged the last k
    columns (re-padding a narrow batch to k), so the constant padding output entered it."""
    torch.manual_seed(0)
    model = ECLSR(20, 12, contrast_k=6, weight_disc=0.0, weight_gen=0.0, **SMALL).eval()
    seq = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4], [0, 0, 0, 7]])
    batch = {"seq": seq, "targets": torch.zeros_like(seq), "target": torch.tensor([1, 2, 3])}
    batch["targets"][:, -1] = batch["target"]
    captured: list[torch.Tensor] = []
    real_nce = eclsr_module.cosine_info_nce

    def spy(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
        captured.append(z1.detach())
        return real_nce(z1, z2, temperature)

    eclsr_module.cosine_info_nce = spy  # type: ignore[assignment]
    try:
        model.loss_terms(batch)
    finally:
        eclsr_module.cosine_info_nce = real_nce  # type: ignore[assignment]
    with torch.no_grad():
        h = model.encode(seq)
    expected = torch.stack([h[0, 2:].mean(0), h[1].mean(0), h[2, 3]])
    assert torch.allclose(captured[0], expected, atol=1e-6)


@pytest.mark.parametrize("cls,key,value", [
    (ECLSRConfig, "mask_ratio", 1.5), (ECLSRConfig, "contrast_k", 0), (ECLSRConfig, "temperature", 0.0),
    (ECLSRConfig, "weight_con", -1.0), (ECLSRConfig, "batch_sequences", -1), (ECLSRConfig, "dropout", 1.2),
    (CL4SRecConfig, "crop_ratio", -0.1), (CL4SRecConfig, "temperature", float("inf")),
])
def test_config_bounds(cls: type, key: str, value: Any) -> None:
    """Old configs declared no ranges: these resolved and failed (or not) only at build time."""
    with pytest.raises(ConfigError):
        validate_params({key: value}, cls, "x")
