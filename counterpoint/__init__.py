"""counterpoint: an agentic LLM runtime where the model keeps generating while its tools run.

The public SDK surface::

    from counterpoint import Agent, Task, Workflow, tool

    @tool
    async def get_weather(city: str) -> dict: ...

    agent = Agent("weather", "Answer briefly.", tools=[get_weather], mode="async")
    result = agent.run_sync("Weather in Paris?")

    wf = Workflow([Task("a", "Find X.", agent), Task("b", "Explain X.", agent, needs=["a"])])
    report = wf.run_sync()
"""

from counterpoint._version import __version__
from counterpoint.agents.agent import Agent, RunHandle, run_sync
from counterpoint.agents.workflow import (
    RetryPolicy,
    SchedulerConfig,
    Task,
    Workflow,
    WorkflowError,
    WorkflowHandle,
    WorkflowResult,
)
from counterpoint.core.bus import EventBus, RunScope
from counterpoint.core.calls import Call, CallResult, ToolSpec, UserInterrupt
from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallProgress,
    CallStarted,
    CallWritten,
    Done,
    Event,
    InterruptInjected,
    KVReuse,
    ProtocolViolation,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
    UserMessage,
    parse_event,
    register_event,
)
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
from counterpoint.runtime.session import Limits, Mode, RunResult, Session
from counterpoint.testing.scripted import ScriptedModel
from counterpoint.tools import Progress, Tool, ToolArgumentError, Toolset, tool

__all__ = [
    "Agent",
    "BaseEvent",
    "Call",
    "CallFinished",
    "CallProgress",
    "CallResult",
    "CallStarted",
    "CallWritten",
    "ConfigError",
    "CounterpointError",
    "Decoder",
    "Done",
    "Event",
    "EventBus",
    "InterruptInjected",
    "KVReuse",
    "Limits",
    "Message",
    "Mode",
    "Model",
    "ModelNotFoundError",
    "Progress",
    "Prompt",
    "ProtocolError",
    "ProtocolViolation",
    "RetryPolicy",
    "RunHandle",
    "RunResult",
    "RunScope",
    "RunStarted",
    "SamplingParams",
    "SchedulerConfig",
    "ScriptedModel",
    "Segment",
    "Session",
    "Task",
    "Token",
    "TokenEvent",
    "Tool",
    "ToolArgumentError",
    "ToolSpec",
    "Toolset",
    "TrapEvent",
    "Usage",
    "UserInterrupt",
    "UserMessage",
    "Workflow",
    "WorkflowError",
    "WorkflowHandle",
    "WorkflowResult",
    "__version__",
    "parse_event",
    "register_event",
    "resolve_model",
    "run_sync",
    "tool",
]
