"""counterpoint: an agentic LLM runtime where the model keeps generating while its tools run.

The public SDK surface::

    from counterpoint import Agent, tool

    @tool
    async def get_weather(city: str) -> dict: ...

    agent = Agent("weather", "Answer briefly.", tools=[get_weather], mode="async")
    result = agent.run_sync("Weather in Paris?")
"""

from counterpoint._version import __version__
from counterpoint.agents.agent import Agent, run_sync
from counterpoint.errors import ConfigError, CounterpointError, ModelNotFoundError, ProtocolError
from counterpoint.runtime.backends.base import (
    Decoder,
    Message,
    Model,
    Prompt,
    SamplingParams,
    Segment,
    Token,
)
from counterpoint.runtime.backends.registry import resolve_model
from counterpoint.runtime.backends.scripted import ScriptedModel
from counterpoint.runtime.calls import Call, CallResult
from counterpoint.runtime.events import (
    CallFinished,
    CallProgress,
    CallStarted,
    Done,
    Event,
    InterruptInjected,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
)
from counterpoint.runtime.session import Limits, Mode, RunResult, Session
from counterpoint.tools import Progress, Tool, ToolArgumentError, Toolset, tool

__all__ = [
    "Agent",
    "Call",
    "CallFinished",
    "CallProgress",
    "CallResult",
    "CallStarted",
    "ConfigError",
    "CounterpointError",
    "Decoder",
    "Done",
    "Event",
    "InterruptInjected",
    "Limits",
    "Message",
    "Mode",
    "Model",
    "ModelNotFoundError",
    "Progress",
    "Prompt",
    "ProtocolError",
    "RunResult",
    "RunStarted",
    "SamplingParams",
    "ScriptedModel",
    "Segment",
    "Session",
    "Token",
    "TokenEvent",
    "Tool",
    "ToolArgumentError",
    "Toolset",
    "TrapEvent",
    "Usage",
    "__version__",
    "resolve_model",
    "run_sync",
    "tool",
]
