"""Benchmark: streaming DUS (``pk dus``) against a plain ``cp`` of its output and mergekit.

    python bench/dus_streaming.py [--workdir /tmp/pk-dus-bench] [--layers 20] [--n-remove 5] [--repeats 3]

Builds a Llama-shaped bf16 checkpoint (hidden 2048, FFN 5632, 32 heads / 4 KV heads, vocab
32000; 20 layers = 2.02 GB in ~500 MB shards) without torch, then times, each in a fresh
process and ``--repeats`` times in alternating order (median reported; before each job its
input files are read once, so every job reads from the page cache, then ``sync``):

- ``pk dus SRC DST -m M -q``: the real command (m = --n-remove, 2(n-m) layers out);
- ``cp -r DST COPY``: a plain copy of exactly the output bytes (the disk's speed for them);
- ``mergekit-yaml``: the equivalent passthrough merge (slices [0, n-m] and [m, n]), only when
  it is on PATH (it is not installed in pk's venv; its dependencies would re-resolve torch).

Peak RSS: each job is started by a small Python launcher that reaps it with ``os.wait4`` and
reports its ``ru_maxrss`` (Linux carries the exec'ing image's high-water mark into the child,
so the figure has a floor of the launcher's ~10 MB). Checks: every output tensor's bytes equal
the source tensor's bytes they were copied from (all of them, not a sample), and mergekit's
output tensors equal pk's, byte for byte, when mergekit ran. Prints the three ratios the issue
asks for: wall vs ``cp`` (goal <= 1.5), mergekit wall vs pk (goal >= 5), peak RSS vs the
largest input shard (goal <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

from pk_solar.models.dus import layer_map
from pk_solar.models.safetensors_io import header_bytes, read_header

SHAPES = {"hidden": 2048, "ffn": 5632, "heads": 32, "kv_heads": 4, "vocab": 32000}
LAUNCHER = ("import os, sys, time; t = time.perf_counter(); "
            "pid = os.spawnv(os.P_NOWAIT, sys.argv[1], sys.argv[1:]); "
            "_, status, use = os.wait4(pid, 0); "
            "print(os.waitstatus_to_exitcode(status), time.perf_counter() - t, use.ru_maxrss)")


def make_checkpoint(folder: Path, layers: int, shard_bytes: int = 500_000_000) -> int:
    """Write config.json, bf16 shards (a repeated pseudo-random block) and the index; return tensor bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    h, f, v = SHAPES["hidden"], SHAPES["ffn"], SHAPES["vocab"]
    kv = h // SHAPES["heads"] * SHAPES["kv_heads"]

    def layer(i: int) -> dict[str, tuple[int, ...]]:
        p = f"model.layers.{i}."
        return {p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                p + "mlp.down_proj.weight": (h, f), p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,)}

    def nbytes(shape: tuple[int, ...]) -> int:
        return 2 * shape[0] * (shape[1] if len(shape) > 1 else 1)

    groups = ([{"model.embed_tokens.weight": (v, h)}] + [layer(i) for i in range(layers)]
              + [{"model.norm.weight": (h,), "lm_head.weight": (v, h)}])
    shards: list[dict[str, tuple[int, ...]]] = [{}]
    size = 0
    for group in groups:
        group_bytes = sum(nbytes(s) for s in group.values())
        if shards[-1] and size + group_bytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1].update(group)
        size += group_bytes
    block = bytes((i * 2654435761 >> 13) & 0xFF for i in range(1 << 20))
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        items = [(key, "BF16", shape) for key, shape in shard.items()]
        head, order = header_bytes(items, {"format": "pt"})
        with open(folder / name, "wb") as fh:
            fh.write(head)
            for j in order:  # each tensor its own rotation of the block, so a mixed-up copy is caught
                key, _, shape = items[j]
                turn = zlib.crc32(key.encode()) % len(block)
                pattern, left = block[turn:] + block[:turn], nbytes(shape)
                while left:
                    fh.write(pattern[: min(left, len(pattern))])
                    left -= min(left, len(pattern))
                total += nbytes(shape)
        weight_map.update(dict.fromkeys(shard, name))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h, "intermediate_size": f,
              "num_attention_heads": SHAPES["heads"], "num_key_value_heads": SHAPES["kv_heads"],
              "num_hidden_layers": layers, "vocab_size": v, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 4096}')
    return total


def warm(folder: Path) -> None:
    """Read every file of ``folder`` once, so the timed job reads from the page cache."""
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            while fh.read(64 << 20):
                pass


def measure(argv: list[str], reads: Path | None = None) -> dict[str, float]:
    """Run ``argv`` under the launcher after warming what it reads and a ``sync``; wall
    seconds and peak RSS (MB)."""
    if reads is not None:
        warm(reads)
    os.sync()
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *argv], capture_output=True, text=True)
    code, wall, maxrss_kb = proc.stdout.splitlines()[-1].split()
    if int(code) != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit {code}")
    return {"wall_s": float(wall), "peak_rss_mb": int(maxrss_kb) / 1024}


def tensor_ranges(folder: Path) -> dict[str, tuple[Path, int, int]]:
    """name -> (file, absolute start, end) for every tensor of a (sharded) checkpoint folder."""
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        header = read_header(path)
        for name, (_, _, begin, end) in header.entries.items():
            out[name] = (path, header.data_start + begin, header.data_start + end)
    return out


