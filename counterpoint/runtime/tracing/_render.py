"""Rich renderables for traces: run tables, span trees and the text timeline (Gantt chart).

Everything read from the database is wrapped in :class:`rich.text.Text`, never parsed as markup:
run names, prompts and tool names are untrusted text.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from counterpoint.runtime.tracing.models import RunRecord, SpanRecord, SpanStatus
from counterpoint.runtime.tracing.query import SpanNode, ToolStat

__all__ = [
    "fmt_seconds",
    "run_details",
    "runs_table",
    "span_tree_view",
    "timeline",
    "timeline_rows",
    "tool_stats_table",
]

_BAR = {
    "generation": ("━", "blue"),
    "tool_call": ("█", "green"),
    "interrupt": ("▓", "magenta"),
    "trap": ("░", "yellow"),
    "workflow_task": ("▇", "cyan"),
    "kv_reuse": ("▬", "bright_cyan"),
    "eval_case": ("■", "white"),
}
_STATUS_STYLE = {
    "ok": "green",
    "error": "red",
    "running": "yellow",
    "unfinished": "yellow",
    "incomplete": "magenta",
    "cancelled": "magenta",
    "interrupted": "magenta",
    "limit": "magenta",
}


def fmt_seconds(seconds: float | None) -> str:
    """``"-"``, ``"850ms"``, ``"2.31s"`` or ``"3m05s"``."""
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60.0:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60.0)
    return f"{minutes:.0f}m{rest:02.0f}s"


def _when(unix: float, *, seconds: bool = True) -> str:
    return dt.datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def runs_table(runs: Iterable[RunRecord], *, width: int = 80, id_width: int = 10) -> Table:
    """``traces list``: one row per run; names are shortened to fit ``width``, not the numbers."""
    headers = ("started", "run", "name", "mode", "status", "duration", "tokens", "calls")
    rows = [
        (
            _when(r.started_at, seconds=False),
            r.id[:id_width],
            r.name,
            r.mode,
            r.status,
            fmt_seconds(r.duration_s),
            f"{r.input_tokens}/{r.output_tokens}",
            str(r.calls),
        )
        for r in runs
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    name_budget = max(8, width - (sum(widths) - widths[2]) - 2 * (len(headers) - 1))
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for h in headers:
        right = h in ("duration", "tokens", "calls")
        table.add_column(h, justify="right" if right else "left", no_wrap=True)
    for row in rows:
        name = row[2] if len(row[2]) <= name_budget else row[2][: name_budget - 1] + "…"
        table.add_row(row[0], Text(row[1]), Text(name), Text(row[3]), _status(row[4]), *row[5:])
    return table


def run_details(run: RunRecord) -> Table:
    """The header of ``traces show``: the run's fields."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, Text | str]] = [
        ("run", Text(run.id)),
        ("name", Text(run.name)),
        ("model", Text(run.model)),
        ("mode", Text(run.mode)),
        ("status", _status(run.status)),
        ("started", _when(run.started_at)),
        ("duration", fmt_seconds(run.duration_s)),
        ("first token", fmt_seconds(run.first_token_s)),
        ("tokens", f"{run.input_tokens} in, {run.output_tokens} out"),
        ("calls", f"{run.calls} calls, {run.interrupts} interrupts"),
    ]
    if run.parent_run_id:
        rows.append(("parent run", Text(run.parent_run_id)))
    if run.error:
        rows.append(("error", Text(run.error, style="red")))
    if run.prompt:
        rows.append(("prompt", Text(_shorten(run.prompt, 300))))
    if run.output:
        rows.append(("output", Text(_shorten(run.output, 300))))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _span_label(span: SpanRecord) -> Text:
    _, style = _BAR.get(span.kind, ("█", "white"))
    label = Text()
    label.append(f"{span.kind} ", style=f"bold {style}")
    label.append(span.name)
    label.append(f"  {fmt_seconds(span.duration_s)}", style="bold")
    label.append(f"  @{fmt_seconds(span.start_s)}", style="dim")
    if span.status != SpanStatus.OK.value:
        label.append("  ")
        label.append_text(_status(span.status))
    error = span.attributes.get("counterpoint.error")
    if error:
        label.append(f"  {_shorten(str(error), 80)}", style="red")
    return label


