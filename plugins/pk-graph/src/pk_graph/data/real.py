"""Real datasets through PyG's own ``Planetoid`` and ``TUDataset`` classes.

Offline: the raw folder (``<Name>/raw``, the layout PyG expects) is found with
``pk.core.datasource.locate`` (``dataset.path``, the shared data dir, the cache) and copied to
a writable cache with ``writable_copy`` (PyG writes ``processed/`` beside ``raw/``). Online:
PyG's own download into ``<data dir>/pyg``. Raw files are checked first, so a corrupt file
raises one ``DataError`` line naming the file (and line) and the fix.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

from torch_geometric.data import Data

from pk.core.datasource import locate, writable_copy
from pk.core.errors import DataError
from pk.core.io import cache_lock
from pk.core.paths import data_dir

PLANETOID_NAMES = ("Cora", "CiteSeer", "PubMed")
PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


# -- raw folder resolution -----------------------------------------------------------------
def resolve_raw_dir(name: str, source: str, path: str, required: tuple[str, ...]) -> Path | None:
    """The folder holding ``name``'s raw files, or None when ``source`` resolves to synthetic.

    ``path`` may name the dataset folder (holding ``raw/``) or the raw folder itself.
    """
    found = locate(name, source=source, path=path, shared_folder=name, required=tuple(f"raw/{r}" for r in required))
    if found is None:
        return None
    raw = found / "raw" if (found / "raw").is_dir() else found
    missing = [r for r in required if not (raw / r).is_file()]
    if missing:
        raise DataError(f"dataset {name}: {raw} lacks {', '.join(missing)}; "
                        "point dataset.path at the folder holding raw/")
    return raw


def writable_root(raw_dir: Path, kind: str, name: str) -> Path:
    """Copy ``raw_dir`` to ``<cache>/copies/<kind>/<name>/raw`` and return ``<cache>/copies/<kind>``.

    PyG's stale ``processed/`` is removed whenever the raw files change."""
    raw_copy = writable_copy(raw_dir, f"{kind}/{name}/raw")
    stamp = (raw_copy / ".pk-source").read_text()
    marker = raw_copy.parent / ".pk-raw-stamp"
    if not marker.exists() or marker.read_text() != stamp:
        shutil.rmtree(raw_copy.parent / "processed", ignore_errors=True)
        marker.write_text(stamp)
    return raw_copy.parent.parent


# -- validation ----------------------------------------------------------------------------
def check_planetoid_raw(raw_dir: Path, name: str) -> None:
    """Unpickle each ``ind.<name>.*`` file and parse ``test.index``; one-line DataError on failure."""
    prefix = f"ind.{name.lower()}"
    for part in PLANETOID_PARTS:
        f = raw_dir / f"{prefix}.{part}"
        if part == "test.index":
            for lineno, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                if line.strip() and not line.strip().lstrip("-").isdigit():
                    raise DataError(f"{f}:{lineno}: expected one integer node index per line, "
                                    f"got {line.strip()[:30]!r}; restore the original file")
            continue
        try:
            with open(f, "rb") as fh:
                pickle.load(fh, encoding="latin1")
        except ModuleNotFoundError as exc:
            raise DataError(f"{f}: reading Planetoid pickles needs {exc.name} (pip install scipy)") from None
        except Exception as exc:  # any unpickling failure means a corrupt file
            raise DataError(f"{f}: not a valid Planetoid pickle ({type(exc).__name__}); "
                            "restore the original file") from None


