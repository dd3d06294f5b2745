"""The official PI-GNN / ContinualGNN Cora stream (14 snapshots) with Planetoid features.

Files (``<folder>/raw/``, whitespace-separated, node ids 0..2707 in the PI-GNN id space):
``labels`` ("node label"), ``train_nodes``/``val_nodes``/``test_nodes`` (one id per line),
``stream_edges/<t>`` ("src dst", the edges arriving at t) and ``pignn_to_planetoid_index.txt``
("i j": PI-GNN node i is node j of PyG's ``Planetoid(root, "Cora")[0]``). Features and labels
come from PyG's Cora through that map (labels are checked against the ``labels`` file: the map
PI-GNN -> PyG must be one consistent bijection of class ids). Node ids stay in PI-GNN's space.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pk.core.errors import DataError
from pk_pignn.data.stream import SnapshotStream

REQUIRED = ("labels", "train_nodes", "val_nodes", "test_nodes", "pignn_to_planetoid_index.txt", "stream_edges/0")
FIX = "restore the file from the PI-GNN release (data/cora/)"


def read_int_table(path: Path, columns: int, num_nodes: int | None = None) -> torch.Tensor:
    """Parse ``columns`` integers per non-empty line into ``[lines, columns]``; DataError names
    the file and line on a malformed line or an id outside ``[0, num_nodes)``."""
    if not path.is_file():
        raise DataError(f"{path}: file missing; {FIX}")
    rows: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != columns:
                raise DataError(f"{path}:{lineno}: expected {columns} whitespace-separated integers, "
                                f"got {line.strip()[:40]!r}; {FIX}")
            try:
                values = [int(tok) for tok in tokens]
            except ValueError:
                raise DataError(f"{path}:{lineno}: expected integers, got {line.strip()[:40]!r}; {FIX}") from None
            if num_nodes is not None and any(v < 0 or v >= num_nodes for v in values):
                raise DataError(f"{path}:{lineno}: node id outside 0..{num_nodes - 1}; {FIX}")
            rows.append(values)
    return torch.tensor(rows, dtype=torch.long).view(-1, columns)


def stream_files(raw: Path) -> list[Path]:
    """``stream_edges/0..T-1`` in numeric order (T = the number of consecutive files from 0)."""
    folder = raw / "stream_edges"
    files = []
    t = 0
    while (folder / str(t)).is_file():
        files.append(folder / str(t))
        t += 1
    if not files:
        raise DataError(f"{folder}: no stream_edges/0 file; {FIX}")
    return files


def load_id_map(raw: Path, num_nodes: int) -> torch.Tensor:
    """``map[i] = j``: PI-GNN node i is Planetoid node j; checked to be a bijection."""
    path = raw / "pignn_to_planetoid_index.txt"
    table = read_int_table(path, 2, num_nodes)
    if (table.shape[0] != num_nodes or torch.unique(table[:, 0]).numel() != num_nodes
            or torch.unique(table[:, 1]).numel() != num_nodes):
        raise DataError(f"{path}: expected a bijection of {num_nodes} lines 'pignn_id planetoid_id'; "
                        "regenerate the id map")
    mapping = torch.empty(num_nodes, dtype=torch.long)
    mapping[table[:, 0]] = table[:, 1]
    return mapping


def label_map(pignn_labels: torch.Tensor, pyg_labels: torch.Tensor, path: Path) -> dict[int, int]:
    """The PI-GNN -> PyG class id map implied by the node map; DataError if inconsistent."""
    out: dict[int, int] = {}
    for a, b in zip(pignn_labels.tolist(), pyg_labels.tolist()):
        if out.setdefault(a, b) != b:
            raise DataError(f"{path}: PI-GNN class {a} maps onto PyG classes {out[a]} and {b}; "
                            "the id map does not fit this Cora")
    if len(set(out.values())) != len(out):
        raise DataError(f"{path}: two PI-GNN classes map onto one PyG class; the id map does not fit this Cora")
    return out


def load_cora_stream(folder: Path, features_path: str = "") -> tuple[SnapshotStream, dict[str, object]]:
    """Build the Cora stream from ``folder`` (holding ``raw/`` or being it) and PyG's Cora
    (``features_path``: the Cora folder; empty = the shared data dir / cache, via pk-graph)."""
    from pk_graph.data import cora

    raw = folder / "raw" if (folder / "raw").is_dir() else folder
    missing = [r for r in REQUIRED if not (raw / r).is_file()]
    if missing:
        raise DataError(f"dataset pignn-cora: {raw} lacks {', '.join(missing)}; "
                        "point dataset.path at PIGNN_cora_stream")
    planetoid = cora(path=features_path, source="file")
    n = int(planetoid.num_nodes)
    mapping = load_id_map(raw, n)
    labels_table = read_int_table(raw / "labels", 2, None)
    if labels_table.shape[0] != n or int(labels_table[:, 0].min()) < 0 or int(labels_table[:, 0].max()) >= n:
        raise DataError(f"{raw / 'labels'}: expected {n} lines 'node label' with node ids 0..{n - 1}; {FIX}")
    pignn_y = torch.empty(n, dtype=torch.long)
    pignn_y[labels_table[:, 0]] = labels_table[:, 1]
    y = planetoid.y[mapping]
    classes = label_map(pignn_y, y, raw / "labels")
    masks = []
    for split in ("train_nodes", "val_nodes", "test_nodes"):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[read_int_table(raw / split, 1, n).flatten()] = True
        masks.append(mask)
    if bool((masks[0] & masks[1]).any() | (masks[0] & masks[2]).any() | (masks[1] & masks[2]).any()):
        raise DataError(f"{raw}: train_nodes, val_nodes and test_nodes overlap; {FIX}")
    if not bool(masks[0].any()):
        raise DataError(f"{raw / 'train_nodes'}:1: no training node; {FIX}")
    train_classes = y[masks[0]].unique()
    if train_classes.numel() < 2:
        raise DataError(f"{raw / 'labels'}:1: all training nodes have class {int(train_classes[0])}; "
                        f"need at least 2 classes; {FIX}")
    files = stream_files(raw)
    arrivals = [read_int_table(f, 2, n).t().contiguous() for f in files]
    if arrivals[0].shape[1] == 0:
        raise DataError(f"{files[0]}:1: the first snapshot has no edges; {FIX}")
    stream = SnapshotStream(planetoid.x[mapping], y, masks[0], masks[1], masks[2], arrivals, name="pignn-cora")
    return stream, {"label_map": {str(k): v for k, v in sorted(classes.items())}}
