"""Every bad input: one line saying what is wrong, exit 2 (3 for plugins), no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BASE, invoke


def assert_one_line_error(out, code=2, *words):
    assert out.exit_code == code, out.output
    lines = [x for x in out.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1, out.output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in out.output
    for w in words:
        assert w in lines[0], lines[0]


def test_malformed_toml(runner, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 'mlp'\n")
    assert_one_line_error(invoke(runner, ["train", str(bad)]), 2, "bad.toml", "malformed TOML")


def test_unknown_component_suggests(runner):
    out = invoke(runner, ["train", "-c", "model.name=mpl", "-c", "dataset.name=synthetic-classification",
                          "-c", "trainer.name=supervised"])
    assert_one_line_error(out, 2, "unknown model 'mpl'", "did you mean 'mlp'")


def test_unknown_config_key_suggests(runner):
    assert_one_line_error(invoke(runner, ["train", *BASE, "-c", "trainer.max_epoch=3"]), 2,
                          "trainer.max_epoch", "max_epochs")


def test_wrong_type_in_override(runner):
    assert_one_line_error(invoke(runner, ["train", *BASE, "-c", "trainer.max_epochs=ten"]), 2,
                          "trainer.max_epochs", "integer")


def test_unparseable_override(runner):
    assert_one_line_error(invoke(runner, ["train", *BASE, "-c", "trainer.lr"]), 2, "KEY=VALUE")


def test_unknown_table(runner):
    assert_one_line_error(invoke(runner, ["train", *BASE, "-c", "trainr.lr=1"]), 2, "[trainr]", "trainer")


def test_task_mismatch(runner, pk_register_temp):
    from dataclasses import dataclass

    from pk.core import hookimpl

    @dataclass
    class Cfg:
        size: int = 1

    class Plugin:
        @hookimpl
        def pk_register_datasets(self, register):
            register("seqs", "json:loads", config=Cfg, summary="x", tasks=("next-item",))

    pk_register_temp(Plugin())
    out = invoke(runner, ["train", "-c", "model.name=mlp", "-c", "dataset.name=seqs", "-c", "trainer.name=supervised"])
    assert_one_line_error(out, 2, "share no task", "seqs")


def test_run_dir_not_empty(runner, tmp_path):
    d = tmp_path / "taken"
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    assert_one_line_error(invoke(runner, ["train", *BASE, "--run-dir", str(d)]), 2, "not empty")
    assert (d / "keep.txt").read_text() == "precious"


def test_missing_checkpoint(runner, tmp_path):
    assert_one_line_error(invoke(runner, ["eval", str(tmp_path / "nope.pt")]), 2, "does not exist")


def test_corrupt_checkpoint(runner, tmp_path):
    out = invoke(runner, ["train", *BASE, "-c", "trainer.max_epochs=1", "--json", "-q"])
    run_dir = Path(json.loads(out.output)["run_dir"])
    ckpt = run_dir / "checkpoints" / "model.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert_one_line_error(invoke(runner, ["eval", str(run_dir)]), 2, "corrupt")
    assert ((run_dir / "result.json").exists()
            and json.loads((run_dir / "result.json").read_text())["status"] == "completed")


def test_pickle_checkpoint_is_refused(runner, tmp_path):
    import pickle

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(print))
    assert_one_line_error(invoke(runner, ["eval", str(evil)]), 2, "corrupt")


def test_install_unknown_name(runner):
    assert_one_line_error(invoke(runner, ["install", "pk-nosuchplugin"]), 2, "not a known pk plugin")


def test_resume_completed_run_is_refused(runner):
    out = invoke(runner, ["train", *BASE, "-c", "trainer.max_epochs=1", "--json", "-q"])
    run_dir = json.loads(out.output)["run_dir"]
    assert_one_line_error(invoke(runner, ["train", "--resume", run_dir]), 2, "already completed")


def test_debug_shows_traceback(runner):
    from pk.core.errors import ConfigError

    with pytest.raises(ConfigError):
        invoke(runner, ["--debug", "train", *BASE, "-c", "trainer.max_epochs=ten"])


def test_clashing_names_need_qualification(runner, pk_register_temp):
    from pk.core import hookimpl
    from pk.core.builtins.plugin import MLPConfig

    class Plugin:
        @hookimpl
        def pk_register_models(self, register):
            register("mlp", "pk.core.builtins.components:build_mlp", config=MLPConfig, summary="another mlp",
                     tasks=("classification",))

    pk_register_temp(Plugin(), distribution="pk-other")
    assert_one_line_error(invoke(runner, ["train", *BASE]), 2, "several plugins", "pk-core:mlp", "pk-other:mlp")
    ok = invoke(runner, ["train", "-c", "model.name=pk-other:mlp", "-c", "dataset.name=synthetic-classification",
                         "-c", "trainer.name=supervised", "--dry-run"])
    assert ok.exit_code == 0, ok.output
