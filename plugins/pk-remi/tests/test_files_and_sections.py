"""Any line file (remi-seq-lines), bad files, file checksums in the run record, per-user
scores for pk batch, and the [aggregator] section really consumed (or refused)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from pk_remi.data import build_amazon_beauty, build_ml100k, build_seq_lines
from pk_remi.plugin import UserSplitConfig

from pk.cli.main import main
from pk.core.errors import ConfigError, DataError


def _lines(n_users: int = 60, length: int = 12) -> str:
    return "".join(f"u{u} " + " ".join(str(1 + (u * 7 + j * 3) % 40) for j in range(length)) + "\n"
                   for u in range(n_users))


def _pk(args: list[str]) -> object:
    """``pk ARGS`` through pk.cli.main.main (its error handling included)."""
    return CliRunner().invoke(click.Command("pk", callback=lambda: main(args)), [], catch_exceptions=False)


def test_seq_lines_reads_any_file_and_records_its_name_and_sha256(tmp_path: Path) -> None:
    """The generic reader names itself (not remi-amazon-beauty) and the exact file."""
    file = tmp_path / "Toys.txt"
    file.write_text(_lines())
    bundle = build_seq_lines(UserSplitConfig(source="file", path=str(file), min_count=0), seed=0)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    assert bundle.info.extra["dataset"] == "remi-seq-lines" and bundle.info.extra["files"] == {"Toys.txt": sha}
    assert bundle.fingerprint().endswith(f" Toys.txt:sha256={sha}")
    file.write_text(_lines() + "u999 1 2 3 4 5 6\n")
    other = build_seq_lines(UserSplitConfig(source="file", path=str(file), min_count=0), seed=0)
    assert other.fingerprint() != bundle.fingerprint()


def test_seq_lines_needs_a_path_with_source_file() -> None:
    with pytest.raises(ConfigError, match="dataset.path"):
        build_seq_lines(UserSplitConfig(source="file"), seed=0)


BAD = {  # name -> (bytes, words the one-line DataError must contain)
    "empty": (b"", "the file is empty"),
    "binary": (b"\x7fELF\x02\x01\x01\x00\x00\x00", ":1:"),
    "bad utf-8 on line 2": (b"u1 1 2 3\nu2 4 \xff 6\n", ":2:"),
    "garbage": (b"<html><body>404 not found</body></html>\n", ":1:"),
    "truncated (two users)": (b"u1 1 2 3 4 5 6\nu2 1 2 3 4 5 6\n", "too few users"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_line_files_are_one_line_data_errors(tmp_path: Path, case: str) -> None:
    """Without ``check_text_file`` "empty" gives pk-seqrec's generic "no user lines" and the
    "too few users" case names no file (bundle_from_user_sequences does not know it)."""
    content, words = BAD[case]
    file = tmp_path / "data.txt"
    file.write_bytes(content)
    with pytest.raises(DataError) as err:
        build_seq_lines(UserSplitConfig(source="file", path=str(file), min_count=0), seed=0)
    msg = str(err.value)
    assert str(file) in msg and words in msg and "\n" not in msg, msg


def test_bad_named_files_are_data_errors_too(tmp_path: Path) -> None:
    (tmp_path / "Beauty.txt").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="Beauty.txt:1:"):
        build_amazon_beauty(UserSplitConfig(source="file", path=str(tmp_path)), seed=0)
    (tmp_path / "ml-100k.inter").write_bytes(b"")
    with pytest.raises(DataError, match="ml-100k.inter: the file is empty"):
        build_ml100k(UserSplitConfig(source="file", path=str(tmp_path / "ml-100k.inter")), seed=0)


TINY = ["-c", "model.name=remi", "-c", "model.num_negatives=64", "-c", "model.hidden=16",
        "-c", "trainer.name=candidate-matching", "-c", "trainer.max_steps=4", "-c", "trainer.eval_every=2",
        "-c", "trainer.batch_size=16", "-c", "run.threads=1"]


def test_run_record_names_the_file_and_per_user_scores_match_the_metrics(tmp_path: Path) -> None:
    file = tmp_path / "Toys.txt"
    file.write_text(_lines())
    out = _pk(["train", *TINY, "-c", "dataset.name=remi-seq-lines", "-c", "dataset.source=file",
               "-c", f"dataset.path={file}", "-c", "dataset.min_count=0", "-c", "evaluator.name=remi-protocol",
               "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    assert result["fingerprint"]["data"].endswith(f"Toys.txt:sha256={sha}")
    m = result["metrics"]
    # 48 training users
    assert m["fit.epochs_run"] == round(4 * 16 / 48, 2) and 0 < m["fit.best_epoch"] <= m["fit.epochs_run"]
    for split, prefix in (("test", "test."), ("eval", "eval.")):
        with np.load(tmp_path / "run" / f"examples-{split}.npz") as ex:
            assert ex["recall@50"].shape == (6,)  # the 6 held-out users (60 users, 8/1/1)
            for name in ("recall@20", "recall@50", "hr@50", "ndcg@50", "routing_max"):
                assert float(ex[name].mean()) == pytest.approx(m[prefix + name], abs=1e-12)


def test_aggregator_section_is_consumed_by_the_trainer(tmp_path: Path) -> None:
    """The trainer ranks with the [aggregator] at every validation and test, so a run with no
    evaluator must accept it (before: only the evaluator declared it, and such a run was
    refused); its top_n must cover the largest K; a model-weight aggregator is refused."""
    base = ["train", *TINY, "-c", "dataset.name=remi-synthetic", "-c", "dataset.num_users=80", "--quiet"]
    merge = ["-c", "aggregator.name=interest-merge"]
    ok = _pk([*base, *merge, "-c", "aggregator.top_n=60", "--run-dir", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    small = _pk([*base, *merge, "-c", "aggregator.top_n=20", "--run-dir", str(tmp_path / "small")])
    assert small.exit_code == 2 and "aggregator.top_n = 20" in small.output, small.output
    fedavg = _pk([*base, "-c", "aggregator.name=fedavg", "--run-dir", str(tmp_path / "fedavg")])
    assert fedavg.exit_code == 2 and "does not merge ranked lists" in fedavg.output, fedavg.output
