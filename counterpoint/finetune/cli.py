"""``counterpoint finetune``: synthetic CML data and LoRA training, as typer commands.

- ``counterpoint finetune data --out DIR -n N --held-out M --seed S [--tools pkg.mod:toolset]``
- ``counterpoint finetune train --out DIR [--data DIR] [--tools pkg.mod:toolset] [-n N] ...``
- ``counterpoint finetune eval [--adapter DIR|none] [-n N] [--mode async]``: run an agent on
  held-out samples (functions training never saw) and say how often its calls were right and its
  answers stated the results.
- ``counterpoint finetune --tools pkg.mod:toolset --out DIR``: ``train`` with its defaults.

User errors are :class:`~counterpoint.errors.CounterpointError` lines (the top-level ``main``
prints them and exits with status 2).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from counterpoint.errors import ConfigError

__all__ = ["finetune_app"]

finetune_app = typer.Typer(
    name="finetune",
    help="Fine-tune the model for CML calls: synthetic traces, then a LoRA adapter (CPU).",
    add_completion=False,
    pretty_exceptions_enable=False,
)

_console = Console(stderr=True)

OutOpt = Annotated[Path, typer.Option("--out", help="The folder to write to.")]
ToolsOpt = Annotated[
    str | None,
    typer.Option(
        "--tools",
        help="Build the data over your own tools (pkg.mod:toolset) with generic questions, "
        "instead of the project's function library.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the data and of training.")]


def _data(
    out: Path, n: int, held_out: int, seed: int, tools: str | None, shapes: str | None = None
) -> dict[str, Any]:
    from counterpoint.finetune.commands import prepare_data
    from counterpoint.finetune.data import parse_shapes

    weights = parse_shapes(shapes) if shapes is not None else None
    with _console.status(f"generating {n} + {held_out} samples in {out}"):
        return prepare_data(out, n=n, seed=seed, held_out=held_out, tools=tools, shapes=weights)


@finetune_app.command("data")
def data_command(
    out: OutOpt,
    n: Annotated[int, typer.Option("-n", min=1, help="Training samples.")] = 1000,
    held_out: Annotated[int, typer.Option("--held-out", min=0, help="Held-out samples.")] = 200,
    seed: SeedOpt = 0,
    tools: ToolsOpt = None,
    shapes: Annotated[
        str | None,
        typer.Option(
            "--shapes",
            help="Weigh the training samples' shapes, e.g. 'single=3,no_call=2,parallel=1' "
            "(shapes left out are not drawn; default: the recipe's mix). The held-out set "
            "keeps the default mix.",
        ),
    ] = None,
) -> None:
    """Write train.jsonl, held_out.jsonl and manifest.json (with each file's sha256)."""
    manifest = _data(out, n, held_out, seed, tools, shapes)
    typer.echo(json.dumps(manifest, indent=2))


def _train(
    *,
    out: Path,
    data: Path | None,
    tools: str | None,
    n: int,
    held_out: int,
    epochs: float,
    max_steps: int | None,
    rank: int,
    alpha: int | None,
    lr: float,
    batch_size: int,
    grad_accum: int,
    max_len: int,
    seed: int,
    warmup: int,
    skip_long: bool,
    checkpointing: bool = False,
    init: str | None = None,
    decision_weight: float = 1.0,
) -> None:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from counterpoint.finetune.train import StepLog, TrainConfig, train

    config = TrainConfig(
        rank=rank,
        alpha=alpha if alpha is not None else 2 * rank,
        lr=lr,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_len=max_len,
        seed=seed,
        warmup_steps=warmup,
        too_long="skip" if skip_long else "error",
        gradient_checkpointing=checkpointing,
        decision_weight=decision_weight,
    )
    if data is not None and tools is not None:
        raise ConfigError(
            "pass --data (data already written) or --tools (to generate it), not both"
        )
    generated: str | None = None
    if data is None:
        data = out / "data"
        _data(data, n, held_out, seed, tools)
        words = ["counterpoint", "finetune", "data", "--out", str(data), "-n", str(n)]
        words += ["--held-out", str(held_out), "--seed", str(seed)]
        words += ["--tools", tools] if tools else []
        generated = shlex.join(words)

    def load_base() -> Any:
        from counterpoint.runtime.backends.transformers import TransformersModel

        _console.print("loading the base model (float32); the bar shows after the first step")
        return TransformersModel.load(dtype="float32", adapter="none")  # adapters are deltas on it

    progress = Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_console,
    )
    task = progress.add_task("train", total=None, loss="-")

    def on_step(log: StepLog) -> None:
        if not _console.is_terminal:  # a log file: a plain line every 5% of the steps
            every = max(1, log.total_steps // 20)
            if log.step % every == 0 or log.step in (1, log.total_steps):
                _console.print(
                    f"step {log.step}/{log.total_steps} loss {log.loss:.4f} "
                    f"lr {log.lr:.2e} {log.elapsed_s:.0f} s",
                    highlight=False,
                )
            return
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=log.step, total=log.total_steps, loss=f"{log.loss:.4f}")

    flags = ["--out", str(out), "--data", str(data), "--epochs", str(epochs)]
    if max_steps is not None:
        flags += ["--max-steps", str(max_steps)]
    if init is None:  # continued training takes the adapter's own shape
        flags += ["--rank", str(rank), "--alpha", str(config.alpha)]
    flags += ["--lr", str(lr)]
    flags += ["--batch-size", str(batch_size), "--grad-accum", str(grad_accum)]
    flags += ["--max-len", str(max_len), "--seed", str(seed), "--warmup", str(warmup)]
    flags += ["--decision-weight", str(decision_weight)] if decision_weight != 1 else []
    flags += ["--skip-long"] if skip_long else []
    flags += ["--gradient-checkpointing"] if checkpointing else []
    flags += ["--init", init] if init is not None else []
    command = shlex.join(["counterpoint", "finetune", "train", *flags])
    if generated is not None:
        command = generated + " && " + command
    try:
        result = train(
            data, config, out, base=load_base, on_step=on_step, command=command, init=init
        )
    finally:
        progress.stop()
    recipe = result.recipe_data
    lines = [
        f"adapter   {result.adapter} ({(recipe['adapter_bytes'] or 0) / 2**20:.1f} MiB)",
        f"recipe    {result.recipe}",
        f"loss plot {result.plot}",
        f"steps     {result.steps} ({recipe['epochs']} epochs, {recipe['data']['samples_trained']} "
        f"samples, {recipe['data']['samples_skipped_too_long']} skipped as too long)",
        f"loss      {result.losses[0]:.4f} -> {result.final_loss:.4f}",
        f"time      {result.wall_s:.1f} s ({result.tokens_per_s:.0f} tokens/s, "
        f"{recipe['s_per_step']} s/step)",
        f"use it    counterpoint run --adapter {result.out_dir} '...'",
    ]
    typer.echo("\n".join(lines))


