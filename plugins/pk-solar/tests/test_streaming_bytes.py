"""The torch-free byte-copy path of streaming DUS: byte identity with safetensors' own
serializer and with the in-memory transform, header validation, copy fallbacks, and a
measured peak RSS on a >= 200 MB checkpoint."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from pk_solar.models import safetensors_io
from pk_solar.models.dus import depth_upscale
from pk_solar.models.dus_streaming import stream_dus
from pk_solar.models.safetensors_io import DTYPE_BYTES, header_bytes, read_header
from pk_solar.models.tiny_decoders import tiny_llama, tiny_qwen2
from safetensors.torch import save as st_save

from pk.core.errors import DataError

#: every dtype torch and safetensors share (name in the safetensors header -> torch dtype)
TORCH_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3": torch.float8_e4m3fn,
    "I16": torch.int16, "U16": torch.uint16, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32,
    "U32": torch.uint32, "F32": torch.float32, "C64": torch.complex64, "F64": torch.float64, "I64": torch.int64,
    "U64": torch.uint64,
}


def _save_sharded(model, folder: Path) -> Path:
    model.save_pretrained(folder, max_shard_size="40KB")
    assert (folder / "model.safetensors.index.json").exists(), "fixture must be sharded"
    return folder


@pytest.mark.parametrize(("factory", "n", "m", "tie"),
                         [(tiny_llama, 5, 2, False), (tiny_llama, 4, 0, True), (tiny_qwen2, 4, 1, False)])
def test_every_output_shard_is_byte_identical_to_safetensors_saving_the_in_memory_dus(
    tmp_path: Path, factory, n: int, m: int, tie: bool,
) -> None:
    """Each output file equals, byte for byte, ``safetensors.torch.save`` of the in-memory DUS
    model's tensors of that shard. Catches: a wrong tensor order or header layout (the file
    would load but differ), a wrong byte range (e.g. a duplicated layer copied from its
    neighbour, or offsets not shifted by the header length), a renaming slip."""
    base = factory(n, seed=10 * n + m)
    if tie:
        base.config.tie_word_embeddings = True
        base.tie_weights()
    src = _save_sharded(base, tmp_path / "base")
    stream_dus(src, tmp_path / "up", m)
    state = depth_upscale(base, m).state_dict()
    index = json.loads((tmp_path / "up" / "model.safetensors.index.json").read_text())["weight_map"]
    by_file: dict[str, list[str]] = {}
    for name, file_name in index.items():
        by_file.setdefault(file_name, []).append(name)
    assert len(by_file) > 1
    for file_name, names in by_file.items():
        expected = st_save({k: state[k].contiguous() for k in names}, metadata={"format": "pt"})
        assert (tmp_path / "up" / file_name).read_bytes() == expected, file_name
    assert set(index) == set(state) - ({"lm_head.weight"} if tie else set())


def test_header_matches_safetensors_for_every_dtype(tmp_path: Path) -> None:
    """``header_bytes`` reproduces safetensors' header (dtype-then-name order, compact JSON,
    space padding) for all shared dtypes and odd names. Catches: a dtype rank out of the
    library's enum order, name-only sorting, missing padding or a pretty-printed header."""
    tensors = {f"z.{k.lower()}": torch.zeros(3, 5, dtype=v) for k, v in TORCH_DTYPES.items()}
    tensors |= {"a.ünï\"code": torch.ones(7, dtype=torch.bfloat16), "m": torch.zeros(0, 4),
                "0": torch.ones((), dtype=torch.int64)}
    blob = st_save(tensors, metadata={"format": "pt", "note": "x"})
    path = tmp_path / "all.safetensors"
    path.write_bytes(blob)
    parsed = read_header(path)
    items = [(name, dtype, shape) for name, (dtype, shape, _, _) in parsed.entries.items()]
    head, order = header_bytes(items, parsed.metadata)
    assert head == blob[:parsed.data_start]
    assert [parsed.entries[items[k][0]][2] for k in order] == sorted(e[2] for e in parsed.entries.values())
    assert set(DTYPE_BYTES) >= set(TORCH_DTYPES)


def _raw_file(path: Path, header: object, data: bytes, *, length: int | None = None) -> Path:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}}


