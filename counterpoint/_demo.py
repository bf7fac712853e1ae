"""`make demo` / `counterpoint demo`: asynchronous function calling on the embedded model.

An agent with three tools of different latencies answers a question on the embedded model in
``async`` mode; the terminal shows calls starting while the model keeps writing, results arriving
as interrupts, and the answer. Then the model's own transcript is replayed teacher-forced (real
forward passes, real prefill of every result) in ``sync`` mode, and the two latencies are compared.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from counterpoint._console import EventPrinter
from counterpoint.agents.agent import Agent
from counterpoint.runtime.backends.base import SamplingParams
from counterpoint.runtime.session import Limits
from counterpoint.testing.replay import ReplayModel
from counterpoint.tools.tool import FunctionTool, tool

__all__ = ["QUESTION", "demo_tools", "run_demo"]

QUESTION = "What is the weather in Paris and in Tokyo?"
INSTRUCTIONS = "You are a travel assistant. Answer briefly."

_WEATHER = {"paris": (17, "clear"), "tokyo": (24, "light rain"), "rome": (21, "sunny")}


def demo_tools(scale: float = 1.0) -> list[FunctionTool[Any, Any]]:
    """Three tools with latencies of 1.5 s, 0.8 s and 2.0 s (times ``scale``)."""

    @tool(estimated_latency=1.5 * scale)
    async def get_weather(city: str) -> dict[str, Any]:
        """Current weather in a city.

        Args:
            city: The city's name, e.g. "Paris".
        """
        await asyncio.sleep(1.5 * scale)
        temp, sky = _WEATHER.get(city.strip().lower(), (19, "cloudy"))
        return {"city": city, "temp_c": temp, "sky": sky}

    @tool(estimated_latency=0.8 * scale)
    async def get_local_time(city: str) -> dict[str, str]:
        """Local time in a city.

        Args:
            city: The city's name.
        """
        await asyncio.sleep(0.8 * scale)
        return {"city": city, "time": "21:05" if city.strip().lower() == "tokyo" else "14:05"}

    @tool(estimated_latency=2.0 * scale)
    async def find_flights(origin: str, destination: str) -> dict[str, Any]:
        """Flights between two cities.

        Args:
            origin: Departure city.
            destination: Arrival city.
        """
        await asyncio.sleep(2.0 * scale)
        return {"from": origin, "to": destination, "flights": ["AF274 10:20", "JL46 19:55"]}

    return [get_weather, get_local_time, find_flights]


async def _demo(console: Console) -> None:
    from counterpoint.runtime.backends.transformers import TransformersModel

    console.print("[bold]counterpoint demo[/]: the model keeps generating while its tools run.")
    began = time.perf_counter()
    model = TransformersModel.load()
    console.print(f"[dim]loaded {model.name} in {time.perf_counter() - began:.1f} s[/]\n")
    params = SamplingParams(max_tokens=160)
    agent = Agent(
        "demo",
        INSTRUCTIONS,
        tools=demo_tools(),
        model=model,
        mode="async",
        params=params,
        limits=Limits(max_tokens=160),
    )
    console.print(f"[bold]user[/]: {QUESTION}\n[bold]assistant[/] (async mode):")
    printer = EventPrinter(console)
    session = agent.session(emit=printer)
    async_result = await session.run(agent.messages(QUESTION))
    if not async_result.calls:
        console.print("\nThe model made no call this time, so there is nothing to compare.")
        return
    console.print(
        "\n[bold]Replaying the same transcript in sync mode[/] "
        "(teacher-forced: real forward passes, real prefill of each result)..."
    )
    replay = Agent(
        "demo-sync-replay",
        INSTRUCTIONS,
        tools=demo_tools(),
        model=ReplayModel(model, async_result.generated),
        mode="sync",
        params=params,
        limits=Limits(max_tokens=400),
    )
    sync_result = await replay.run(QUESTION)
    table = Table(title="same transcript, two schedules")
    for column in ("mode", "latency (first→last token)", "calls", "tokens out"):
        table.add_column(column)
    for name, r in (("async", async_result), ("sync (replay)", sync_result)):
        table.add_row(name, f"{r.latency_s:.2f} s", str(r.usage.calls), str(r.usage.output_tokens))
    console.print(table)
    saved = sync_result.latency_s - async_result.latency_s
    ratio = sync_result.latency_s / async_result.latency_s if async_result.latency_s else 0.0
    console.print(f"async saved [bold]{saved:.2f} s[/] ({ratio:.2f}x faster than sync).")
    console.print("[dim]See the run: counterpoint traces list; counterpoint traces show RUN_ID[/]")


def run_demo(console: Console) -> None:
    """Run the demo (blocking)."""
    asyncio.run(_demo(console))
