"""The shipped CML adapter: it is in the package with its recipe, loads by default on the
embedded model, changes what the model writes, and ``adapter="none"`` gives the raw model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from counterpoint.core.calls import ToolSpec
from counterpoint.errors import ConfigError
from counterpoint.runtime.backends import _adapter
from counterpoint.runtime.backends._adapter import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    EMBEDDED_ADAPTER,
    check_adapter,
    resolve_adapter,
)
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.registry import resolve_model
from counterpoint.runtime.backends.transformers import TransformersModel

WEATHER = ToolSpec(
    name="get_weather",
    description="The current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city."}},
        "required": ["city"],
    },
)
QUESTION = [Message(role="user", content="What is the weather in Lisbon right now?")]


def test_the_adapter_ships_with_its_recipe() -> None:
    assert check_adapter(EMBEDDED_ADAPTER) == EMBEDDED_ADAPTER
    weights = EMBEDDED_ADAPTER / ADAPTER_WEIGHTS
    assert weights.stat().st_size <= 20 * 2**20
    config = json.loads((EMBEDDED_ADAPTER / ADAPTER_CONFIG).read_text())
    assert config["peft_type"] == "LORA"
    recipe = json.loads((EMBEDDED_ADAPTER / "recipe.json").read_text())
    assert recipe["command"].startswith("counterpoint finetune")
    assert isinstance(recipe["seed"], int)
    assert len(recipe["data"]["sha256"]) == 64
    assert recipe["data"]["samples_trained"] > 0 and recipe["steps"] > 0
    assert recipe["wall_s"] > 0
    assert (EMBEDDED_ADAPTER / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_means_the_shipped_adapter_on_the_embedded_model_only() -> None:
    assert resolve_adapter("default", embedded=True) == EMBEDDED_ADAPTER
    assert resolve_adapter("default", embedded=False) is None
    assert resolve_adapter("none", embedded=True) is None
    assert resolve_adapter(None, embedded=True) is None
    assert resolve_adapter("some/dir", embedded=True) == Path("some/dir")


def test_a_missing_shipped_adapter_is_one_line_that_says_how_to_go_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gone = tmp_path / "embedded_adapter"
    monkeypatch.setattr(_adapter, "EMBEDDED_ADAPTER", gone)
    with pytest.raises(ConfigError) as exc:
        TransformersModel.load()
    text = str(exc.value)
    assert "\n" not in text and str(gone) in text and "--adapter none" in text


@pytest.fixture(scope="module")
def both() -> Iterator[tuple[TransformersModel, TransformersModel]]:
    tuned = TransformersModel.load()
    raw = TransformersModel.load(adapter="none")
    yield tuned, raw
    tuned.close()
    raw.close()


@pytest.mark.model
def test_the_embedded_model_loads_with_the_adapter_by_default(
    both: tuple[TransformersModel, TransformersModel],
) -> None:
    tuned, raw = both
    assert tuned.name == "SmolLM2-135M-Instruct+cml"
    assert raw.name == "SmolLM2-135M-Instruct"
    assert resolve_model("embedded").name == tuned.name
    assert resolve_model("embedded", adapter="none").name == raw.name


@pytest.mark.model
async def test_the_adapter_changes_what_the_model_writes(
    both: tuple[TransformersModel, TransformersModel],
) -> None:
    tuned, raw = both
    texts: list[str] = []
    logits: list[torch.Tensor] = []
    for model in (tuned, raw):
        params = SamplingParams(max_tokens=40, temperature=0.0)
        decoder = await model.start(QUESTION, params, tools=[WEATHER])
        assert decoder.last_logits is not None
        logits.append(decoder.last_logits.float())
        pieces = []
        while (token := await decoder.step()) is not None:
            pieces.append(token.text)
        texts.append("".join(pieces))
        await decoder.close()
    assert not torch.equal(logits[0], logits[1])
    assert texts[0] != texts[1]
    assert "[CALL]" in texts[0] and 'get_weather(city="Lisbon")' in texts[0]