def same_bytes(a: tuple[Path, int, int], b: tuple[Path, int, int], chunk: int = 64 << 20) -> bool:
    if a[2] - a[1] != b[2] - b[1]:
        return False
    with open(a[0], "rb") as fa, open(b[0], "rb") as fb:
        for offset in range(0, a[2] - a[1], chunk):
            n = min(chunk, a[2] - a[1] - offset)
            if os.pread(fa.fileno(), n, a[1] + offset) != os.pread(fb.fileno(), n, b[1] + offset):
                return False
    return True


def verify(src: Path, dst: Path, n_remove: int, layers: int) -> bool:
    """Every output tensor's bytes equal its source tensor's bytes (the layer map applied)."""
    source, output = tensor_ranges(src), tensor_ranges(dst)
    expected = {}
    for j, i in enumerate(layer_map(layers, n_remove)):
        expected.update({name.replace(f"model.layers.{i}.", f"model.layers.{j}.", 1): name
                         for name in source if name.startswith(f"model.layers.{i}.")})
    expected.update({name: name for name in source if not name.startswith("model.layers.")})
    return set(output) == set(expected) and all(same_bytes(output[k], source[expected[k]]) for k in output)


def mergekit_config(path: Path, src: Path, layers: int, n_remove: int) -> None:
    path.write_text(
        "merge_method: passthrough\ndtype: bfloat16\nslices:\n"
        f"  - sources:\n      - model: {src}\n        layer_range: [0, {layers - n_remove}]\n"
        f"  - sources:\n      - model: {src}\n        layer_range: [{n_remove}, {layers}]\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pk-dus-bench"))
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--n-remove", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    src, dus_out, copy_out, merge_out = work / "src", work / "dus", work / "copy", work / "mergekit"
    t0 = time.perf_counter()
    total = make_checkpoint(src, args.layers)
    largest = max(p.stat().st_size for p in src.glob("*.safetensors"))
    print(f"synthetic checkpoint: {args.layers} layers, {total / 1e9:.2f} GB, "
          f"{len(list(src.glob('*.safetensors')))} shards "
          f"(largest {largest / 1e6:.0f} MB), built in {time.perf_counter() - t0:.1f}s; host cores: {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    pk = shutil.which("pk") or str(Path(sys.executable).with_name("pk"))
    mergekit = shutil.which("mergekit-yaml")
    if mergekit:
        mergekit_config(work / "mergekit.yml", src, args.layers, args.n_remove)
    else:
        print("mergekit: not installed (mergekit-yaml not on PATH); its ratio is skipped")
    jobs = {
        "pk dus": lambda: measure([pk, "dus", str(src), str(dus_out), "-m", str(args.n_remove), "-q"], reads=src),
        "cp": lambda: measure(["/bin/cp", "-r", str(dus_out), str(copy_out)], reads=dus_out),
        **({"mergekit": lambda: measure([mergekit, str(work / "mergekit.yml"), str(merge_out)], reads=src)}
           if mergekit else {}),
        "pk --version": lambda: measure([pk, "--version"]),
    }
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in jobs}
    for rep in range(args.repeats):
        groups = [["pk dus", "cp"], [name for name in jobs if name not in ("pk dus", "cp")]]
        for name in [n for group in (groups if rep % 2 == 0 else groups[::-1]) for n in group]:
            shutil.rmtree({"pk dus": dus_out, "cp": copy_out, "mergekit": merge_out}.get(name, work / "none"),
                          ignore_errors=True)
            rows[name].append(jobs[name]())
    out_bytes = sum(p.stat().st_size for p in dus_out.glob("*.safetensors"))
    ok = verify(src, dus_out, args.n_remove, args.layers)
    merge_ok = None
    if mergekit:
        pk_t, mk_t = tensor_ranges(dus_out), tensor_ranges(merge_out)
        merge_ok = set(pk_t) == set(mk_t) and all(same_bytes(pk_t[k], mk_t[k]) for k in pk_t)
    med = {name: {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "peak_rss_mb")}
           for name, runs in rows.items()}
    print(f"\n| job | bytes written | wall (s), median of {args.repeats} | all walls (s) | peak RSS (MB) |"
          "\n|---|---|---|---|---|")
    for name in jobs:
        written = 0 if name == "pk --version" else out_bytes
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in rows[name])
        print(f"| {name} | {written / 1e9:.2f} GB | {med[name]['wall_s']:.2f} | {walls} | "
              f"{med[name]['peak_rss_mb']:.0f} |")
    print(f"\npk dus m={args.n_remove}: {args.layers} -> {2 * (args.layers - args.n_remove)} layers; "
          f"every output tensor equals its source bytes: {ok}"
          + (f"; equals mergekit's output: {merge_ok}" if mergekit else ""))
    print("\nratios (goal):")
    print(f"  wall pk dus / cp of the output bytes = {med['pk dus']['wall_s'] / med['cp']['wall_s']:.2f}  (<= 1.5)")
    if mergekit:
        print("  wall mergekit / pk dus               = "
              f"{med['mergekit']['wall_s'] / med['pk dus']['wall_s']:.2f}  (>= 5)")
    else:
        print("  wall mergekit / pk dus               = n/a (mergekit not installed)")
    print(f"  peak RSS pk dus / largest input shard = {med['pk dus']['peak_rss_mb'] * 2**20 / largest:.3f}"
          f"  ({med['pk dus']['peak_rss_mb']:.0f} MB / {largest / 2**20:.0f} MiB; <= 1.2)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if not ok or merge_ok is False:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
