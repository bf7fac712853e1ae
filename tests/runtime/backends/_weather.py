"""The weather agent the local decoder's call tests write for (a tool, its toolset, a chat)."""

from __future__ import annotations

from counterpoint.runtime.backends.base import Message
from counterpoint.tools import Toolset, tool


@tool
def get_weather(city: str, unit: str = "celsius") -> dict[str, object]:
    """The current weather in a city."""
    return {"city": city, "temp_c": 17}


TOOLS = Toolset(get_weather)
CHAT = [
    Message(role="system", content="You are helpful."),
    Message(role="user", content="What is the weather like in Tokyo right now?"),
]