def _train_options(
    out: OutOpt,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Data written by `finetune data` (default: generate it)."),
    ] = None,
    tools: ToolsOpt = None,
    n: Annotated[int, typer.Option("-n", min=1, help="Samples to generate.")] = 1000,
    held_out: Annotated[
        int, typer.Option("--held-out", min=0, help="Held-out samples to generate.")
    ] = 200,
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the data.")] = 1.0,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Optimizer steps (wins over --epochs).")
    ] = None,
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank.")] = 16,
    alpha: Annotated[
        int | None, typer.Option("--alpha", help="LoRA alpha (default: 2 x rank).")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per batch.")] = 1,
    grad_accum: Annotated[
        int, typer.Option("--grad-accum", help="Batches per optimizer step.")
    ] = 2,
    max_len: Annotated[int, typer.Option("--max-len", help="Longest sample, in tokens.")] = 2048,
    seed: SeedOpt = 0,
    warmup: Annotated[int, typer.Option("--warmup", help="Warm-up steps.")] = 0,
    skip_long: Annotated[
        bool, typer.Option("--skip-long", help="Leave out samples longer than --max-len.")
    ] = False,
    checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing", help="Recompute activations: less RAM, slower steps."
        ),
    ] = False,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Continue training this adapter folder ('default': the shipped one); its "
            "rank, alpha and target modules win over --rank and --alpha.",
        ),
    ] = None,
    decision_weight: Annotated[
        float,
        typer.Option(
            "--decision-weight",
            help="Loss weight of the model's decisions (the first token of each segment it "
            "writes: a call, a trap or the answer) against 1 for the other tokens.",
        ),
    ] = 1.0,
) -> None:
    """Train a LoRA adapter on CPU (generating the data unless --data is given)."""
    _train(
        out=out,
        data=data,
        tools=tools,
        n=n,
        held_out=held_out,
        epochs=epochs,
        max_steps=max_steps,
        rank=rank,
        alpha=alpha,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_len=max_len,
        seed=seed,
        warmup=warmup,
        skip_long=skip_long,
        checkpointing=checkpointing,
        init=init,
        decision_weight=decision_weight,
    )


