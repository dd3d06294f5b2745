"""TOML configs: load, deep-merge, ``-c section.key=value`` overrides, strict validation.

A config has tables ``[run] [model] [dataset] [trainer] [aggregator] [calibrator]
[evaluator]``; each component table holds ``name = "<registered name>"`` plus that
component's parameters. Precedence: dataclass defaults < ``--config`` files in order <
``-c`` overrides. Unknown keys and wrong types are :class:`ConfigError` with a did-you-mean.
Nothing here imports torch.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pk.core.errors import ConfigError, did_you_mean
from pk.core.registry import CONSUMABLE, KINDS, SECTION_TO_KIND, Registration, Registry
from pk.core.validation import validate_params

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

COMPONENT_SECTIONS = tuple(KINDS.values())
REQUIRED_FOR_TRAIN = ("model", "dataset", "trainer")


@dataclass
class RunConfig:
    """The ``[run]`` table: seed, device ("cpu", "cuda", "auto"), determinism, output."""

    seed: int = field(default=0, metadata={"ge": 0})
    device: str = "cpu"
    deterministic: bool = True
    threads: int = field(default=0, metadata={"ge": 0})
    out_dir: str = "runs"
    name: str = field(default="", metadata={"max_length": 64, "pattern": r"[A-Za-z0-9._-]*"})


SECTIONS = ("run", *COMPONENT_SECTIONS)


# -- reading ---------------------------------------------------------------------------
def load_toml(path: str | Path) -> dict[str, Any]:
    """Read one TOML file; a missing or malformed file is a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist; check the path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text; give a TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}; fix the file (see toml.io)") from None


INHERITED = "__inherited__"

_KEY_IN_MESSAGE = re.compile(r"\b(run|model|dataset|trainer|aggregator|calibrator|evaluator)\.([A-Za-z_]\w*)")


def locate_key(message: str, files: Iterable[str | Path]) -> str:
    """``message`` prefixed with ``file:line`` of the last of ``files`` that sets the
    ``section.key`` it names (``[section]`` then ``key =``, or ``section.key =``), if any."""
    found = _KEY_IN_MESSAGE.search(message)
    if not found:
        return message
    section, key = found.groups()
    where = ""
    for file in files:
        current = ""
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for n, line in enumerate(lines, 1):
            text = line.strip()
            if text.startswith("[") and not text.startswith("[["):
                current = text.strip("[] ").strip('"')
                continue
            name = text.split("=", 1)[0].strip().strip('"') if "=" in text else ""
            if (current == section and name == key) or (not current and name == f"{section}.{key}"):
                where = f"{file}:{n}"
    return f"{where}: {message}" if where else message


