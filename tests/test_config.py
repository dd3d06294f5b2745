"""Properties of config composition, overrides, TOML writing and hashing."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pk.core.config import apply_overrides, config_hash, deep_merge, dumps_toml, parse_override, resolve
from pk.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
scalars = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=True, width=64),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)
values = st.one_of(scalars, st.lists(st.integers(-100, 100), max_size=4),
                   st.lists(st.text(alphabet="abc", max_size=3), max_size=3))
tables = st.dictionaries(keys, values, max_size=5)
configs = st.dictionaries(keys, tables, max_size=4)


@given(configs)
def test_toml_writer_round_trips(cfg):
    back = tomllib.loads(dumps_toml(cfg))
    assert back == cfg or all(
        (isinstance(v, float) and isinstance(back[s][k], float) and (math.isclose(v, back[s][k]) or v == back[s][k]))
        or back[s][k] == v
        for s, t in cfg.items() for k, v in t.items()
    )


@given(configs, configs)
def test_deep_merge_right_wins_and_keeps_left(a, b):
    merged = deep_merge(a, b)
    for s, t in b.items():
        for k, v in t.items():
            assert merged[s][k] == v or (isinstance(v, float) and math.isnan(v))
    for s, t in a.items():
        if s not in b:
            assert merged[s] == t
    assert a == deep_merge(a, {})  # inputs untouched


@given(keys, keys, st.one_of(st.integers(-1000, 1000), st.booleans(), st.lists(st.integers(0, 9), max_size=3)))
def test_override_parses_toml_literals(section, key, value):
    text = f"{section}.{key}=" + (str(value).lower() if isinstance(value, bool) else str(value))
    path, parsed = parse_override(text)
    assert path == [section, key] and parsed == value


def test_bare_word_override_is_a_string_and_quoting_works():
    assert parse_override("model.name=sasrec") == (["model", "name"], "sasrec")
    assert parse_override('model.activation="gelu"') == (["model", "activation"], "gelu")
    with pytest.raises(ConfigError):
        parse_override("model.hidden=[1,")


def test_switching_component_keeps_shared_parameters_only():
    from pk.core.plugins import load_registry

    reg = load_registry(entry_points=False)
    base = {"model": {"name": "mlp", "dropout": 0.3}, "dataset": {"name": "synthetic-classification"},
            "trainer": {"name": "supervised", "max_epochs": 3}}
    # switching the trainer name keeps max_epochs (the new trainer has it)...
    merged = deep_merge(base, {"trainer": {"name": "supervised"}})
    assert resolve(merged, reg).data["trainer"]["max_epochs"] == 3
    # ...and a parameter the new component lacks is dropped, not an error
    cfg = apply_overrides({"model": {"name": "a", "width": 3}, "dataset": base["dataset"], "trainer": base["trainer"]},
                          ["model.name=mlp"])
    assert "width" not in resolve(cfg, reg).data["model"]
    # an explicit unknown key on the new component is still an error
    with pytest.raises(ConfigError, match="width"):
        resolve(deep_merge(cfg, {"model": {"width": 4}}), reg)


def test_hash_ignores_out_dir_but_not_params():
    from pk.core.plugins import load_registry

    reg = load_registry(entry_points=False)
    base = {"model": {"name": "mlp"}, "dataset": {"name": "synthetic-classification"},
            "trainer": {"name": "supervised"}}
    a = resolve(base, reg)
    b = resolve(deep_merge(base, {"run": {"out_dir": "elsewhere"}}), reg)
    c = resolve(deep_merge(base, {"trainer": {"lr": 0.5}}), reg)
    assert a.hash() == b.hash() != c.hash()
    assert config_hash(a.data) == a.hash()


def test_int_is_accepted_for_float_but_not_bool_for_int():
    from pk.core.plugins import load_registry

    reg = load_registry(entry_points=False)
    base = {"model": {"name": "mlp"}, "dataset": {"name": "synthetic-classification"},
            "trainer": {"name": "supervised", "lr": 1}}
    assert resolve(base, reg).data["trainer"]["lr"] == 1.0
    with pytest.raises(ConfigError, match="integer"):
        resolve(deep_merge(base, {"trainer": {"max_epochs": True}}), reg)