def span_tree_view(run: RunRecord, nodes: list[SpanNode]) -> Tree:
    """The spans of a run as a tree under the run."""
    root = Text()
    root.append(run.name, style="bold")
    root.append(f"  {run.id[:12]}  {fmt_seconds(run.duration_s)}  ")
    root.append_text(_status(run.status))
    tree = Tree(root)

    def add(parent: Tree, children: list[SpanNode]) -> None:
        for node in children:
            add(parent.add(_span_label(node.span)), node.children)

    add(tree, nodes)
    return tree


def _flatten(nodes: list[SpanNode]) -> Iterator[SpanNode]:
    for node in nodes:
        yield node
        yield from _flatten(node.children)


def timeline_rows(
    nodes: list[SpanNode], total_s: float, width: int
) -> list[tuple[SpanNode, int, int]]:
    """Each span's bar on a shared axis of ``width`` cells spanning ``total_s`` seconds.

    Returns (node, first cell, end cell exclusive) in tree order; every bar is at least one cell,
    an open span runs to the end of the axis.
    """
    total = total_s if total_s > 0 else 1.0
    rows = []
    for node in _flatten(nodes):
        s = node.span
        end_s = s.end_s if s.end_s is not None else total
        first = min(width - 1, max(0, math.floor(s.start_s / total * width)))
        last = min(width, max(first + 1, math.ceil(end_s / total * width)))
        rows.append((node, first, last))
    return rows


def timeline(run: RunRecord, nodes: list[SpanNode], *, width: int = 80) -> RenderableType:
    """A Gantt chart: one row per span, bars on the run's time axis, so that overlapping tool
    calls, generation, interrupts and traps are visible at a glance."""
    spans = [n.span for n in _flatten(nodes)]
    ends = [s.end_s for s in spans if s.end_s is not None] + [s.start_s for s in spans]
    total = max([run.duration_s or 0.0, *ends]) or 1.0
    label_w = 30
    bar_w = max(20, width - label_w - 10)
    table = Table.grid(padding=(0, 1))
    table.add_column(width=label_w, no_wrap=True, overflow="ellipsis")
    table.add_column(width=bar_w, no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    for node, first, last in timeline_rows(nodes, total, bar_w):
        s = node.span
        char, style = _BAR.get(s.kind, ("█", "white"))
        if s.status == SpanStatus.ERROR.value:
            style = "red"
        elif s.status in (SpanStatus.UNFINISHED.value, SpanStatus.RUNNING.value):
            style = f"{style} dim"
        label = Text("  " * node.depth)
        label.append(s.kind + " ", style=style)
        label.append(s.name)
        bar = Text(" " * first)
        bar.append(char * (last - first), style=style)
        table.add_row(label, bar, fmt_seconds(s.duration_s))
    axis = Text("└" + "─" * (bar_w - 1))
    cells = [" "] * bar_w
    for pos, mark in [(0, "0"), (bar_w // 2, fmt_seconds(total / 2)), (bar_w, fmt_seconds(total))]:
        start = min(max(0, pos - len(mark) // 2), bar_w - len(mark))
        cells[start : start + len(mark)] = mark
    ticks = Text("".join(cells))
    table.add_row(Text(""), axis, "")
    table.add_row(Text("time since run start", style="dim"), ticks, "")
    legend = Text()
    for kind in dict.fromkeys(s.kind for s in spans):
        char, style = _BAR.get(kind, ("█", "white"))
        legend.append(f"{char * 2} {kind}   ", style=style)
    legend.append("(red: error)", style="dim")
    return Group(table, legend)


def tool_stats_table(stats: Iterable[ToolStat]) -> Table:
    """``traces stats``: per-tool counts, latency percentiles and error rates."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("tool", "calls", "p50", "p95", "mean", "max", "errors"):
        table.add_column(name, justify="left" if name == "tool" else "right")
    for s in stats:
        table.add_row(
            Text(s.name),
            str(s.count),
            fmt_seconds(s.p50_s),
            fmt_seconds(s.p95_s),
            fmt_seconds(s.mean_s),
            fmt_seconds(s.max_s),
            Text(f"{s.error_rate:.0%}", style="red" if s.errors else ""),
        )
    return table
