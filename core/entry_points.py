"""Entry points read straight from ``entry_points.txt`` files (standard library only).

What ``importlib.metadata.entry_points(group=...)`` returns (distributions on ``sys.path``,
the first of each normalised name wins; names and versions from METADATA/PKG-INFO), without
importing importlib.metadata or parsing every distribution's metadata: that was most of
``pk --help``'s and ``pk list``'s start-up. ``PK_LOAD_PLUGINS`` / ``PK_DISABLE_PLUGINS``
selection (:func:`is_selected`) lives here too, so the CLI can apply it before importing
pluggy.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EntryPoint:
    """One entry point: ``name = value`` (``"module"`` or ``"module:attr"``) of a
    distribution; ``location`` is its ``*.dist-info`` / ``*.egg-info`` folder."""

    name: str
    value: str
    dist: str
    version: str
    location: str

    @property
    def module(self) -> str:
        return self.value.partition(":")[0].strip()

    def load(self) -> Any:
        """Import the module (and the attribute, when ``value`` names one)."""
        module, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def env_names(var: str) -> list[str] | None:
    """A comma-separated environment list (None when the variable is unset)."""
    value = os.environ.get(var)
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def is_selected(ep_name: str, dist: str) -> bool:
    """PK_LOAD_PLUGINS allows, PK_DISABLE_PLUGINS blocks, by entry-point or distribution name
    (``pk-x`` or ``pk_x``)."""
    allow, deny = env_names("PK_LOAD_PLUGINS"), env_names("PK_DISABLE_PLUGINS") or []
    names = {ep_name, dist, dist.replace("-", "_")}
    if allow is not None and not names & set(allow):
        return False
    return not names & set(deny)


def distribution_folders() -> list[tuple[str, str]]:
    """``(folder, entry)`` of every ``*.dist-info`` / ``*.egg-info`` on ``sys.path`` whose
    normalised name is the first of its kind (the one importlib.metadata would use)."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for folder in sys.path:
        folder = folder or "."
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for entry in names:
            if not entry.endswith((".dist-info", ".egg-info")):
                continue
            norm = entry.rsplit(".", 1)[0].partition("-")[0].lower().replace("-", "_").replace(".", "_")
            if norm not in seen:
                seen.add(norm)
                out.append((folder, entry))
    return out


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group``, in ``sys.path`` order."""
    header = f"[{group}]"
    out: list[EntryPoint] = []
    for folder, entry in distribution_folders():
        base = os.path.join(folder, entry)
        try:
            with open(os.path.join(base, "entry_points.txt"), encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        if header not in text:
            continue
        stem = entry.rsplit(".", 1)[0]
        name_ver = stem.partition("-")
        dist, version = dist_name_version(base)
        dist, version = dist or name_ver[0], version or name_ver[2] or "?"
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == header and "=" in line and not line.startswith(("#", ";")):
                name, _, value = line.partition("=")
                out.append(EntryPoint(name.strip(), value.strip(), dist, version, base))
    return out


def dist_name_version(base: str) -> tuple[str, str]:
    """``Name`` and ``Version`` from a distribution folder's METADATA or PKG-INFO header."""
    for meta in ("METADATA", "PKG-INFO"):
        found: dict[str, str] = {}
        try:
            with open(os.path.join(base, meta), encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        break
                    key, _, value = line.partition(":")
                    if key in ("Name", "Version"):
                        found[key] = value.strip()
        except OSError:
            continue
        return found.get("Name", ""), found.get("Version", "")
    return "", ""
