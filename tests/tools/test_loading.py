"""``load_tools``: a module path to a Toolset, from the import path or the current folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from counterpoint.errors import ConfigError
from counterpoint.tools.loading import load_tools

MODULE = '''
from counterpoint.tools import tool, Toolset

@tool
def shout(text: str) -> str:
    """Upper-case it.

    Args:
        text: What to shout.
    """
    return text.upper()

only = Toolset([shout])
'''


def test_a_module_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cp_user_tools_xyz.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert load_tools("cp_user_tools_xyz").names == ("shout",)
        assert load_tools("cp_user_tools_xyz:only").names == ("shout",)
        assert load_tools("cp_user_tools_xyz:shout").names == ("shout",)
    finally:
        sys.modules.pop("cp_user_tools_xyz", None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "give a module path"),
        ("no_such_module_qq", "cannot import 'no_such_module_qq'"),
        ("json:nothing_here", "has no attribute 'nothing_here'"),
        ("json", "defines no tools"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tools(spec)
