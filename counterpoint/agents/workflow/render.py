"""Rendering workflow runs for terminals: the graph in layers, a timeline, a summary, progress.

Everything here takes plain data (task dicts as ``Graph.to_dicts()`` gives them, and
:class:`~counterpoint.agents.workflow.outcome.TaskOutcome` s, whose ``started``/``ended`` are
seconds since the run started) and returns rich renderables or strings, so that the CLI
(``counterpoint workflow show``) and the terminal UI draw runs the same way.

- :func:`layers` / :func:`layers_view`: longest-path layering (layer ``k`` holds the tasks whose
  longest chain of needs has ``k`` edges), one line per layer, each task with its status mark.
- :func:`timeline_view`: one row per task, a bar from its start to its end on a time axis common
  to every row, then its status, duration and attempts.
- :func:`summarise` / :func:`summary_view`: makespan, the sum of task time, and their ratio (the
  overlap: how many tasks ran at once on average).
- :func:`task_line`: one line of live progress (a task started, retried or finished).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from counterpoint.agents.workflow.outcome import TaskOutcome

__all__ = [
    "MARKS",
    "STYLES",
    "RunSummary",
    "layers",
    "layers_view",
    "mark",
    "summarise",
    "summary_view",
    "task_line",
    "timeline_view",
]

MARKS: dict[str, str] = {
    "ok": "✓",
    "cached": "↺",
    "failed": "✗",
    "skipped": "⤼",
    "cancelled": "⊘",
    "running": "▶",
    "pending": "·",
}
"""The mark of each task status (``running`` and ``pending`` for tasks without an outcome)."""

STYLES: dict[str, str] = {
    "ok": "green",
    "cached": "cyan",
    "failed": "bold red",
    "skipped": "yellow",
    "cancelled": "magenta",
    "running": "blue",
    "pending": "dim",
}
"""The colour of each task status."""

_BAR = "█"


def mark(status: str) -> Text:
    """The status's mark, coloured."""
    return Text(MARKS.get(status, "?"), style=STYLES.get(status, ""))


def layers(tasks: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Longest-path layers of the task dicts (needs naming no task are ignored; a cycle, which a
    valid graph never has, puts its tasks after the rest)."""
    ids = [str(t["id"]) for t in tasks]
    known = set(ids)
    needs = {str(t["id"]): [str(n) for n in t.get("needs") or () if str(n) in known] for t in tasks}
    depth: dict[str, int] = {}
    remaining = list(ids)
    while remaining:
        progressed = False
        for tid in list(remaining):
            if all(n in depth for n in needs[tid]):
                depth[tid] = max((depth[n] + 1 for n in needs[tid]), default=0)
                remaining.remove(tid)
                progressed = True
        if not progressed:  # a cycle: lay the rest out after everything else
            base = max(depth.values(), default=-1) + 1
            for tid in remaining:
                depth[tid] = base
            break
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for tid in ids:
        out[depth[tid]].append(tid)
    return out


def layers_view(tasks: Sequence[Mapping[str, Any]], statuses: Mapping[str, str]) -> Text:
    """One line per layer: ``layer 0  ✓ facts  ✓ tone``; a task without a status is pending."""
    out = Text()
    grouped = layers(tasks)
    width = len(str(max(len(grouped) - 1, 0)))
    for k, layer in enumerate(grouped):
        if k:
            out.append("\n")
        out.append(f"layer {k:>{width}}  ", style="dim")
        for i, tid in enumerate(layer):
            if i:
                out.append("  ")
            status = statuses.get(tid, "pending")
            out.append_text(mark(status))
            out.append(" ")
            out.append(tid, style=STYLES.get(status, "") if status != "ok" else "")
    return out


@dataclass(frozen=True)
class RunSummary:
    """A run's timing: ``makespan_s`` from the first task's start to the last one's end,
    ``busy_s`` the sum of every task's duration, ``overlap`` = busy / makespan (1.0 for tasks
    one after another; higher when they ran at once)."""

    makespan_s: float
    busy_s: float
    overlap: float
    counts: dict[str, int]
    tasks: int


def summarise(outcomes: Mapping[str, TaskOutcome], total: int | None = None) -> RunSummary:
    """The :class:`RunSummary` of these outcomes (``total``: the graph's task count)."""
    timed = [o for o in outcomes.values() if o.started is not None and o.ended is not None]
    if timed:
        start = min(o.started for o in timed if o.started is not None)
        end = max(o.ended for o in timed if o.ended is not None)
        makespan = max(0.0, end - start)
    else:
        makespan = 0.0
    busy = sum(o.duration_s for o in timed)
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o.status] = counts.get(o.status, 0) + 1
    overlap = busy / makespan if makespan > 0 else 0.0
    return RunSummary(
        makespan, busy, overlap, counts, total if total is not None else len(outcomes)
    )


