"""Benchmark: streaming DUS of a synthetic ~2 GB sharded safetensors checkpoint.

    python bench/dus_streaming.py [--workdir /tmp/pk-dus-bench] [--layers 20] [--n-remove 5]

Builds a Llama-shaped bf16 checkpoint (hidden 2048, FFN 5632, 32 heads / 4 KV heads, vocab
32000; 20 layers ≈ 2.0 GB in ~500 MB shards) without instantiating a model, then measures,
each in a fresh subprocess (wall time and peak RSS from ``getrusage``):

- ``copy``: a plain copy of the input files (the disk limit for the same bytes);
- ``dus``: ``pk_solar.streaming.stream_dus`` (m = --n-remove, output 2(n-m) layers);
- ``mergekit``: its passthrough merge with the equivalent slices, when ``mergekit-yaml`` is
  on PATH (it is not installed here: its dependencies would change the shared venv's torch).

Check: the DUS output's tensors equal the input tensors they were copied from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {"hidden": 2048, "ffn": 5632, "heads": 32, "kv_heads": 4, "vocab": 32000}


def make_checkpoint(folder: Path, layers: int, shard_bytes: int = 500_000_000) -> int:
    """Write config.json, bf16 shards (deterministic fill) and the index; return total bytes."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    h, f, v = SHAPES["hidden"], SHAPES["ffn"], SHAPES["vocab"]
    kv = h // SHAPES["heads"] * SHAPES["kv_heads"]

    def layer(i: int) -> dict[str, tuple[int, ...]]:
        p = f"model.layers.{i}."
        return {p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, h), p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                p + "mlp.down_proj.weight": (h, f), p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)}

    groups = [{"model.embed_tokens.weight": (v, h)}] + [layer(i) for i in range(layers)] + [{"model.norm.weight": (h,), "lm_head.weight": (v, h)}]
    shards: list[dict[str, tuple[int, ...]]] = [{}]
    size = 0
    for group in groups:
        nbytes = sum(2 * a * (b[0] if b else 1) for a, *b in group.values())
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1].update(group)
        size += nbytes
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for j, (key, shape) in enumerate(shard.items()):
            t = torch.empty(shape, dtype=torch.bfloat16)
            t.fill_((k * 131 + j) % 97 / 97.0)
            tensors[key] = t
            weight_map[key] = name
            total += t.numel() * 2
        save_file(tensors, folder / name, metadata={"format": "pt"})
        del tensors
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h, "intermediate_size": f,
              "num_attention_heads": SHAPES["heads"], "num_key_value_heads": SHAPES["kv_heads"], "num_hidden_layers": layers,
              "vocab_size": v, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 4096}')
    return total


#: VmHWM (peak resident set of this process image, reset by exec) is printed last
_HWM = "; print([ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0])"
CHILD = {
    "copy": "import shutil,sys; shutil.copytree(sys.argv[1], sys.argv[2])" + _HWM,
    "dus": "import sys, torch; torch.set_num_threads(1); from pk_solar.streaming import stream_dus; "
           "stream_dus(sys.argv[1], sys.argv[2], int(sys.argv[3]))" + _HWM,
    "baseline": "import sys, torch; torch.set_num_threads(1); import pk_solar.streaming" + _HWM,
}


def measure(kind: str, args: list[str]) -> dict[str, float]:
    """Run one job in a fresh interpreter; wall seconds and that child's peak RSS (MB, VmHWM)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD[kind], *args], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "peak_rss_mb": int(proc.stdout.split()[-1]) / 1024}


def verify(src: Path, dst: Path, n_remove: int, layers: int) -> bool:
    """Each output layer's tensors equal their source layer's (spot check: first and last tensors)."""
    from pk_solar.dus import layer_map
    from safetensors import safe_open

    def index(folder: Path) -> dict[str, str]:
        return json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]

    src_index, dst_index = index(src), index(dst)
    for j, i in enumerate(layer_map(layers, n_remove)):
        for part in ("self_attn.q_proj.weight", "mlp.down_proj.weight"):
            a_name, b_name = f"model.layers.{i}.{part}", f"model.layers.{j}.{part}"
            with safe_open(str(src / src_index[a_name]), "pt") as fa, safe_open(str(dst / dst_index[b_name]), "pt") as fb:
                if not bool((fa.get_tensor(a_name) == fb.get_tensor(b_name)).all()):
                    return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pk-dus-bench"))
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--n-remove", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    src = work / "src"
    t0 = time.perf_counter()
    total = make_checkpoint(src, args.layers)
    print(f"synthetic checkpoint: {args.layers} layers, {total / 1e9:.2f} GB, "
          f"{len(list(src.glob('*.safetensors')))} shards, built in {time.perf_counter() - t0:.1f}s")
    rows = {"baseline": measure("baseline", [])}
    rows["copy"] = measure("copy", [str(src), str(work / "copy")])
    shutil.rmtree(work / "copy")
    rows["dus"] = measure("dus", [str(src), str(work / "dus"), str(args.n_remove)])
    out_bytes = sum(p.stat().st_size for p in (work / "dus").glob("*.safetensors"))
    ok = verify(src, work / "dus", args.n_remove, args.layers)
    if shutil.which("mergekit-yaml"):
        print("mergekit-yaml found, but this script does not drive it yet; compare by hand")
    else:
        print("mergekit: not installed (mergekit-yaml not on PATH); skipped")
    print("\n| job | bytes read | bytes written | wall (s) | peak RSS (MB) | write rate (GB/s) |\n|---|---|---|---|---|---|")
    print(f"| plain copy | {total / 1e9:.2f} GB | {total / 1e9:.2f} GB | {rows['copy']['wall_s']:.1f} | {rows['copy']['peak_rss_mb']:.0f} | {total / 1e9 / rows['copy']['wall_s']:.2f} |")
    print(f"| pk dus m={args.n_remove} ({args.layers} -> {2 * (args.layers - args.n_remove)} layers) | {total / 1e9:.2f} GB | "
          f"{out_bytes / 1e9:.2f} GB | {rows['dus']['wall_s']:.1f} | {rows['dus']['peak_rss_mb']:.0f} | {out_bytes / 1e9 / rows['dus']['wall_s']:.2f} |")
    print(f"| (python + torch + pk_solar imported, no work) | - | - | {rows['baseline']['wall_s']:.1f} | {rows['baseline']['peak_rss_mb']:.0f} | - |")
    largest = max(p.stat().st_size for p in src.glob("*.safetensors"))
    print(f"\nlargest input shard {largest / 1e6:.0f} MB; output tensors equal their sources: {ok}; cpu threads: 1; host cores: {os.cpu_count()}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
