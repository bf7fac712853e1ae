"""The run screen on the real embedded model: a prompt, a real tool call, an answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from textual.widgets import Input

from counterpoint.agents.agent import Agent
from counterpoint.runtime.backends.base import SamplingParams
from counterpoint.runtime.backends.transformers import TransformersModel
from counterpoint.runtime.session import Limits
from counterpoint.tui.app import CounterpointApp
from counterpoint.tui.run_screen import RunScreen
from tests.tui._fixtures import get_weather

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load(dtype="float32")
    yield loaded
    loaded.close()


async def test_a_real_prompt_with_a_tool_call(model: TransformersModel) -> None:
    agent = Agent(
        "tui-embedded",
        "You answer questions about the weather with the get_weather tool.",
        tools=[get_weather],
        model=model,
        tool_choice="required",  # the model's first output is a (grammar-constrained) call
        params=SamplingParams(max_tokens=48),
        limits=Limits(max_tokens=48),
        tracer=False,
    )
    app = CounterpointApp(agent)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        box = screen.query_one("#prompt", Input)
        box.value = "What is the weather in Paris?"
        await box.action_submit()
        for _ in range(500):
            if screen.handle is not None:
                break
            await asyncio.sleep(0.01)
        assert screen.handle is not None, "the prompt started no run"
        await asyncio.wait_for(screen.wait_run(), timeout=240)
        await pilot.pause()
        view = screen.view
        assert view.state.status in ("ok", "limit"), view.state
        blocks = list(view.calls.values())
        assert blocks, f"no call in {view.state.text!r}"
        assert blocks[0].call_name == "get_weather" and blocks[0].status == "ok"
        assert "city" in blocks[0].arguments
        lanes = view.timeline.model.lanes
        assert f"call:{blocks[0].call_id}" in lanes and lanes["decode"].intervals
        assert view.state.tokens_out > 0
