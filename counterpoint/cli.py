"""The `counterpoint` command.

User errors (a bad flag value, an unknown model, a malformed dataset) print one line on stderr and
exit with status 2, with no traceback.
"""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from counterpoint._version import __version__
from counterpoint.errors import CounterpointError

__all__ = ["app", "main"]

app = typer.Typer(
    name="counterpoint",
    help="An agentic LLM runtime: the model keeps generating while its tools run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_console = Console()


class CallMode(StrEnum):
    """How the runtime schedules the model's function calls."""

    ASYNC = "async"
    PARALLEL = "parallel"
    SYNC = "sync"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"counterpoint {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """counterpoint: asynchronous function calling, AOV workflows, KV reuse, traces and evals."""


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="The question or task for the agent.")],
    model: Annotated[
        str,
        typer.Option(help="embedded, a local model directory, a cached hub id, or openai:NAME."),
    ] = "embedded",
    base_url: Annotated[
        str | None, typer.Option(help="Base URL of an OpenAI-compatible server (openai:NAME).")
    ] = None,
    max_tokens: Annotated[
        int, typer.Option(min=1, max=32768, help="Most tokens to generate.")
    ] = 256,
    temperature: Annotated[
        float, typer.Option(min=0.0, max=5.0, help="0 is greedy (the default).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    mode: Annotated[CallMode, typer.Option(help="Calling mode.")] = CallMode.ASYNC,
    system: Annotated[str | None, typer.Option(help="Instructions (system prompt).")] = None,
    trace: Annotated[bool, typer.Option(help="Record the run in the traces database.")] = True,
    adapter: Annotated[
        str | None,
        typer.Option(
            help="A LoRA adapter folder (`counterpoint finetune train` writes one) merged into a "
            "local model (default: the project's CML adapter on the embedded model); none: the "
            "raw model."
        ),
    ] = None,
) -> None:
    """Run PROMPT on a model and stream the answer to the terminal."""
    from counterpoint._console import EventPrinter
    from counterpoint.agents.agent import Agent
    from counterpoint.runtime.backends.base import SamplingParams
    from counterpoint.runtime.backends.registry import resolve_model
    from counterpoint.runtime.session import Limits

    resolved = resolve_model(model, base_url=base_url, adapter=adapter)
    agent = Agent(
        name="cli",
        instructions=system or "You are a helpful assistant. Answer briefly.",
        model=resolved,
        mode=mode.value,
        params=SamplingParams(temperature=temperature, seed=seed, max_tokens=max_tokens),
        limits=Limits(max_tokens=max_tokens),
        tracer=trace,
    )
    printer = EventPrinter(_console)

    async def go() -> None:
        async for event in agent.stream(prompt):
            printer(event)

    asyncio.run(go())


@app.command()
def demo() -> None:
    """The demo: an agent with tools of different latencies on the embedded model."""
    from counterpoint._demo import run_demo

    run_demo(_console)


@app.command()
def tui(
    model: Annotated[
        str | None,
        typer.Option(
            help="embedded (default), a local model directory, a cached hub id, or openai:NAME; "
            "with --workflow, the model of agents that name none (default: the file's)."
        ),
    ] = None,
    tools: Annotated[
        str | None, typer.Option(help="Tools to import: pkg.mod (its tools) or pkg.mod:name.")
    ] = None,
    mode: Annotated[CallMode, typer.Option(help="Calling mode.")] = CallMode.ASYNC,
    instructions: Annotated[str | None, typer.Option(help="The agent's instructions.")] = None,
    max_tokens: Annotated[
        int, typer.Option(min=1, max=32768, help="Most tokens to generate per run.")
    ] = 256,
    db: Annotated[
        str | None, typer.Option(help="The traces database (default: as traces).")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Open this stored run.")] = None,
    workflow: Annotated[
        Path | None,
        typer.Option(
            "--workflow",
            dir_okay=False,
            help="A workflow file (.yaml or .json) for the workflow screen (ctrl+r runs it).",
        ),
    ] = None,
    theme: Annotated[
        str | None,
        typer.Option(
            help="A Textual theme (default: ansi-dark on a 16-colour terminal, else textual-dark;"
            " $COUNTERPOINT_TUI_THEME)."
        ),
    ] = None,
    adapter: Annotated[
        str | None,
        typer.Option(
            help="A LoRA adapter folder merged into the local model (default: the project's CML "
            "adapter on the embedded model); none: the raw model."
        ),
    ] = None,
) -> None:
    """The terminal UI: run an agent and watch its calls on a timeline; browse stored traces."""
    from counterpoint.tui import launch

    launch(
        model=model,
        tools=tools,
        mode=mode.value,
        instructions=instructions,
        max_tokens=max_tokens,
        db=db,
        run_id=run_id,
        workflow=workflow,
        theme=theme,
        adapter=adapter,
    )


def _mount_subcommands() -> None:
    try:
        from counterpoint.runtime.tracing.cli import traces_app
    except ImportError:  # pragma: no cover - during development
        return
    app.add_typer(traces_app, name="traces", help="Inspect recorded runs.")
    from counterpoint.evals.cli import eval_app

    app.add_typer(eval_app, name="eval", help="BFCL-style evals: run, resume, report.")
    from counterpoint.agents.workflow.cli import workflow_app

    app.add_typer(workflow_app, name="workflow", help="AOV workflows: run, show, resume, list.")
    from counterpoint.finetune.cli import finetune_app

    app.add_typer(finetune_app, name="finetune", help="CML fine-tuning: synthetic data, LoRA.")


_mount_subcommands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and exit status 2."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="counterpoint", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("counterpoint: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # bad flags and values: typer's own user errors
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        print(f"counterpoint: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
    except CounterpointError as exc:
        print(f"counterpoint: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("counterpoint: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