def summary_view(summary: RunSummary) -> Text:
    """``makespan 12.3s · task time 30.1s · overlap 2.45x · 5/5 ok``."""
    out = Text()
    out.append("makespan ", style="dim")
    out.append(_seconds(summary.makespan_s), style="bold")
    out.append(" · task time ", style="dim")
    out.append(_seconds(summary.busy_s), style="bold")
    out.append(" · overlap ", style="dim")
    out.append(f"{summary.overlap:.2f}x", style="bold")
    out.append(" · ", style="dim")
    out.append_text(counts_view(summary.counts, summary.tasks))
    return out


def counts_view(counts: Mapping[str, int], total: int) -> Text:
    """``5/6 ok, 1 failed`` (statuses in a fixed order, coloured)."""
    out = Text()
    order = [s for s in MARKS if s in counts] + sorted(set(counts) - set(MARKS))
    first = True
    for status in order:
        if not first:
            out.append(", ")
        n = counts[status]
        text = f"{n}/{total} {status}" if first and status == "ok" else f"{n} {status}"
        out.append(text, style=STYLES.get(status, ""))
        first = False
    if first:
        out.append(f"0/{total} done", style="dim")
    return out


def timeline_view(
    tasks: Sequence[str],
    outcomes: Mapping[str, TaskOutcome],
    *,
    width: int = 100,
) -> Group:
    """A row per task in ``tasks``: its bar on the common time axis, status, duration, attempts.

    The axis runs from 0 to the latest end (seconds since the run started) and fills what
    ``width`` leaves after the other columns (at least 10 characters).
    """
    ends = [o.ended for o in outcomes.values() if o.ended is not None]
    horizon = max(ends, default=0.0)
    id_w = max([len("task"), *(len(t) for t in tasks)])
    fixed = id_w + len("cancelled") + len("9999.9s") + len("tries") + 4 * 2
    bar_w = max(10, width - fixed)
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, padding=(0, 1))
    table.add_column("task", no_wrap=True, min_width=id_w)
    table.add_column(_axis(horizon, bar_w), no_wrap=True, width=bar_w)
    table.add_column("status", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    for tid in tasks:
        outcome = outcomes.get(tid)
        status = outcome.status if outcome is not None else "pending"
        style = STYLES.get(status, "")
        bar = Text(" " * bar_w)
        duration = ""
        if outcome is not None and outcome.started is not None and horizon > 0:
            end = outcome.ended if outcome.ended is not None else horizon
            lo = min(bar_w - 1, int(outcome.started / horizon * bar_w))
            hi = max(lo + 1, min(bar_w, math.ceil(end / horizon * bar_w)))
            bar = Text(" " * lo)
            bar.append(_BAR * (hi - lo), style=style)
            bar.append(" " * (bar_w - hi))
        if outcome is not None and outcome.started is not None and outcome.ended is not None:
            duration = _seconds(outcome.duration_s)
        tries = str(outcome.attempts) if outcome is not None and outcome.attempts else ""
        status_text = mark(status)
        status_text.append(f" {status}", style=style)
        table.add_row(tid, bar, status_text, duration, tries)
    return Group(table)


def task_line(
    t: float,
    kind: str,
    task_id: str,
    *,
    id_width: int = 0,
    agent: str = "",
    status: str = "",
    duration_s: float | None = None,
    attempt: int = 1,
    detail: str = "",
) -> Text:
    """One line of live progress: ``  12.3s ✓ facts   ok 4.1s`` (``kind`` is ``started``,
    ``retry`` or ``finished``)."""
    out = Text()
    out.append(f"{t:7.1f}s ", style="dim")
    if kind == "started":
        out.append_text(mark("running"))
        out.append(f" {task_id:<{id_width}}")
        out.append(f"  {agent}" + (f" (attempt {attempt})" if attempt > 1 else ""), style="dim")
    elif kind == "retry":
        out.append("↻", style="yellow")
        out.append(f" {task_id:<{id_width}}")
        out.append(f"  attempt {attempt} failed, retrying: {detail}", style="yellow")
    else:
        out.append_text(mark(status))
        out.append(f" {task_id:<{id_width}}")
        out.append(f"  {status}", style=STYLES.get(status, ""))
        if duration_s is not None and status in ("ok", "failed", "cancelled"):
            out.append(f" {_seconds(duration_s)}", style="dim")
        if detail:
            out.append(f"  {detail}", style=STYLES.get(status, "dim"))
    return out


def _axis(horizon: float, width: int) -> str:
    """The timeline's header: ``0s`` at the left, the horizon at the right."""
    left, right = "0s", _seconds(horizon)
    gap = max(1, width - len(left) - len(right))
    return left + "─" * gap + right if width > len(left) + len(right) else right


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 100 else f"{value:.0f}s"