@pytest.mark.parametrize(("header", "data", "length", "reason"), [
    (GOOD, b"\0" * 11, None, "truncated"),
    (GOOD, b"\0" * 13, None, "the file has"),
    ({**GOOD, "b": {"dtype": "U8", "shape": [4], "data_offsets": [9, 13]}}, b"\0" * 13, None, "gap or overlap"),
    ({**GOOD, "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}, b"\0" * 8, None, "gap or overlap"),
    ({**GOOD, "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 12, None, "bytes for F32"),
    ({**GOOD, "a": {"dtype": "F4", "shape": [16], "data_offsets": [0, 8]}}, b"\0" * 12, None, "unknown dtype"),
    ({**GOOD, "a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 12, None, "malformed entry"),
    ({**GOOD, "a": {"dtype": "F32", "shape": [2]}}, b"\0" * 12, None, "malformed entry"),
    ({**GOOD, "__metadata__": {"format": 3}}, b"\0" * 12, None, "__metadata__"),
    ([1, 2], b"", None, "not a JSON object"),
    (b"\xff\xfe{", b"", None, "not JSON"),
    (GOOD, b"\0" * 12, 10**12, "does not fit"),
])
def test_corrupt_headers_are_one_line_data_errors(tmp_path: Path, header: object, data: bytes, length: int | None,
                                                  reason: str) -> None:
    """Each malformed file is refused before any copy, naming the file. Catches a reader
    that trusts offsets (a gap, overlap or short file would copy garbage or fail midway)."""
    path = _raw_file(tmp_path / "bad.safetensors", header, data, length=length)
    with pytest.raises(DataError, match=reason) as err:
        read_header(path)
    assert "bad.safetensors" in str(err.value) and "\n" not in str(err.value)
    good = _raw_file(tmp_path / "good.safetensors", GOOD, b"\0" * 12)
    assert read_header(good).data_start == 8 + len(json.dumps(GOOD))


@pytest.mark.parametrize("mode", ["copy_file_range", "sendfile", "buffered", "fallback"])
def test_copy_modes_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Every copy strategy writes the same files; "fallback" makes copy_file_range fail with
    EXDEV (an older kernel across file systems) and checks the switch to the next strategy."""
    import errno

    src = _save_sharded(tiny_llama(4, seed=3), tmp_path / "base")
    stream_dus(src, tmp_path / "ref", 1)
    if mode == "fallback":
        def refuse(*args: object, **kwargs: object) -> int:
            raise OSError(errno.EXDEV, "cross-device")

        monkeypatch.setattr(safetensors_io.os, "copy_file_range", refuse, raising=False)
        monkeypatch.setattr(safetensors_io, "_COPY_MODE", "copy_file_range")
    else:
        monkeypatch.setattr(safetensors_io, "_COPY_MODE", mode)
        monkeypatch.setattr(safetensors_io, "_BUFFER", 4096)  # several reads per tensor
    stream_dus(src, tmp_path / "out", 1)
    files = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "out").iterdir())
    for name in files:
        if name != "dus.json":
            assert (tmp_path / "ref" / name).read_bytes() == (tmp_path / "out" / name).read_bytes(), name
    if mode == "fallback":
        assert safetensors_io._COPY_MODE == "sendfile"


#: getrusage's peak of a process counts the memory of the process it was exec'd from (Linux
#: keeps the old image's high-water mark across exec), so the worker is started by a small
#: launcher rather than by pytest: its own peak then starts from the launcher's ~10 MB.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', *sys.argv[1:]]).returncode)"
CHILD = textwrap.dedent("""
    import resource, sys
    from pk_solar.models.dus_streaming import stream_dus
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stream_dus(sys.argv[1], sys.argv[2], 1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(before, after, "torch" in sys.modules, "safetensors" in sys.modules)
""")


def _synthetic_checkpoint(folder: Path, layers: int, hidden: int, ffn: int, vocab: int) -> int:
    """A Llama-named bf16 checkpoint in two shards written without torch; returns the largest shard's bytes."""
    folder.mkdir(parents=True)
    block = os.urandom(1 << 20)

    def layer(i: int) -> dict[str, tuple[int, ...]]:
        p = f"model.layers.{i}."
        return {p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (hidden, hidden),
                p + "self_attn.v_proj.weight": (hidden, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
                p + "mlp.gate_proj.weight": (ffn, hidden), p + "mlp.up_proj.weight": (ffn, hidden),
                p + "mlp.down_proj.weight": (hidden, ffn), p + "input_layernorm.weight": (hidden,)}

    half = layers // 2
    shards = [{"model.embed_tokens.weight": (vocab, hidden)},
              {"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}]
    for i in range(layers):
        shards[i >= half].update(layer(i))
    weight_map, largest = {}, 0
    for k, shard in enumerate(shards):
        name = f"model-{k + 1:05d}-of-00002.safetensors"
        items = [(key, "BF16", shape) for key, shape in shard.items()]
        head, _ = header_bytes(items, {"format": "pt"})
        total = sum(2 * (shape[0] * (shape[1] if len(shape) > 1 else 1)) for shape in shard.values())
        with open(folder / name, "wb") as fh:
            fh.write(head)
            for _ in range(total // len(block)):
                fh.write(block)
            fh.write(block[: total % len(block)])
        weight_map.update(dict.fromkeys(shard, name))
        largest = max(largest, (folder / name).stat().st_size)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": layers}))
    return largest


def test_peak_rss_is_flat_and_torch_free_on_a_200mb_checkpoint(tmp_path: Path) -> None:
    """A fresh interpreter up-scales a 224 MB, two-shard checkpoint; ``getrusage`` says its peak
    RSS grew by < 16 MB during the copy (the largest shard is ~112 MB) and neither torch nor
    safetensors was imported. Catches the old path (``safe_open(...).get_tensor`` +
    ``serialize_file``: +1 shard of RSS, torch imported) and any read of whole tensors into memory."""
    largest = _synthetic_checkpoint(tmp_path / "src", layers=6, hidden=1024, ffn=4096, vocab=8000)
    assert largest > 100e6
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, CHILD, str(tmp_path / "src"), str(tmp_path / "dst")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    before_kb, after_kb, torch_loaded, st_loaded = proc.stdout.split()
    grown_mb = (int(after_kb) - int(before_kb)) / 1024
    assert grown_mb < 16, f"peak RSS grew {grown_mb:.1f} MB while copying (largest shard {largest / 1e6:.0f} MB)"
    assert int(after_kb) * 1024 < largest, "peak RSS of the whole process should stay below one shard"
    assert torch_loaded == "False" and st_loaded == "False"
    name_in, name_out = "model.layers.5.mlp.up_proj.weight", "model.layers.9.mlp.up_proj.weight"
    index = json.loads((tmp_path / "dst" / "model.safetensors.index.json").read_text())["weight_map"]
    out = read_header(tmp_path / "dst" / index[name_out])
    src = read_header(tmp_path / "src" / "model-00002-of-00002.safetensors")
    with open(src.path, "rb") as a, open(out.path, "rb") as b:
        a.seek(src.data_start + src.entries[name_in][2])
        b.seek(out.data_start + out.entries[name_out][2])
        assert a.read(1 << 16) == b.read(1 << 16)
