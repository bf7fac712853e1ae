"""Fine-tuning data over a user's own toolset (``--tools pkg.mod:toolset``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from counterpoint.errors import ConfigError
from counterpoint.finetune.commands import prepare_data
from counterpoint.finetune.data import dataset_hash
from counterpoint.finetune.usertools import build_user_dataset, load_toolset, user_catalog
from counterpoint.tools import Toolset
from tests.finetune import _user_tools

SPEC = "tests.finetune._user_tools:toolset"


def test_user_toolset_samples_call_its_tools_with_valid_copied_arguments() -> None:
    tools = _user_tools.toolset
    samples = build_user_dataset(tools, 60, seed=2)
    assert dataset_hash(samples) == dataset_hash(build_user_dataset(tools, 60, seed=2))
    assert dataset_hash(samples) != dataset_hash(build_user_dataset(tools, 60, seed=3))
    kinds = {s.kind for s in samples}
    assert {"calls", "no_call", "partial"} <= kinds
    called = set()
    for s in samples:
        assert set(s.tools) <= set(tools.names), s.tools
        assert {spec.name for spec in s.specs()} == set(s.tools)
        for call in s.calls:
            t = tools.get(call.name)
            assert t is not None
            t.validate(call.arguments)  # raises if a generated call does not validate
            called.add(call.name)
            assert f"[HEAD] {call.name}(" in s.generated
            for value in call.arguments.values():
                if isinstance(value, str) and call.name != "convert_price":
                    assert value in s.user or (s.user_interrupt and value in s.user_interrupt)
        if s.kind == "no_call":
            assert not s.calls and "[CALL]" not in s.generated
    assert called == set(tools.names)


def test_results_are_made_up_from_the_return_type_and_stated_in_the_answer() -> None:
    samples = build_user_dataset(_user_tools.toolset, 40, seed=5)
    tracked = [c for s in samples for c in s.calls if c.name == "track_shipment"]
    assert tracked
    for call in tracked:
        result = json.loads(call.result_text)
        assert set(result) == {"tracking_id", "status", "days_left"}
        assert result["tracking_id"] == call.arguments["tracking_id"]  # echoes its argument
        assert isinstance(result["days_left"], int)
    answers = [s for s in samples if any(c.name == "track_shipment" for c in s.calls)]
    assert all(re.search(r"days left is \d+", s.answer) for s in answers)


def test_empty_or_missing_toolsets_stop_with_one_line() -> None:
    with pytest.raises(ConfigError, match="no tools"):
        user_catalog(Toolset())
    with pytest.raises(ConfigError, match="has no tools"):
        load_toolset("tests.finetune._user_tools:empty")
    with pytest.raises(ConfigError, match="no attribute 'nope'"):
        load_toolset("tests.finetune._user_tools:nope")
    with pytest.raises(ConfigError, match="cannot import"):
        load_toolset("no_such_package_here.tools:toolset")


def test_prepare_data_for_a_user_toolset(tmp_path: Path) -> None:
    manifest = prepare_data(tmp_path, n=12, held_out=3, seed=1, tools=SPEC)
    assert manifest["library"]["tools"] == list(_user_tools.toolset.names)
    assert manifest["files"]["train"]["samples"] == 12
    rows = (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 12
    assert json.loads(rows[0])["id"].startswith("user-train-1-")
    assert (tmp_path / "held_out.jsonl").is_file() and (tmp_path / "manifest.json").is_file()
