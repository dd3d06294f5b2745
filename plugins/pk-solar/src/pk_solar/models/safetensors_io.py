"""Reading and writing safetensors files without torch or the safetensors library.

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte offsets, plus ``__metadata__``) and the raw tensor bytes. :func:`read_header` parses and
validates a header, :func:`header_bytes` composes one byte-identical to what safetensors' own
serializer writes, and :func:`copy_range` copies a byte range between files in the kernel
(``copy_file_range``, else ``sendfile``, else a buffered copy), so tensor bytes never enter
this process.
"""

from __future__ import annotations

import errno
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

from pk.core.errors import DataError

#: bytes per element of the safetensors dtypes this module copies (sub-byte F4/F6 are refused)
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "C64": 8, "F64": 8, "I64": 8, "U64": 8,
}
#: the order of safetensors' ``Dtype`` enum; its serializer sorts tensors by it (descending), then by name
_DTYPE_RANK = {name: rank for rank, name in enumerate(DTYPE_BYTES)}
_MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
_CHUNK = 1 << 30  # bytes per kernel copy call
_BUFFER = 8 << 20  # bytes per read in the buffered fallback
_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}
_COPY_MODE = ("copy_file_range" if hasattr(os, "copy_file_range")
              else "sendfile" if hasattr(os, "sendfile") else "buffered")


class ShardHeader:
    """A parsed, validated safetensors header: ``entries[name] = (dtype, shape, begin, end)``
    with offsets relative to ``data_start`` (= 8 + header length) and the ``__metadata__``."""

    def __init__(self, path: Path, data_start: int, entries: dict[str, tuple[str, tuple[int, ...], int, int]],
                 metadata: dict[str, str]) -> None:
        self.path = path
        self.data_start = data_start
        self.entries = entries
        self.metadata = metadata


def _corrupt(path: Path, reason: str) -> DataError:
    return DataError(f"{path}: corrupt safetensors shard ({reason}); re-download or re-save this shard")


def read_header(path: str | Path) -> ShardHeader:
    """Parse and validate the header of a safetensors file without reading tensor data.

    Checks what the safetensors library checks on load: a sane header length, a JSON object of
    known dtypes, non-negative shapes, ``end - begin`` equal to the shape's bytes, offsets
    contiguous from 0, and the last one ending exactly at the end of the file (so a truncated or
    padded file is refused). Any violation is a one-line DataError naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise _corrupt(path, f"{size} bytes, shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(size - 8, _MAX_HEADER_BYTES):
                raise _corrupt(path, f"header length {header_len} does not fit a {size}-byte file")
            raw = fh.read(header_len)
    except FileNotFoundError:
        raise DataError(f"{path}: shard file missing; the index names it, so re-download the checkpoint") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a safetensors file") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, f"header is not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise _corrupt(path, "__metadata__ must map strings to strings")
    entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            ok = isinstance(dtype, str) and all(type(v) is int and v >= 0 for v in (*shape, begin, end))
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _corrupt(path, f"malformed entry for {name!r}")
        if dtype not in DTYPE_BYTES:
            raise _corrupt(path, f"{name!r} has unknown dtype {dtype!r}")
        if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise _corrupt(path, f"{name!r}: {end - begin} bytes for {dtype}{list(shape)}")
        entries[name] = (dtype, tuple(shape), begin, end)
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != position:
            raise _corrupt(path, f"{name!r} starts at byte {begin}, expected {position} (gap or overlap)")
        position = end
    if 8 + header_len + position != size:
        raise _corrupt(path, f"tensors end at byte {8 + header_len + position} but the file has {size} (truncated?)")
    return ShardHeader(path, 8 + header_len, entries, dict(metadata))


def header_bytes(items: list[tuple[str, str, tuple[int, ...]]],
                 metadata: dict[str, str] | None) -> tuple[bytes, list[int]]:
    """The header safetensors' own serializer writes for tensors ``(name, dtype, shape)``.

    Order as in safetensors: by dtype (its enum order, descending), then by name. Returns the
    header (8-byte little-endian length + compact JSON padded with spaces to a multiple of 8)
    and the permutation of ``items`` in file order (the order their bytes must follow).
    """
    order = sorted(range(len(items)), key=lambda k: (-_DTYPE_RANK[items[k][1]], items[k][0]))
    header: dict[str, Any] = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    for k in order:
        name, dtype, shape = items[k]
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, order


def copy_range(src_fd: int, dst_fd: int, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``src_fd`` from ``offset`` to ``dst_fd`` (at its position).

    In the kernel where possible (``copy_file_range``, then ``sendfile``), so the bytes never
    enter this process; a buffered ``pread`` copy otherwise. Raises EOFError on a short source.
    """
    global _COPY_MODE
    done = 0
    while done < length:
        count = min(length - done, _CHUNK)
        try:
            if _COPY_MODE == "copy_file_range":
                n = os.copy_file_range(src_fd, dst_fd, count, offset + done)
            elif _COPY_MODE == "sendfile":
                n = os.sendfile(dst_fd, src_fd, offset + done, count)
            else:
                n = _buffered_copy(src_fd, dst_fd, offset + done, count)
        except OSError as exc:
            if _COPY_MODE != "buffered" and exc.errno in _FALLBACK_ERRNOS and done == 0:
                _COPY_MODE = "sendfile" if _COPY_MODE == "copy_file_range" and hasattr(os, "sendfile") else "buffered"
                continue
            raise
        if n == 0:
            raise EOFError(f"source ended {length - done} bytes early")
        done += n


def _buffered_copy(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    data = os.pread(src_fd, min(count, _BUFFER), offset)
    view = memoryview(data)
    while view:
        view = view[os.write(dst_fd, view):]
    return len(data)
