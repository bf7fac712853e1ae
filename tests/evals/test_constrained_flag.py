"""``--no-constrained``: the eval's local model writes call blocks without the grammar."""

from __future__ import annotations

from typing import Any

import pytest

from counterpoint.evals import _models
from counterpoint.evals.runner import EvalConfig


class _Local:
    """Stands in for a TransformersModel: only its name and its ``constrained`` switch."""

    name = "local"
    constrained = True


@pytest.mark.parametrize("constrained", [True, False])
def test_case_models_sets_the_switch(monkeypatch: pytest.MonkeyPatch, constrained: bool) -> None:
    local = _Local()

    def resolve(spec: str, **_: Any) -> _Local:
        return local

    monkeypatch.setattr(_models, "resolve_model", resolve)
    _models.case_models("embedded", constrained=constrained)
    assert local.constrained is constrained


def test_the_setting_is_stored_and_read_back() -> None:
    config = EvalConfig(categories=("simple_python",), modes=("async",), constrained=False)
    assert config.to_json()["constrained"] is False
    assert EvalConfig.from_json(config.to_json()).constrained is False
    assert EvalConfig.from_json({"categories": ["simple_python"]}).constrained is True