def _switch_component(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A component table whose ``name`` changed: the new table, plus the old parameters it
    does not set, marked inherited (``resolve`` keeps those the new component also has)."""
    out = copy.deepcopy(dict(new))
    carried = {k: v for k, v in old.items() if k not in ("name", INHERITED) and k not in new}
    out.update(copy.deepcopy(carried))
    marks = (set(old.get(INHERITED, ())) | set(carried)) - set(new)
    if marks:
        out[INHERITED] = sorted(marks)
    return out


def deep_merge(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``other`` into a copy of ``base``; tables merge, anything else replaces.

    When a component's ``name`` changes, the old parameters that the new component also
    has are kept (so ``[defaults] trainer.max_epochs`` survives a switch of trainer) and
    the others are dropped at :func:`resolve`.
    """
    out = copy.deepcopy(dict(base))
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            if "name" in value and value["name"] != out[key].get("name"):
                out[key] = _switch_component(out[key], value)
            else:
                merged = deep_merge(out[key], value)
                if INHERITED in merged:
                    rest = sorted(set(merged[INHERITED]) - set(value))
                    merged[INHERITED] = rest
                    if not rest:
                        del merged[INHERITED]
                out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is a TOML literal, a bare word is a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"override {text!r} is not KEY=VALUE; write e.g. -c trainer.lr=1e-3 or -c model.name=mlp"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw and not any(ch in raw for ch in "[]{}\"'=") and not raw[0].isdigit():
            value = raw
        else:
            raise ConfigError(
                f"override {text!r}: {raw!r} is not a TOML value; quote strings "
                f"(-c {key}='\"text\"'), write lists as [1, 2]"
            ) from None
    return key.split("."), value


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    out = copy.deepcopy(dict(config))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a table")
            node = nxt
        if path[-1] == "name" and len(path) == 2 and node.get("name") not in (None, value):
            switched = _switch_component(node, {"name": value})
            node.clear()
            node.update(switched)
            continue
        node[path[-1]] = value
        if len(path) == 2 and path[-1] in node.get(INHERITED, ()):
            node[INHERITED] = [k for k in node[INHERITED] if k != path[-1]]
    return out


def compose(files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
            base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Raw (unvalidated) config from ``base``, files in order, then overrides."""
    cfg: dict[str, Any] = dict(base or {})
    for f in files:
        cfg = deep_merge(cfg, load_toml(f))
    return apply_overrides(cfg, overrides)


@dataclass
class Resolved:
    """A validated config with defaults filled in, and the registrations it names."""

    data: dict[str, Any]
    registrations: dict[str, Registration]

    @property
    def run(self) -> RunConfig:
        return RunConfig(**self.data["run"])

    def component(self, section: str) -> Any:
        """The section's config dataclass instance (None if the section is absent)."""
        if section not in self.registrations:
            return None
        reg = self.registrations[section]
        params = {k: v for k, v in self.data[section].items() if k != "name"}
        if reg.config is None:
            return None
        values = {}
        for f in dataclasses.fields(reg.config):
            v = params[f.name]
            if isinstance(v, list) and isinstance(f.default, tuple):
                v = tuple(v)
            values[f.name] = v
        return reg.config(**values)

    def hash(self) -> str:
        return config_hash(self.data)


def resolve(raw: Mapping[str, Any], registry: Registry, *, required: Iterable[str] = REQUIRED_FOR_TRAIN) -> Resolved:
    """Validate ``raw`` against the registry and fill defaults (no torch imported)."""
    raw = dict(raw)
    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown config table [{section}]{did_you_mean(section, SECTIONS)}; "
                f"valid tables: {', '.join(SECTIONS)}"
            )
        if not isinstance(raw[section], Mapping):
            raise ConfigError(f"[{section}] must be a table, e.g. [{section}] name = \"...\"")
    data: dict[str, Any] = {"run": validate_params(raw.get("run", {}), RunConfig, "run")}
    regs: dict[str, Registration] = {}
    for section in COMPONENT_SECTIONS:
        table = dict(raw.get(section, {}))
        if not table:
            if section in required:
                raise ConfigError(
                    f"no {section} given; add [{section}] name = \"...\" to the config or -c {section}.name=..."
                )
            continue
        name = table.pop("name", None)
        inherited = set(table.pop(INHERITED, ()))
        if not isinstance(name, str):
            raise ConfigError(f"[{section}] needs name = \"<registered {section}>\" (`pk list --all`)")
        reg = registry.get(SECTION_TO_KIND[section], name)
        own = {f.name for f in dataclasses.fields(reg.config)} if reg.config is not None else set()
        table = {k: v for k, v in table.items() if k not in inherited or k in own}
        regs[section] = reg
        data[section] = {"name": name, **validate_params(table, reg.config, section)}
    if "model" in regs and "trainer" in regs:
        check_consumed(regs, registry)
    return Resolved(data=data, registrations=regs)


def check_consumed(regs: Mapping[str, Registration], registry: Registry) -> None:
    """Refuse a configured calibrator or aggregator that no builder of the run takes.

    Builders declare what they take at registration (``accepts=("calibrator",)``); a
    component nobody takes would be silently dropped while the run record names it.
    """
    for section in CONSUMABLE:
        if section not in regs:
            continue
        takers = ("model",) if section == "calibrator" else ("trainer", "evaluator")
        if any(section in regs[s].accepts for s in takers if s in regs):
            continue
        who = " or ".join(f"{s} {regs[s].name!r}" for s in takers if s in regs)
        able = sorted(f"{s} {r.name}" for s in takers for r in registry
                      if r.kind == SECTION_TO_KIND[s] and section in r.accepts)
        hint = (f"use a {' or '.join(takers)} that takes one ({', '.join(able)})" if able
                else "no installed component takes one")
        raise ConfigError(
            f"{who} takes no {section}, so {section} = {regs[section].name!r} would be ignored; "
            f"remove [{section}] or {hint}"
        )


# -- writing ---------------------------------------------------------------------------
def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple):
        return [_drop_none(v) for v in value]
    return value


def toml_value(value: Any) -> str:
    """One value as a TOML literal (as ``-c key=VALUE`` reads it); tables are inline."""
    import tomli_w

    if isinstance(value, Mapping):
        items = [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    try:
        return tomli_w.dumps({"v": _drop_none(value)}).split(" = ", 1)[1].strip()
    except TypeError:
        raise ConfigError(f"cannot write {value!r} to TOML") from None


def toml_key(key: str) -> str:
    """A bare or quoted TOML key, as tomli-w writes it."""
    import tomli_w

    return tomli_w.dumps({str(key): 0}).split(" = ", 1)[0]


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Write a config (top-level scalars, then one table per section) as TOML, with
    tomli-w's escaping and arrays kept on one line. ``None`` values are left out (TOML has
    no null); they read back as their default."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items()
             if v is not None and not isinstance(v, Mapping)]
    for section, table in data.items():
        if isinstance(table, Mapping):
            lines += ["", f"[{toml_key(section)}]"] if lines else [f"[{toml_key(section)}]"]
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def config_hash(data: Mapping[str, Any]) -> str:
    """Six hex digits identifying a resolved config (``run.out_dir``/``run.name`` ignored)."""
    clean = copy.deepcopy(dict(data))
    run = dict(clean.get("run", {}))
    run.pop("out_dir", None)
    run.pop("name", None)
    clean["run"] = run
    blob = json.dumps(clean, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:6]
