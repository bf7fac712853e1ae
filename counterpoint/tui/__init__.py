"""The Textual terminal UI (``counterpoint tui``): the run, workflow, traces and evals screens.

Every widget is fed by events: live from a run's bus, or stored in the traces database.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from counterpoint.agents.agent import Agent
    from counterpoint.core.events import EventSink
    from counterpoint.runtime.session import Mode

__all__ = ["build_agent", "launch"]


def build_agent(
    *,
    model: str = "embedded",
    tools: str | None = None,
    mode: str = "async",
    instructions: str | None = None,
    max_tokens: int = 256,
    db: str | None = None,
    adapter: str | None = None,
) -> Agent:
    """The run screen's agent from the CLI's flags; a bad ``tools`` or ``adapter`` raises
    ConfigError first (an adapter loads the model now, merged with it)."""
    from counterpoint.agents.agent import Agent
    from counterpoint.runtime.backends.base import SamplingParams
    from counterpoint.runtime.session import Limits
    from counterpoint.tools.toolset import Toolset
    from counterpoint.tui._load import load_tools

    toolset = load_tools(tools) if tools else Toolset()
    spec: Any = model
    if adapter is not None:  # a folder, or none (the default adapter loads with the agent)
        from counterpoint.runtime.backends.registry import resolve_model

        if adapter.lower() != "none":
            from counterpoint.runtime.backends._adapter import check_adapter

            check_adapter(adapter)
        spec = resolve_model(model, adapter=adapter)
    tracer: EventSink | bool = True
    if db is not None:
        from counterpoint.runtime.tracing import SQLiteTracer

        tracer = SQLiteTracer(db)
    return Agent(
        "tui",
        instructions or "You are a helpful assistant. Answer briefly.",
        tools=toolset,
        model=spec,
        mode=cast("Mode", mode),
        params=SamplingParams(max_tokens=max_tokens),
        limits=Limits(max_tokens=max_tokens),
        tracer=tracer,
    )


def launch(
    *,
    model: str | None = None,
    tools: str | None = None,
    mode: str = "async",
    instructions: str | None = None,
    max_tokens: int = 256,
    db: str | None = None,
    run_id: str | None = None,
    workflow: str | os.PathLike[str] | None = None,
    theme: str | None = None,
    adapter: str | None = None,
) -> None:
    """Check the flags (errors raise before the UI starts), then run the app.

    ``model`` None: the embedded model for the run screen, and for a workflow the models its
    file names. ``workflow``: a workflow file, opened on the workflow screen.
    """
    from counterpoint.tui.app import CounterpointApp, check_run, check_theme

    if theme is not None:
        theme = check_theme(theme)
    if run_id is not None:
        run_id = check_run(db, run_id)
    loaded = None
    if workflow is not None:
        from counterpoint.agents.workflow.loading import load_workflow

        loaded = load_workflow(workflow, model=model)
    agent = build_agent(
        model=model or "embedded",
        tools=tools,
        mode=mode,
        instructions=instructions,
        max_tokens=max_tokens,
        db=db,
        adapter=adapter,
    )
    CounterpointApp(agent, db=db, run_id=run_id, workflow=loaded, theme=theme).run()
