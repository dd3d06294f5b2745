"""Streaming DUS over sharded safetensors: equality with the in-memory transform, errors,
no partial output, and the ``pk dus`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from pk_solar.cli import dus_cmd
from pk_solar.models.dus import depth_upscale
from pk_solar.models.dus_streaming import plan_dus, stream_dus
from pk_solar.models.tiny_decoders import tiny_llama, tiny_qwen2

from pk.core.errors import DataError, UsageError


def _save_sharded(model, folder: Path) -> Path:
    model.save_pretrained(folder, max_shard_size="40KB")
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 64}\n')
    assert (folder / "model.safetensors.index.json").exists(), "fixture must be sharded"
    return folder


def _load(folder: Path):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name)


@pytest.mark.parametrize(("factory", "n", "m"), [(tiny_llama, 5, 2), (tiny_llama, 4, 0), (tiny_qwen2, 4, 1)])
def test_streamed_equals_in_memory(tmp_path: Path, factory, n: int, m: int) -> None:
    base = factory(n, seed=n + m)
    src = _save_sharded(base, tmp_path / "base")
    plan = stream_dus(src, tmp_path / "up", m)
    assert len(plan.outputs) > 1
    streamed, in_memory = _load(tmp_path / "up"), depth_upscale(base, m)
    a, b = streamed.state_dict(), in_memory.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert streamed.config.num_hidden_layers == 2 * (n - m)
    if getattr(in_memory.config, "layer_types", None) is not None:
        assert streamed.config.layer_types == in_memory.config.layer_types
    x = torch.randint(0, 37, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(streamed(x).logits, in_memory(x).logits)
    out = tmp_path / "up"
    assert (out / "tokenizer_config.json").read_text() == (src / "tokenizer_config.json").read_text()
    assert json.loads((out / "dus.json").read_text())["layer_map"] == plan.src_map
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(a) - ({"lm_head.weight"} if streamed.config.tie_word_embeddings else set())
    assert _leftovers(tmp_path) == []


def test_peak_is_bounded_by_one_shard(tmp_path: Path) -> None:
    src = _save_sharded(tiny_llama(6), tmp_path / "base")
    plan = plan_dus(src, 2)
    shards = {t.shard for t in plan.tensors.values()}
    biggest_input = max(sum(t.nbytes for t in plan.tensors.values() if t.shard == s) for s in shards)
    for shard in plan.outputs:
        distinct = {name for _, name in shard.items}
        biggest_tensor = max(t.nbytes for t in plan.tensors.values())
        assert sum(plan.tensors[n].nbytes for n in distinct) <= max(biggest_input, biggest_tensor)
        assert len({plan.tensors[n].shard for n in distinct}) == 1, "an output shard reads one input shard"


def test_truncated_shard_is_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    src = _save_sharded(tiny_llama(4), tmp_path / "base")
    shard = sorted(src.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DataError) as err:
        stream_dus(src, tmp_path / "up", 1)
    assert shard.name in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "up").exists() and _leftovers(tmp_path) == []


def test_garbage_header_is_clear_error(tmp_path: Path) -> None:
    src = _save_sharded(tiny_llama(4), tmp_path / "base")
    shard = sorted(src.glob("model-*.safetensors"))[0]
    shard.write_bytes(b"\xff" * 64)
    with pytest.raises(DataError, match="corrupt safetensors shard"):
        stream_dus(src, tmp_path / "up", 1)
    assert not (tmp_path / "up").exists()


def test_mismatched_shard_from_another_model(tmp_path: Path) -> None:
    """A shard swapped in from a wider model with the same names: caught before writing."""
    from safetensors.torch import load_file, save_file

    src = _save_sharded(tiny_llama(4), tmp_path / "base")
    index = json.loads((src / "model.safetensors.index.json").read_text())
    victim = index["weight_map"]["model.layers.2.mlp.up_proj.weight"]
    tensors = load_file(src / victim)
    tensors = {k: (torch.zeros(v.shape[0] * 2, *v.shape[1:]) if ".layers." in k else v) for k, v in tensors.items()}
    save_file(tensors, src / victim, metadata={"format": "pt"})
    with pytest.raises(DataError, match="mismatched shard") as err:
        stream_dus(src, tmp_path / "up", 1)
    assert victim in str(err.value)
    assert not (tmp_path / "up").exists() and _leftovers(tmp_path) == []


def test_index_and_shard_disagree(tmp_path: Path) -> None:
    src = _save_sharded(tiny_llama(4), tmp_path / "base")
    index_path = src / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    name = "model.layers.1.self_attn.q_proj.weight"
    others = sorted(set(index["weight_map"].values()) - {index["weight_map"][name]})
    index["weight_map"][name] = others[0]
    index_path.write_text(json.dumps(index))
    with pytest.raises(DataError, match="mismatched shard"):
        stream_dus(src, tmp_path / "up", 1)


def test_config_layer_count_mismatch_and_bad_json(tmp_path: Path) -> None:
    src = _save_sharded(tiny_llama(4), tmp_path / "base")
    config = json.loads((src / "config.json").read_text())
    config["num_hidden_layers"] = 6
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="config.json says 6 layers"):
        plan_dus(src, 1)
    (src / "config.json").write_text('{"num_hidden_layers": 4,\n oops}')
    with pytest.raises(DataError, match=r"config.json:2: malformed JSON"):
        plan_dus(src, 1)


def test_failure_while_writing_leaves_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pk_solar.models.dus_streaming as streaming

    src = _save_sharded(tiny_llama(4), tmp_path / "base")
    plan = plan_dus(src, 1)
    calls = {"n": 0}
    original = streaming._write_into

    def boom(plan, out, on_progress):
        def progress(nbytes: int) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise DataError("simulated disk failure")

        return original(plan, out, progress)

    monkeypatch.setattr(streaming, "_write_into", boom)
    with pytest.raises(DataError, match="simulated"):
        streaming.write_dus(plan, tmp_path / "up")
    assert not (tmp_path / "up").exists() and _leftovers(tmp_path) == []


def test_cli_dus_command(tmp_path: Path) -> None:
    src = _save_sharded(tiny_llama(4), tmp_path / "base")
    runner = CliRunner()
    result = runner.invoke(dus_cmd, [str(src), str(tmp_path / "up"), "--n-remove", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert "DUS 4 -> 6 layers" in result.output and "[0..2] ++ [1..3]" in result.output
    assert _load(tmp_path / "up").config.num_hidden_layers == 6
    again = runner.invoke(dus_cmd, [str(src), str(tmp_path / "up"), "--n-remove", "1"])
    assert isinstance(again.exception, UsageError) and "not empty" in str(again.exception)
    bad = runner.invoke(dus_cmd, [str(src), str(tmp_path / "up2"), "--n-remove", "4"])
    assert isinstance(bad.exception, UsageError) and "every layer" in str(bad.exception)
    assert not (tmp_path / "up2").exists()


def test_pk_dus_subcommand_is_found(tmp_path: Path) -> None:
    """``pk dus`` through the real CLI (entry-point group ``pk.commands``)."""
    import subprocess
    import sys

    src = _save_sharded(tiny_llama(4), tmp_path / "base")
    proc = subprocess.run([sys.executable, "-m", "pk.cli", "dus", str(src), str(tmp_path / "up"), "--n-remove", "2",
                           "-q"], capture_output=True, text=True)
    if proc.returncode != 0 and "No such command" in proc.stderr:
        pytest.skip("this pk-core has no pk.commands entry-point group yet")
    assert proc.returncode == 0, proc.stderr
    bad = subprocess.run([sys.executable, "-m", "pk.cli", "dus", str(src), str(tmp_path / "x"), "--n-remove", "3"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "n/2" in bad.stderr
