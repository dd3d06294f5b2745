"""The text dataset, the schedule, and the base -> DUS -> continued pretraining chain via the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_solar.data.text_lm import Tokenizer, build_text_lm, windows
from pk_solar.plugin import CausalLMTrainerConfig, TextLMConfig
from pk_solar.trainers import lr_at

from pk.core.paths import shared_data_dir


@given(st.text(min_size=3, max_size=200), st.integers(1, 8), st.integers(1, 5))
def test_windows_shift_labels_by_one(text: str, context: int, stride: int) -> None:
    tokens = Tokenizer("byte", text).encode(text)
    out = windows(tokens, context, stride, base_offset=100)
    for row, (x, y, off) in enumerate(zip(out["input_ids"], out["labels"], out["offset"])):
        start = int(off) - 100
        assert start == row * stride
        assert torch.equal(x, tokens[start : start + context])
        assert torch.equal(y, tokens[start + 1 : start + context + 1])


@given(st.text(alphabet="abcXYZ \n!", min_size=1, max_size=300))
def test_char_tokenizer_is_sorted_and_lossless(text: str) -> None:
    tok = Tokenizer("char", text)
    assert list(tok.chars) == sorted(set(text)) and tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert "".join(tok.chars[i] for i in ids.tolist()) == text


def test_bundled_default_splits_in_order() -> None:
    data = build_text_lm(TextLMConfig(source="synthetic"), seed=3)
    assert data.info.extra["source"] == "synthetic" and data.info.extra["seed"] == 3
    last = {s: max(data.split_keys(s)) for s in data.splits}
    first = {s: min(data.split_keys(s)) for s in data.splits}
    assert last["train"] < first["valid"] <= last["valid"] < first["test"]


def test_tinyshakespeare_has_65_symbols() -> None:
    if shared_data_dir() is None or not (shared_data_dir() / "tinyshakespeare" / "input.txt").exists():
        pytest.skip("no shared data folder with tinyshakespeare/input.txt (set PK_SHARED_DATA)")
    data = build_text_lm(TextLMConfig(source="file"))
    assert data.info.extra["vocab_size"] == 65 and data.info.extra["characters"] == 1_115_394
    assert data.size("valid") == int(1_115_394 * 0.05) // 64  # non-overlapping windows over the whole split


@given(st.integers(1, 400), st.integers(0, 30), st.floats(0.0, 0.5))
def test_cosine_schedule_warms_up_and_decays_to_floor(total: int, warmup: int, floor: float) -> None:
    cfg = SimpleNamespace(**{**vars(CausalLMTrainerConfig()), "warmup_steps": warmup, "min_lr_ratio": floor})
    rates = [lr_at(s, total, cfg) for s in range(total)]
    assert all(0 < r <= cfg.lr + 1e-12 for r in rates)
    decay = rates[min(warmup, total) :]
    assert all(a >= b - 1e-12 for a, b in zip(decay, decay[1:])), "non-increasing after warm-up"
    if total > warmup + 1:
        assert math.isclose(lr_at(total, total, cfg), cfg.lr * floor, abs_tol=1e-12)


def _train(runner, tmp: Path, *overrides: str) -> dict:
    from pk.cli.main import cli

    args = ["train", "-c", "dataset.name=text-lm", "-c", "dataset.source=\"synthetic\"", "-c", "trainer.name=causal-lm",
            "-c", "trainer.batch_size=8", "-c", "trainer.eval_every=3", "-c", "trainer.eval_batches=1",
            "-c", "trainer.warmup_steps=1", "-c", "evaluator.name=perplexity", "-c", f"run.out_dir=\"{tmp}\"",
            "-c", "run.threads=1", *[x for o in overrides for x in ("-c", o)]]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    runs = sorted(tmp.glob("2*"), key=lambda p: p.stat().st_mtime)
    return json.loads((runs[-1] / "result.json").read_text())


def test_cli_chain_base_dus_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Base -> DUS / cont through ``{cache}`` paths; each run writes per-window test losses
    (examples-test.npz, examples-eval.npz) whose mean is the reported loss, and epochs_run."""
    import numpy as np
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    base = _train(runner, tmp_path, "model.name=tiny-llama", "model.layers=4", "trainer.steps=6",
                  "trainer.export_dir=\"{cache}/bases/b-s{seed}\"")
    assert (tmp_path / "cache" / "bases" / "b-s0" / "config.json").exists()
    base_flops = base["metrics"]["fit.flops_total"]
    budget = 1.5 * base_flops
    dus = _train(runner, tmp_path, "model.name=dus-llama", "model.base_checkpoint=\"{cache}/bases/b-s{seed}\"",
                 "model.n_remove=1", f"trainer.total_flops={budget}")
    cont = _train(runner, tmp_path, "model.name=tiny-llama", "model.init_from=\"{cache}/bases/b-s{seed}\"",
                  f"trainer.total_flops={budget}")
    n_train = len(build_text_lm(TextLMConfig(source="synthetic")).split_keys("train"))
    for r in (base, dus, cont):
        for split in ("test", "eval"):
            with np.load(Path(r["run_dir"]) / f"examples-{split}.npz", allow_pickle=False) as npz:
                assert float(npz["loss"].mean()) == pytest.approx(r["metrics"][f"{split}.loss"], rel=1e-9)
                assert npz["loss"].shape == (len(npz["loss"]),) and len(npz["loss"]) > 1
        assert r["metrics"]["fit.epochs_run"] == pytest.approx(r["metrics"]["fit.steps"] * 8 / n_train)
    for r in (dus, cont):
        m = r["metrics"]
        assert r["status"] == "completed" and m["fit.flops_total"] >= budget
        assert m["fit.flops_total"] - budget < 6 * m["fit.params"] * 8 * 64 + 1, "stops within one step of the budget"
    assert dus["metrics"]["fit.layers"] == 6 and cont["metrics"]["fit.layers"] == 4
    assert cont["metrics"]["fit.initial_valid_loss"] == pytest.approx(base["metrics"]["fit.valid_loss"], abs=0.5)
    assert math.isclose(dus["metrics"]["eval.ppl"], math.exp(dus["metrics"]["eval.loss"]), rel_tol=1e-9)


def test_missing_base_is_one_line_error(tmp_path: Path) -> None:
    from pk.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "-c", "model.name=dus-llama", "-c", f"model.base_checkpoint=\"{tmp_path}/nope\"",
              "-c", "dataset.name=text-lm", "-c", "dataset.source=\"synthetic\"", "-c", "trainer.name=causal-lm",
              "-c", f"run.out_dir=\"{tmp_path}\""])
    assert exit_info.value.code == 2


def test_recipes_chain_only_through_the_cache() -> None:
    """Every checkpoint path a shipped recipe writes or reads lives under ``{cache}``, so
    ``pk batch`` writes nothing outside its batch dir and pk's cache. Catches the old
    ``runs/pk-solar/quick-base-s{seed}`` exports beside the batch."""
    from importlib import resources

    import tomllib

    folder = resources.files("pk_solar").joinpath("recipes")
    checked = 0
    for recipe in folder.iterdir():
        if not recipe.name.endswith(".toml"):
            continue
        data = tomllib.loads(recipe.read_text(encoding="utf-8"))
        for entry in [data.get("defaults", {}), *(r.get("overrides", {}) for r in data.get("runs", []))]:
            for section in entry.values():
                for key in ("export_dir", "init_from", "base_checkpoint"):
                    if isinstance(section, dict) and section.get(key):
                        assert section[key].startswith("{cache}/"), f"{recipe.name}: {key} = {section[key]!r}"
                        checked += 1
    assert checked >= 4
