"""Eval reports: accuracy, latency, the async speedup and the protocol's token overhead.

From the ``eval_results`` of one or more eval runs, :func:`build_report` computes per model x
category x mode (plus an ``all`` row over the categories):

- accuracy (correct cases over cases);
- end-to-end latency (first generated token to last) p50 / p95 / mean;
- the protocol's token overhead: tokens spent on CML markup (markers and call ids) over every
  generated token;
- the speedup of ``parallel`` and ``async`` over ``sync``, per case, paired by case id where both
  modes ran: median and geometric mean of ``latency_sync / latency_mode``, over every pair and over
  the pairs where both modes answered correctly (the fairest comparison: same calls made).

When several runs hold a result for the same model, category, case and mode, the latest counts.
:func:`render_tables` turns a report into rich tables; :func:`write_report` writes the JSON summary
and a PNG plot (latency per mode, per category; matplotlib's Agg backend) into a folder.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from rich.table import Table
from sqlmodel import col, select

from counterpoint.errors import ConfigError
from counterpoint.evals.runner import find_eval_run
from counterpoint.runtime.tracing import EvalResultRecord, EvalRunRecord
from counterpoint.runtime.tracing.query import percentile
from counterpoint.runtime.tracing.store import TraceStore

__all__ = [
    "ALL_CATEGORIES",
    "EvalReport",
    "GroupStats",
    "ReportFiles",
    "RunInfo",
    "Speedup",
    "build_report",
    "latest_run_ids",
    "render_tables",
    "write_plot",
    "write_report",
]

ALL_CATEGORIES = "all"
"""The category of the rows that aggregate every category."""

_MODE_ORDER = ("sync", "parallel", "async")
BASELINE_MODE = "sync"


class RunInfo(BaseModel):
    """An eval run in the report."""

    model_config = ConfigDict(frozen=True)

    id: str
    model: str
    status: str
    started_at: float
    ended_at: float | None
    categories: list[str]
    modes: list[str]
    planned: int
    recorded: int


class GroupStats(BaseModel):
    """Accuracy, latency and token overhead of one model x category x mode."""

    model_config = ConfigDict(frozen=True)

    model: str
    category: str
    mode: str
    cases: int
    correct: int
    accuracy: float
    latency_p50_s: float
    latency_p95_s: float
    latency_mean_s: float
    output_tokens: int
    protocol_tokens: float
    protocol_share: float
    token_limit_hits: int
    protocol_errors: int = 0
    """Runs that failed or broke the protocol (a malformed block, a forged marker)."""


class Speedup(BaseModel):
    """Speedup of ``mode`` over ``baseline`` (sync), per case, paired by case id."""

    model_config = ConfigDict(frozen=True)

    model: str
    category: str
    mode: str
    baseline: str
    pairs: int
    median: float
    geomean: float
    pairs_both_correct: int
    median_both_correct: float | None
    geomean_both_correct: float | None


class EvalReport(BaseModel):
    """The whole report (what ``summary.json`` holds)."""

    generated_at: float
    database: str
    runs: list[RunInfo]
    groups: list[GroupStats]
    speedups: list[Speedup]

    def group(self, model: str, category: str, mode: str) -> GroupStats | None:
        """The stats of one model x category x mode, if any case of it ran."""
        for g in self.groups:
            if (g.model, g.category, g.mode) == (model, category, mode):
                return g
        return None


@dataclass(frozen=True)
class ReportFiles:
    """Where :func:`write_report` wrote the report."""

    json: Path
    png: Path


def latest_run_ids(store: TraceStore) -> list[str]:
    """The default runs of a report: the most recent eval run of each model, newest first."""
    stmt = select(EvalRunRecord).order_by(col(EvalRunRecord.started_at).desc())
    with store.session() as session:
        runs = list(session.exec(stmt).all())
    chosen: dict[str, str] = {}
    for run in runs:
        chosen.setdefault(run.model, run.id)
    return list(chosen.values())


def _results(
    store: TraceStore, run_ids: Sequence[str]
) -> tuple[list[EvalResultRecord], dict[str, int]]:
    """The latest result of each (model, category, case, mode), and the rows of each run."""
    stmt = (
        select(EvalResultRecord)
        .where(col(EvalResultRecord.eval_run_id).in_(list(run_ids)))
        .order_by(col(EvalResultRecord.created_at), col(EvalResultRecord.id))
    )
    with store.session() as session:
        rows = list(session.exec(stmt).all())
    latest: dict[tuple[str, str, str, str], EvalResultRecord] = {}
    counts: dict[str, int] = defaultdict(int)
    for row in rows:  # later rows replace earlier ones
        latest[(row.model, row.category, row.case_id, row.mode)] = row
        counts[row.eval_run_id] += 1
    return list(latest.values()), counts


def _mode_key(mode: str) -> tuple[int, str]:
    return (_MODE_ORDER.index(mode) if mode in _MODE_ORDER else len(_MODE_ORDER), mode)


def _group_stats(model: str, category: str, mode: str, rows: list[EvalResultRecord]) -> GroupStats:
    latencies = [r.latency_s for r in rows]
    correct = sum(1 for r in rows if r.correct)
    out_tokens = sum(r.output_tokens for r in rows)
    protocol = sum(float(r.attributes.get("protocol_tokens", 0.0)) for r in rows)
    return GroupStats(
        model=model,
        category=category,
        mode=mode,
        cases=len(rows),
        correct=correct,
        accuracy=correct / len(rows),
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        latency_mean_s=statistics.fmean(latencies),
        output_tokens=out_tokens,
        protocol_tokens=protocol,
        protocol_share=protocol / out_tokens if out_tokens else 0.0,
        token_limit_hits=sum(1 for r in rows if r.attributes.get("status") == "limit"),
        protocol_errors=sum(1 for r in rows if _protocol_error(r)),
    )


def _protocol_error(row: EvalResultRecord) -> bool:
    """A run that failed, or in which the model broke the protocol."""
    attributes = row.attributes
    return attributes.get("status") == "error" or int(attributes.get("protocol_violations", 0)) > 0


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


def _speedups(model: str, rows: list[EvalResultRecord]) -> list[Speedup]:
    by_case: dict[tuple[str, str], dict[str, EvalResultRecord]] = defaultdict(dict)
    for r in rows:
        by_case[(r.category, r.case_id)][r.mode] = r
    categories = sorted({r.category for r in rows})
    modes = sorted({r.mode for r in rows} - {BASELINE_MODE}, key=_mode_key)
    out: list[Speedup] = []
    for category in [*categories, ALL_CATEGORIES] if len(categories) > 1 else categories:
        for mode in modes:
            ratios: list[float] = []
            both: list[float] = []
            for (case_category, _), results in by_case.items():
                if category not in (ALL_CATEGORIES, case_category):
                    continue
                base, other = results.get(BASELINE_MODE), results.get(mode)
                if base is None or other is None or base.latency_s <= 0 or other.latency_s <= 0:
                    continue
                ratio = base.latency_s / other.latency_s
                ratios.append(ratio)
                if base.correct and other.correct:
                    both.append(ratio)
            if not ratios:
                continue
            out.append(
                Speedup(
                    model=model,
                    category=category,
                    mode=mode,
                    baseline=BASELINE_MODE,
                    pairs=len(ratios),
                    median=statistics.median(ratios),
                    geomean=_geomean(ratios),
                    pairs_both_correct=len(both),
                    median_both_correct=statistics.median(both) if both else None,
                    geomean_both_correct=_geomean(both) if both else None,
                )
            )
    return out


def build_report(store: TraceStore, run_ids: Iterable[str] | None = None) -> EvalReport:
    """The report over the given eval runs (ids or unique prefixes; default: the latest run of
    each model). Raises :class:`ConfigError` when there is no eval run to report on."""
    ids = [find_eval_run(store, r).id for r in run_ids] if run_ids else latest_run_ids(store)
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise ConfigError(
            f"no eval run in {store.path}: run `counterpoint eval bfcl` first, or pass --db"
        )
    results, counts = _results(store, ids)
    runs = []
    for run_id in ids:
        rec = find_eval_run(store, run_id)
        runs.append(
            RunInfo(
                id=rec.id,
                model=rec.model,
                status=rec.status,
                started_at=rec.started_at,
                ended_at=rec.ended_at,
                categories=list(rec.categories),
                modes=list(rec.modes),
                planned=rec.n_cases,
                recorded=counts[rec.id],
            )
        )
    by_model: dict[str, list[EvalResultRecord]] = defaultdict(list)
    for r in results:
        by_model[r.model].append(r)
    groups: list[GroupStats] = []
    speedups: list[Speedup] = []
    for model in sorted(by_model):
        rows = by_model[model]
        cells: dict[tuple[str, str], list[EvalResultRecord]] = defaultdict(list)
        for r in rows:
            cells[(r.category, r.mode)].append(r)
            cells[(ALL_CATEGORIES, r.mode)].append(r)
        categories = sorted({r.category for r in rows})
        if len(categories) > 1:
            categories.append(ALL_CATEGORIES)
        for category in categories:
            for mode in sorted({m for c, m in cells if c == category}, key=_mode_key):
                groups.append(_group_stats(model, category, mode, cells[(category, mode)]))
        speedups.extend(_speedups(model, rows))
    return EvalReport(
        generated_at=time.time(),
        database=store.path,
        runs=runs,
        groups=groups,
        speedups=speedups,
    )


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _ratio(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}x"


def render_tables(report: EvalReport) -> list[Table]:
    """Rich tables: accuracy / latency / overhead per group, then the speedups.

    With a single model its name goes in the titles; with several, a ``model`` column is added.
    """
    models = sorted({g.model for g in report.groups})
    several = len(models) > 1
    suffix = "" if several or not models else f" ({models[0]})"
    main = Table(title=f"BFCL accuracy and latency (first token to last){suffix}")
    columns = ["model"] if several else []
    columns += ["category", "mode", "correct", "accuracy", "p50", "p95"]
    columns += ["tok/case", "protocol", "proto err", "at limit"]
    for name in columns:
        main.add_column(name, justify="left" if name in _TEXT_COLUMNS else "right")
    for i, g in enumerate(report.groups):
        following = report.groups[i + 1] if i + 1 < len(report.groups) else None
        cells = [g.model] if several else []
        cells += [g.category, g.mode, f"{g.correct}/{g.cases}", f"{g.accuracy:.1%}"]
        cells += [_seconds(g.latency_p50_s), _seconds(g.latency_p95_s)]
        cells += [f"{g.output_tokens / g.cases:.0f}", f"{g.protocol_share:.1%}"]
        cells += [f"{g.protocol_errors / g.cases:.0%}", str(g.token_limit_hits)]
        last_of_category = following is not None and following.category != g.category
        main.add_row(*cells, end_section=last_of_category)
    tables = [main]
    if report.speedups:
        speed = Table(title=f"Speedup over sync per case, paired by case id{suffix}")
        columns = ["model"] if several else []
        columns += ["category", "mode", "pairs", "median", "geomean"]
        columns += ["pairs both ok", "median both ok"]
        for name in columns:
            speed.add_column(name, justify="left" if name in _TEXT_COLUMNS else "right")
        for s in report.speedups:
            cells = [s.model] if several else []
            cells += [s.category, s.mode, str(s.pairs), _ratio(s.median), _ratio(s.geomean)]
            cells += [str(s.pairs_both_correct), _ratio(s.median_both_correct)]
            speed.add_row(*cells)
        tables.append(speed)
    return tables


_TEXT_COLUMNS = frozenset({"model", "category", "mode"})


def write_plot(report: EvalReport, path: Path) -> Path:
    """A PNG of latency per mode, per category (p50 bars, whiskers to p95), one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({g.model for g in report.groups}) or ["(no results)"]
    fig, axes = plt.subplots(
        len(models), 1, figsize=(9, 3.6 * len(models)), squeeze=False, constrained_layout=True
    )
    for ax, model in zip(axes[:, 0], models, strict=True):
        groups = [g for g in report.groups if g.model == model]
        categories = list(dict.fromkeys(g.category for g in groups))
        modes = sorted({g.mode for g in groups}, key=_mode_key)
        width = 0.8 / max(1, len(modes))
        for i, mode in enumerate(modes):
            xs, p50s, whiskers = [], [], []
            for x, category in enumerate(categories):
                g = report.group(model, category, mode)
                if g is None:
                    continue
                xs.append(x + (i - (len(modes) - 1) / 2) * width)
                p50s.append(g.latency_p50_s)
                whiskers.append(max(0.0, g.latency_p95_s - g.latency_p50_s))
            ax.bar(
                xs,
                p50s,
                width,
                label=mode,
                yerr=[[0.0] * len(whiskers), whiskers],
                capsize=3,
            )
        ax.set_xticks(range(len(categories)), categories)
        ax.set_ylabel("latency (s): p50, whisker to p95")
        ax.set_title(f"{model}: latency per mode, first generated token to last")
        if modes:
            ax.legend(title="mode")
        ax.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: EvalReport, out_dir: Path | str) -> ReportFiles:
    """Write ``summary.json`` and ``latency.png`` into ``out_dir`` (created if needed)."""
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the report folder {folder} ({exc}); pass --out") from None
    json_path = folder / "summary.json"
    json_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    png_path = write_plot(report, folder / "latency.png")
    return ReportFiles(json=json_path, png=png_path)
