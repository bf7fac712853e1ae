"""Suite-wide fixtures: keep every trace the tests make out of the user's own database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_traces_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("traces") / "traces.db"
    patch = pytest.MonkeyPatch()
    patch.setenv("COUNTERPOINT_TRACES_DB", str(path))
    yield path
    patch.undo()