finetune_app.command("train")(_train_options)


@finetune_app.command("eval")
def eval_command(
    adapter: Annotated[
        str | None,
        typer.Option(
            "--adapter",
            help="A LoRA adapter folder (default: the shipped one on the embedded model; "
            "none: the raw model).",
        ),
    ] = None,
    model: Annotated[str, typer.Option("--model", help="The model to run.")] = "embedded",
    n: Annotated[int, typer.Option("-n", min=1, help="Held-out samples to run.")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out samples.")] = 0,
    mode: Annotated[str, typer.Option("--mode", help="sync, parallel or async.")] = "async",
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Samples run at once.")
    ] = 4,
    constrained: Annotated[
        bool,
        typer.Option(
            "--constrained/--no-constrained", help="Grammar-constrained call blocks (local)."
        ),
    ] = True,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write every judged run here.")
    ] = None,
) -> None:
    """Run an agent on held-out samples (functions training never saw); print the shares."""
    import asyncio
    from dataclasses import asdict

    from counterpoint.finetune.data import build_dataset
    from counterpoint.finetune.heldout import HeldOutCase, evaluate_held_out
    from counterpoint.runtime.backends.registry import resolve_model

    if mode not in ("sync", "parallel", "async"):
        raise ConfigError(f"--mode must be sync, parallel or async, got {mode!r}")
    samples = build_dataset(n, seed=seed, split="held_out")
    loaded = resolve_model(model, adapter=adapter)
    if hasattr(loaded, "constrained"):
        loaded.constrained = constrained
    done: list[HeldOutCase] = []

    def on_case(case: HeldOutCase) -> None:
        done.append(case)
        mark = "ok " if case.calls_right and case.facts_share == 1.0 else "-- "
        _console.print(f"{mark}{len(done):3d} {case.sample_id} {case.shape}", highlight=False)

    report = asyncio.run(
        evaluate_held_out(
            loaded,
            samples,
            mode=mode,  # type: ignore[arg-type]
            concurrency=concurrency,
            on_case=on_case,
        )
    )
    summary = {"model": loaded.name, **report.summary()}
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        rows = [asdict(c) for c in report.cases]
        json_out.write_text(json.dumps({"summary": summary, "cases": rows}, indent=1))
    typer.echo(json.dumps(summary, indent=2))


@finetune_app.callback(invoke_without_command=True)
def _group(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Train with the defaults into this folder.")
    ] = None,
    tools: ToolsOpt = None,
) -> None:
    """Fine-tune the model for CML calls: `data` writes synthetic traces, `train` trains a LoRA
    adapter on them (CPU). `counterpoint finetune --tools pkg.mod:toolset --out DIR` is `train`
    with its defaults."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    _train_options(out=out, tools=tools)