def _check_table(f: Path, columns: int | None, integer: bool, max_value: int | None = None) -> int:
    """Parse a comma-separated TU text file; return its number of non-empty lines."""
    count = 0
    with open(f, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            tokens = [t.strip() for t in text.split(",")]
            if columns is not None and len(tokens) != columns:
                raise DataError(f"{f}:{lineno}: expected {columns} comma-separated values, got {len(tokens)}; "
                                "restore the original file")
            try:
                values = [int(t) if integer else float(t) for t in tokens]
            except ValueError:
                kind = "integers" if integer else "numbers"
                raise DataError(f"{f}:{lineno}: expected {kind}, got {text[:30]!r}; "
                                "restore the original file") from None
            if max_value is not None and any(v < 1 or v > max_value for v in values):
                raise DataError(f"{f}:{lineno}: node id out of range 1..{max_value}; the file does not match "
                                f"{f.name.rsplit('_', 1)[0]}_graph_indicator.txt")
            count += 1
    return count


def _read_column(f: Path) -> list[int]:
    """The integers of a one-column TU file (already checked by :func:`_check_table`)."""
    with open(f, encoding="utf-8", errors="replace") as fh:
        return [int(line.strip()) for line in fh if line.strip()]


def check_tu_raw(raw_dir: Path, name: str) -> None:
    """Check the TU text files (``<name>_A.txt``, ``_graph_indicator.txt`` and ``_graph_labels.txt``
    required; others if present): parse errors, empty files, graph ids that skip or go backwards,
    a label count that differs from the graph count, fewer than 2 classes."""
    indicator = raw_dir / f"{name}_graph_indicator.txt"
    num_nodes = _check_table(indicator, 1, True)
    if num_nodes == 0:
        raise DataError(f"{indicator}:1: empty file (no nodes); restore the original file")
    graph_ids = _read_column(indicator)
    # the 1-based line of the first id that does not start at 1 or grow by 0 or 1
    bad = [1] if graph_ids[0] != 1 else [
        i + 1 for i in range(1, len(graph_ids)) if not 0 <= graph_ids[i] - graph_ids[i - 1] <= 1][:1]
    if bad:
        lineno = bad[0]
        raise DataError(f"{indicator}:{lineno}: graph ids must start at 1 and grow by 0 or 1 per line; "
                        "restore the original file")
    num_graphs = graph_ids[-1]
    edges = raw_dir / f"{name}_A.txt"
    _check_table(edges, 2, True, max_value=num_nodes)
    labels_file = raw_dir / f"{name}_graph_labels.txt"
    if not labels_file.is_file():
        raise DataError(f"{labels_file}: missing; graph classification needs one label per graph")
    _check_table(labels_file, 1, True)
    labels = _read_column(labels_file)
    if len(labels) != num_graphs:
        raise DataError(f"{labels_file}:{min(len(labels), num_graphs) + 1}: {len(labels)} labels for "
                        f"{num_graphs} graphs (in {indicator.name}); restore the original file")
    if len(set(labels)) < 2:
        raise DataError(f"{labels_file}:1: all {len(labels)} graphs have label {labels[0]}; "
                        "graph classification needs at least 2 classes")
    for suffix, integer in (("node_labels", True), ("edge_labels", True)):
        f = raw_dir / f"{name}_{suffix}.txt"
        if f.is_file():
            _check_table(f, None, integer)
    for suffix in ("node_attributes", "edge_attributes", "graph_attributes"):
        f = raw_dir / f"{name}_{suffix}.txt"
        if f.is_file():
            _check_table(f, None, False)


# -- loaders -------------------------------------------------------------------------------
def _pyg_error(name: str, where: Path, exc: Exception) -> DataError:
    return DataError(f"dataset {name}: PyG could not read {where} ({type(exc).__name__}: {str(exc)[:80]}); "
                     "restore the raw files or use source=\"download\"")


def load_planetoid(name: str = "Cora", *, source: str = "file", path: str = "",
                   split: str = "public") -> tuple[Data, str] | None:
    """PyG ``Planetoid`` graph ``name`` (with ``train_mask``/``val_mask``/``test_mask``) and the source used.

    Returns None when ``source`` is "synthetic", or "auto" found no files."""
    from torch_geometric.datasets import Planetoid

    if name not in PLANETOID_NAMES:
        raise DataError(f"dataset planetoid: dataset_name must be one of {', '.join(PLANETOID_NAMES)}, got {name!r}")
    if source == "download":
        root = data_dir() / "pyg"
        try:
            return Planetoid(str(root), name, split=split)[0], "download"
        except OSError as exc:
            raise DataError(f"dataset {name}: PyG download failed ({exc}); "
                            "without a network set dataset.path to a raw folder") from None
    required = tuple(f"ind.{name.lower()}.{p}" for p in PLANETOID_PARTS)
    raw = resolve_raw_dir(name, source, path, required)
    if raw is None:
        return None
    check_planetoid_raw(raw, name)
    try:
        with cache_lock(data_dir() / "copies" / "planetoid" / name):  # PyG writes processed/ on first use
            data = Planetoid(str(writable_root(raw, "planetoid", name)), name, split=split)[0]
    except DataError:
        raise
    except Exception as exc:
        raise _pyg_error(name, raw, exc) from None
    check_planetoid_data(data, raw, name)
    return data, "file"


def check_planetoid_data(data: Data, raw: Path, name: str) -> None:
    """DataError when the loaded graph is empty or its training nodes hold fewer than 2 classes."""
    prefix = raw / f"ind.{name.lower()}"
    if data.num_nodes == 0 or data.x.shape[0] == 0:
        raise DataError(f"{prefix}.allx:1: no nodes; restore the original file")
    train_y = data.y[data.train_mask]
    if train_y.numel() == 0:
        raise DataError(f"{prefix}.y:1: no training node; restore the original file")
    if train_y.unique().numel() < 2:
        raise DataError(f"{prefix}.y:1: all {train_y.numel()} training nodes have class {int(train_y[0])}; "
                        "need at least 2 classes")


def load_tu(name: str, *, source: str = "file", path: str = "",
            use_node_attr: bool = False) -> tuple[list[Data], str] | None:
    """PyG ``TUDataset`` ``name`` as a list of graphs (constant ``x`` when it has no node features)."""
    import torch
    from torch_geometric.datasets import TUDataset

    if source == "download":
        try:
            ds = TUDataset(str(data_dir() / "pyg"), name, use_node_attr=use_node_attr)
        except OSError as exc:
            raise DataError(f"dataset {name}: PyG download failed ({exc}); "
                            "without a network set dataset.path to a raw folder") from None
        used = "download"
    else:
        raw = resolve_raw_dir(name, source, path, (f"{name}_A.txt", f"{name}_graph_indicator.txt"))
        if raw is None:
            return None
        check_tu_raw(raw, name)
        try:
            with cache_lock(data_dir() / "copies" / "tu" / name):  # PyG writes processed/ on first use
                ds = TUDataset(str(writable_root(raw, "tu", name)), name, use_node_attr=use_node_attr)
        except DataError:
            raise
        except Exception as exc:
            raise _pyg_error(name, raw, exc) from None
        used = "file"
    graphs = []
    for i in range(len(ds)):
        g = ds[i]
        x = g.x if g.x is not None and g.x.numel() > 0 else torch.ones(g.num_nodes, 1)
        graphs.append(Data(x=x.float(), edge_index=g.edge_index, y=g.y.view(1).long(), num_nodes=g.num_nodes))
    return graphs, used


def cora(path: str = "", source: str = "file") -> Data:
    """PyG's Cora ``Data`` (public split masks) from ``path`` or the shared/cached raw folder.

    ``path`` may be the ``Cora`` folder or its ``raw/`` folder; empty means the shared data dir
    (``PK_SHARED_DATA`` or ``../shared/data``), then the cache. Raises DataError if not found."""
    loaded = load_planetoid("Cora", source=source, path=path)
    if loaded is None:
        raise DataError("dataset Cora: no raw files found; set path= or PK_SHARED_DATA")
    return loaded[0]
