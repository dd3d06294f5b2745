"""Bad data files give a one-line DataError naming the file (and the line where known)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pk_iurs.data import build_stream_diginetica, build_stream_ml100k
from pk_iurs.plugin import StreamDigineticaConfig, StreamML100kConfig

from pk.core.errors import DataError

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ROWS = "".join(f"{u}\t{i}\t5\t{1000 + 7 * u + i}\n" for u in range(1, 30) for i in range(1, 12))

ML_CASES = {  # name -> (file bytes, text the one-line error must contain)
    "empty": (b"", "empty"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ":1:"),
    "bad utf-8 on line 3": ((HEADER + "1\t2\t5\t100\n").encode() + b"2\t\xff\xfe\t5\t101\n", ":3:"),
    "garbage text": (b"hello world\nthis is not a data file\n", ":1:"),
    "truncated mid-line": ((HEADER + "".join(ROWS.splitlines(True)[:3]) + "4\t7").encode(), ":5:"),
    "truncated to a few rows": ((HEADER + "".join(ROWS.splitlines(True)[:5])).encode(), "truncated"),
}


@pytest.mark.parametrize("case", list(ML_CASES), ids=list(ML_CASES))
def test_bad_ml100k_files_are_one_line_data_errors(tmp_path: Path, case: str) -> None:
    """Without ``check_text_file`` and the truncation check, "empty" and "truncated to a few
    rows" fail (a ConfigError / pk-seqrec's generic message without this file's words); the
    binary cases are caught twice (here first, then by pk-seqrec's readers)."""
    content, needle = ML_CASES[case]
    file = tmp_path / "ml-100k.inter"
    file.write_bytes(content)
    with pytest.raises(DataError) as err:
        build_stream_ml100k(StreamML100kConfig(source="file", path=str(file)), seed=0)
    msg = str(err.value)
    assert str(file) in msg and needle in msg and "\n" not in msg, msg


def _periods(folder: Path, contents: dict[int, bytes]) -> Path:
    folder.mkdir()
    for k in range(3):
        default = "".join(f"{s} {i}\n{s} {i + 1}\n" for s in range(k * 10, k * 10 + 8) for i in (1, 3))
        body = contents.get(k, default.encode())
        (folder / f"period_{k}.txt").write_bytes(body)
    return folder


@pytest.mark.parametrize("case,content,needle", [("empty period", b"", "period_1.txt: the file is empty"),
                                                 ("binary period", b"\x00\x01\x02", "period_1.txt:1:"),
                                                 ("blank lines only", b"\n\n\n", "period_1.txt: the file is empty")])
def test_bad_diginetica_periods_are_one_line_data_errors(tmp_path: Path, case: str, content: bytes,
                                                         needle: str) -> None:
    folder = _periods(tmp_path / "digi", {1: content})
    with pytest.raises(DataError) as err:
        build_stream_diginetica(StreamDigineticaConfig(source="file", path=str(folder), last_period=2), seed=0)
    assert needle in str(err.value), str(err.value)


def test_cli_exit_code_is_2_with_one_line(tmp_path: Path) -> None:
    import click

    from pk.cli.main import main

    file = tmp_path / "ml-100k.inter"
    file.write_bytes(b"\x00\xff binary")
    args = ["train", "-c", "dataset.name=stream-ml-100k", "-c", "dataset.source=file", "-c", f"dataset.path={file}",
            "-c", "model.name=sasrec", "-c", "trainer.name=iu-fine-tune", "--run-dir", str(tmp_path / "run"), "--quiet"]
    res = CliRunner().invoke(click.Command("pk", callback=lambda: main(args)), [], catch_exceptions=False)
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "ml-100k.inter:1:" in lines[0], res.output


def test_real_files_are_named_with_their_checksum_in_the_fingerprint(tmp_path: Path) -> None:
    file = tmp_path / "ml-100k.inter"
    file.write_text(HEADER + ROWS)
    bundle = build_stream_ml100k(StreamML100kConfig(source="file", path=str(file), blocks=4, pretrain_blocks=2), seed=0)
    import hashlib

    assert bundle.fingerprint().endswith(f" ml-100k.inter:sha256={hashlib.sha256(file.read_bytes()).hexdigest()}")
    file.write_text(HEADER + ROWS + "30\t1\t5\t99999\n")
    other = build_stream_ml100k(StreamML100kConfig(source="file", path=str(file), blocks=4, pretrain_blocks=2), seed=0)
    assert other.fingerprint() != bundle.fingerprint()
