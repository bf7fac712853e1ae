"""``counterpoint finetune``: the data command and one-line errors (exit status 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from counterpoint.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_finetune_data_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    code, stdout, _ = _run(
        ["finetune", "data", "--out", str(out), "-n", "5", "--held-out", "2", "--seed", "4"], capsys
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert json.loads(stdout) == manifest
    assert manifest["seed"] == 4 and manifest["files"]["train"]["samples"] == 5
    assert len((out / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert len((out / "held_out.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_finetune_data_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mix"
    argv = ["finetune", "data", "--out", str(out), "-n", "6", "--held-out", "1"]
    code, stdout, _ = _run([*argv, "--shapes", "no_call=1"], capsys)
    assert code == 0
    manifest = json.loads(stdout)
    assert manifest["shapes"] == {"no_call": 1.0}
    assert manifest["files"]["train"]["shapes"] == {"no_call": 6}


def test_finetune_data_for_user_tools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "user"
    argv = ["finetune", "data", "--out", str(out), "-n", "4", "--held-out", "1"]
    code, _, _ = _run([*argv, "--tools", "tests.finetune._user_tools:toolset"], capsys)
    assert code == 0
    assert json.loads((out / "manifest.json").read_text())["library"]["functions"] == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["finetune", "data", "--out", "X", "-n", "0"],
        ["finetune", "data", "--out", "X", "--bogus"],
        ["finetune", "data", "--out", "X", "-n", "3", "--shapes", "single=1,nope=2"],
        [
            "finetune",
            "data",
            "--out",
            "X",
            "--shapes",
            "single=1",
            "--tools",
            "tests.finetune._user_tools:toolset",
        ],
        ["finetune", "train", "--out", "X", "--rank", "0"],
        ["finetune", "train", "--out", "X", "--data", "X/missing"],
        ["finetune", "--tools", "tests.finetune._user_tools:empty", "--out", "X"],
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("X", str(tmp_path / "o")) for a in argv]
    code, _, err = _run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("counterpoint: error:"), err


def test_finetune_help_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["finetune", "--help"], capsys)
    assert code == 0 and "data" in out and "train" in out


def test_run_with_a_missing_adapter_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from counterpoint.cli import main

    missing = tmp_path / "no-adapter"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--adapter", str(missing), "--no-trace", "Hi"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "--adapter none" in err


@pytest.mark.parametrize("command", [["tui"], ["eval", "bfcl", "--limit", "1"]])
def test_tui_and_eval_check_the_adapter_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    from counterpoint.cli import main

    missing = tmp_path / "gone"
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--adapter", str(missing), "--db", str(tmp_path / "t.db")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert str(missing) in err[-1] and "--adapter none" in err[-1]
