"""The registry of components that plugins register, and the ``register`` callback.

Nothing here imports torch: targets stay ``"module:attr"`` strings until :meth:`load`.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pk.core.errors import ConfigError, RegistrationError, did_you_mean

if TYPE_CHECKING:
    from pk.core.hookspecs import Register

#: plural hook kind -> singular config section
KINDS: dict[str, str] = {
    "models": "model",
    "datasets": "dataset",
    "trainers": "trainer",
    "aggregators": "aggregator",
    "calibrators": "calibrator",
    "evaluators": "evaluator",
}
SECTION_TO_KIND = {v: k for k, v in KINDS.items()}
#: sections a builder may consume besides its own config: a model takes the run's calibrator,
#: a trainer or evaluator the run's aggregator (declared with ``register(..., accepts=...)``)
CONSUMABLE = ("calibrator", "aggregator")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class Registration:
    """One registered component; ``target`` is resolved lazily by :meth:`load`."""

    kind: str
    name: str
    target: str | Callable[..., Any]
    config: type | None = None
    summary: str = ""
    tasks: tuple[str, ...] = ()
    paper: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    accepts: tuple[str, ...] = ()
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.distribution}:{self.name}"

    @property
    def target_path(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}:{getattr(self.target, '__qualname__', self.target)}"

    def load(self) -> Callable[..., Any]:
        """Import and return the builder (imports the plugin's heavy modules)."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def config_fields(self) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(self.config)) if self.config is not None else []

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "target": self.target_path,
            "summary": self.summary,
            "tasks": list(self.tasks),
            "paper": self.paper,
            "tags": list(self.tags),
            "accepts": list(self.accepts),
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
        }


@dataclass
class PluginInfo:
    """A loaded or failed plugin: where it came from and what went wrong, if anything."""

    name: str
    distribution: str
    version: str
    module: str
    builtin: bool = False
    error: str | None = None
    traceback: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Registry:
    """Registered components by kind and name, plus the plugins that made them."""

    entries: dict[str, dict[str, list[Registration]]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    plugins: list[PluginInfo] = field(default_factory=list)

    # -- building -----------------------------------------------------------------
    def make_register(self, kind: str, plugin: PluginInfo, sink: list[Registration]) -> Register:
        """Return the ``register`` callback for one plugin and one hook kind.

        Registrations go to ``sink`` first so that a plugin whose hook raises can be
        rolled back as a whole; :meth:`commit` adds them to the registry.
        """

        def register(
            name: str,
            target: str | Callable[..., Any],
            *,
            config: type | None = None,
            summary: str = "",
            tasks: Iterable[str] = (),
            paper: dict[str, Any] | None = None,
            tags: Iterable[str] = (),
            accepts: Iterable[str] = (),
        ) -> None:
            where = f"plugin '{plugin.distribution}' registering {kind[:-1]} {name!r}"
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise RegistrationError(f"{where}: name must be lowercase kebab-case")
            if isinstance(target, str):
                if not _TARGET_RE.match(target):
                    raise RegistrationError(f"{where}: target {target!r} is not 'module:attr'")
            elif not callable(target):
                raise RegistrationError(f"{where}: target must be a 'module:attr' string or a callable")
            if config is not None and not dataclasses.is_dataclass(config):
                raise RegistrationError(f"{where}: config must be a dataclass class")
            if config is not None:
                if any(f.name == "name" for f in dataclasses.fields(config)):
                    raise RegistrationError(f"{where}: config may not have a field called 'name'")
                try:
                    config()
                except TypeError as exc:
                    raise RegistrationError(f"{where}: every config field needs a default ({exc})") from exc
            if isinstance(tasks, str):
                tasks = (tasks,)
            if isinstance(tags, str):
                tags = (tags,)
            if isinstance(accepts, str):
                accepts = (accepts,)
            bad = sorted(set(accepts) - set(CONSUMABLE))
            if bad:
                raise RegistrationError(f"{where}: accepts {bad} is not a component section; "
                                        f"use {', '.join(CONSUMABLE)}")
            if any(r.name == name and r.kind == kind for r in sink):
                raise RegistrationError(f"{where}: registered twice by the same plugin")
            sink.append(
                Registration(
                    kind=kind,
                    name=name,
                    target=target,
                    config=config,
                    summary=summary or "",
                    tasks=tuple(tasks),
                    paper=dict(paper) if paper else None,
                    tags=tuple(tags),
                    accepts=tuple(accepts),
                    plugin=plugin.name,
                    distribution=plugin.distribution,
                    version=plugin.version,
                )
            )

        return register

    def commit(self, registrations: Iterable[Registration]) -> None:
        for reg in registrations:
            self.entries[reg.kind].setdefault(reg.name, []).append(reg)

    # -- queries ------------------------------------------------------------------
    def __iter__(self) -> Iterator[Registration]:
        for kind in KINDS:
            for regs in self.entries[kind].values():
                yield from regs

    def names(self, kind: str) -> list[str]:
        out: list[str] = []
        for name, regs in sorted(self.entries[kind].items()):
            out.extend([name] if len(regs) == 1 else [r.qualified_name for r in regs])
        return out

    def get(self, kind: str, name: str) -> Registration:
        """Return the registration of ``kind`` called ``name`` (``dist:name`` if qualified)."""
        if kind not in KINDS:
            kind = SECTION_TO_KIND.get(kind, kind)
        section = KINDS[kind]
        if ":" in name:
            dist, _, bare = name.partition(":")
            for reg in self.entries[kind].get(bare, []):
                if reg.distribution == dist:
                    return reg
        regs = self.entries[kind].get(name, [])
        if len(regs) == 1:
            return regs[0]
        if len(regs) > 1:
            both = ", ".join(repr(r.qualified_name) for r in regs)
            raise ConfigError(
                f"{section} name {name!r} is registered by several plugins; use one of {both}"
            )
        known = self.names(kind)
        hint = did_you_mean(name, known) or (
            f"; known: {', '.join(known)}" if known else "; none is installed"
        )
        raise ConfigError(
            f"unknown {section} {name!r}{hint} (`pk list --all` shows what is installed)"
        )

    def find(self, name: str) -> list[Registration]:
        """Every registration called ``name`` (or ``dist:name``) across kinds."""
        found = []
        for kind in KINDS:
            try:
                found.append(self.get(kind, name))
            except ConfigError:
                continue
        return found

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]
