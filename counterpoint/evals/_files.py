"""Finding and reading the BFCL data files (private to :mod:`counterpoint.evals`).

The Berkeley Function Calling Leaderboard ships its data in the PyPI package ``bfcl-eval``: one
JSON object per line in ``data/BFCL_v<N>_<category>.json``, the possible answers in
``data/possible_answer/`` under the same file name. The package is found with
:func:`importlib.util.find_spec` and never imported (importing it pulls in heavy dependencies).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from counterpoint.errors import CounterpointError

__all__ = [
    "ENV_VAR",
    "INSTALL_HINT",
    "DatasetError",
    "category_file",
    "locate_data_dir",
    "read_json_lines",
]

ENV_VAR = "COUNTERPOINT_BFCL_DIR"
INSTALL_HINT = "pip install --no-deps bfcl-eval==2026.3.23"
_PACKAGE = "bfcl_eval"
_ANSWER_DIR = "possible_answer"


class DatasetError(CounterpointError):
    """A BFCL data file is missing or malformed; the message names the file, line and fix."""


def locate_data_dir(override: Path | str | None = None) -> Path:
    """The BFCL ``data/`` folder: ``override``, else ``$COUNTERPOINT_BFCL_DIR``, else the package's.

    Raises :class:`DatasetError` when the chosen folder does not exist or holds no BFCL file.
    """
    if override is not None:
        return _checked(Path(override), "--data-dir")
    env = os.environ.get(ENV_VAR)
    if env:
        return _checked(Path(env), f"${ENV_VAR}")
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DatasetError(
            "the BFCL data is not installed: run "
            f"`{INSTALL_HINT}`, or pass --data-dir (or set ${ENV_VAR}) to a folder of "
            "BFCL_v*_<category>.json files"
        )
    return _checked(Path(locations[0]) / "data", f"the {_PACKAGE} package")


def _checked(path: Path, source: str) -> Path:
    if not path.is_dir():
        raise DatasetError(
            f"BFCL data folder {path} (from {source}) does not exist: point --data-dir or "
            f"${ENV_VAR} at the folder holding BFCL_v*_<category>.json, or run `{INSTALL_HINT}`"
        )
    if not any(_FILE_RE.match(p.name) for p in path.iterdir()):
        raise DatasetError(
            f"BFCL data folder {path} (from {source}) holds no BFCL_v*_<category>.json file: "
            f"point --data-dir or ${ENV_VAR} at the right folder, or run `{INSTALL_HINT}`"
        )
    return path


_FILE_RE = re.compile(r"^BFCL_v(\d+)_(.+)\.json$")


def category_file(data_dir: Path, category: str, *, answers: bool = False) -> Path | None:
    """The newest ``BFCL_v<N>_<category>.json`` in ``data_dir`` (or its ``possible_answer/``)."""
    folder = data_dir / _ANSWER_DIR if answers else data_dir
    if not folder.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for path in folder.iterdir():
        m = _FILE_RE.match(path.name)
        if m is None or m.group(2) != category or not path.is_file():
            continue
        version = int(m.group(1))
        if best is None or version > best[0]:
            best = (version, path)
    return None if best is None else best[1]


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file.

    A line that is not a JSON object raises :class:`DatasetError` naming the file and line.
    """
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(
                        f"{path} line {number}: not valid JSON ({e.msg} at column {e.colno}); "
                        f"fix the line or reinstall the data with `{INSTALL_HINT}`"
                    ) from None
                if not isinstance(obj, dict):
                    raise DatasetError(
                        f"{path} line {number}: expected a JSON object, got "
                        f"{type(obj).__name__}; each line must be one case object"
                    )
                yield number, obj
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason}); is it a BFCL file?") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror})") from None
