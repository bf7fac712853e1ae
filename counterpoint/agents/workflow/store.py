"""Durable checkpoints of AOV workflows, in the traces database (SQLite).

A :class:`WorkflowStore` records a workflow run as it goes, so that ``resume`` can continue it
after a crash without running a finished task again:

- :meth:`WorkflowStore.create_run` writes the run (its graph, goal, config) before any task
  starts; :meth:`WorkflowStore.save_graph` records each patch of the graph.
- :meth:`WorkflowStore.task_started` marks a task ``running``; :meth:`WorkflowStore.commit`
  writes its outcome: status, result, error and attempts in one row, in one ``BEGIN IMMEDIATE``
  transaction, so a reader (or a resume after a ``kill -9``) sees either the previous state or the
  whole outcome, never a result without its done mark nor the reverse.
- :meth:`WorkflowStore.load_run` reads it all back (:class:`StoredWorkflow`);
  :meth:`StoredWorkflow.finished` is what a resume must not run again.
- :meth:`WorkflowStore.cache_get`/:meth:`WorkflowStore.cache_put` keep results of finished tasks
  under :func:`cache_key` (objective, agent, output format and upstream results), across runs.

Locking: the traces file may be shared with the tracer's writer and other processes. Every write
waits for another connection's lock (SQLite's busy timeout, ``busy_timeout_s``) and, still locked
out, is retried with backoff until ``commit_timeout_s`` has passed since it began; then it raises
:class:`~counterpoint.agents.workflow.graph.WorkflowError` naming the file and the task, and nothing
of that write is in the file. Any other database error is raised as a ``WorkflowError`` too.

The methods block: the scheduler calls them through :func:`asyncio.to_thread`. One store may be
used from several threads at once (each call takes its own pooled connection; an in-memory store
serialises its users on its one connection).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast, get_args

from sqlalchemy import Connection, RowMapping, func, select, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import SQLAlchemyError

from counterpoint.agents.workflow.events import TaskStatus
from counterpoint.agents.workflow.graph import WorkflowError
from counterpoint.agents.workflow.outcome import FINISHED, TaskOutcome
from counterpoint.runtime.tracing.errors import TraceStoreError
from counterpoint.runtime.tracing.models import (
    WorkflowCacheRecord,
    WorkflowRunRecord,
    WorkflowTaskRecord,
)
from counterpoint.runtime.tracing.store import TraceStore, is_transient_lock_error

__all__ = [
    "MIN_PREFIX",
    "StoredWorkflow",
    "WorkflowRunStatus",
    "WorkflowStore",
    "cache_key",
]

WorkflowRunStatus = Literal["running", "ok", "failed", "cancelled"]
"""A stored workflow run's status; ``running`` also for one whose process died (resume it)."""

_RUN_STATUSES: frozenset[str] = frozenset(get_args(WorkflowRunStatus))
_TASK_STATUSES: frozenset[str] = frozenset(get_args(TaskStatus))

RUNNING = "running"
"""The status of a task row between :meth:`WorkflowStore.task_started` and its commit."""

MIN_PREFIX = 6
"""The fewest characters of a run id that :meth:`WorkflowStore.load_run` accepts as a prefix."""

_LIST_HINT = "`counterpoint workflow list` shows the workflow runs it holds"

_T = TypeVar("_T")

_RUNS = WorkflowRunRecord.__table__  # type: ignore[attr-defined]
_TASKS = WorkflowTaskRecord.__table__  # type: ignore[attr-defined]
_CACHE = WorkflowCacheRecord.__table__  # type: ignore[attr-defined]


def cache_key(
    objective: str, agent: str, output_format: str | None, upstream: Mapping[str, str]
) -> str:
    """The cache key of a task: the sha256 (hex) of a canonical JSON of its objective, its agent's
    name, its output format and its upstream results keyed by task id.

    Two tasks get the same key exactly when all four are equal (the order of ``upstream`` does not
    matter; task ids and agent names are part of it, so a renamed upstream task is a miss).
    """
    payload = {
        "v": 1,
        "objective": objective,
        "agent": agent,
        "output_format": output_format,
        "upstream": {str(k): str(v) for k, v in upstream.items()},
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredWorkflow:
    """A workflow run as the database holds it.

    ``graph`` is the task list (``Graph.to_dicts()``) at graph ``version``; ``outcomes`` holds
    every task row, whatever its status (``running`` for a task started but never committed: its
    process died, or it is still running elsewhere); ``started_at``/``ended_at`` are Unix times;
    ``resumes`` counts the resumes so far.
    """

    run_id: str
    name: str
    goal: str
    status: str
    version: int
    graph: list[dict[str, Any]]
    source: str | None
    config: dict[str, Any]
    outcomes: dict[str, TaskOutcome] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float | None = None
    resumes: int = 0

    def finished(self) -> dict[str, TaskOutcome]:
        """The tasks that have their result (``ok`` or ``cached``): what a resume must not run
        again. Failed, skipped, cancelled and running tasks run again."""
        return {tid: o for tid, o in self.outcomes.items() if o.status in FINISHED}


def _backoff(attempt: int, first_s: float = 0.02, max_s: float = 0.5) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): doubling from ``first_s``, capped, jittered."""
    return min(max_s, first_s * 2.0 ** min(attempt - 1, 20)) * random.uniform(0.5, 1.0)


class WorkflowStore:
    """Checkpoints of workflow runs in the traces database (see the module doc).

    Args:
        db: a :class:`~counterpoint.runtime.tracing.store.TraceStore` (shared, left open by
            :meth:`close`), or the path of the traces file (``":memory:"`` for a private in-memory
            database); None: ``$COUNTERPOINT_TRACES_DB``, else the default traces file. A path is
            opened (checked, and upgraded to the current schema) here.
        busy_timeout_s: when opening a path, how long one statement waits for another
            connection's lock before it counts as locked out.
        commit_timeout_s: how long a write keeps retrying while the file stays locked (each try
            waits up to the busy timeout, so the longest wait is about the sum of the two); then it
            raises :class:`WorkflowError`.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | TraceStore | None = None,
        *,
        busy_timeout_s: float = 5.0,
        commit_timeout_s: float = 60.0,
    ) -> None:
        if not commit_timeout_s >= 0:
            raise WorkflowError(f"commit_timeout_s must be 0 or more, not {commit_timeout_s!r}")
        self.commit_timeout_s = commit_timeout_s
        if isinstance(db, TraceStore):
            self.traces = db
            self._owned = False
        else:
            try:
                self.traces = TraceStore(db, busy_timeout_s=busy_timeout_s)
            except TraceStoreError as e:
                raise WorkflowError(f"cannot open the workflow checkpoints: {e}") from e
            self._owned = True
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def path(self) -> str:
        """The traces database (``":memory:"`` for an in-memory one)."""
        return self.traces.path

    # -- runs ------------------------------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        *,
        name: str,
        goal: str,
        graph: list[dict[str, Any]],
        version: int,
        source: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        """Record a new workflow run (status ``running``, started now) before its tasks start.

        ``graph`` is ``Graph.to_dicts()`` at graph ``version``; ``config`` whatever a resume needs
        besides (JSON-serialisable). Raises :class:`WorkflowError` if ``run_id`` is taken.
        """
        row = {
            "id": run_id,
            "name": name,
            "goal": goal,
            "status": RUNNING,
            "version": int(version),
            "graph": _json_copy(graph, "graph"),
            "source": source,
            "config": _json_copy(config or {}, "config"),
            "started_at": time.time(),
            "ended_at": None,
            "resumes": 0,
            "attributes": {},
        }

        def write(conn: Connection) -> None:
            taken = conn.execute(select(_RUNS.c.id).where(_RUNS.c.id == run_id)).first()
            if taken is not None:
                raise WorkflowError(
                    f"a workflow run {run_id!r} is already in {self.path}: pass another run id, "
                    "or resume that run"
                )
            conn.execute(_RUNS.insert().values(**row))

        self._write(write, f"record the new workflow run {run_id!r}")

    def load_run(self, run_id: str) -> StoredWorkflow:
        """The run ``run_id`` (or the one run whose id starts with it, given at least
        :data:`MIN_PREFIX` characters), with every task row.

        Raises :class:`WorkflowError` if no run matches, or if a prefix matches several.
        """

        def read(conn: Connection) -> StoredWorkflow:
            found = conn.execute(select(_RUNS).where(_RUNS.c.id == run_id)).mappings().first()
            if found is None and len(run_id) >= MIN_PREFIX:
                head = func.substr(_RUNS.c.id, 1, len(run_id))
                matches = (
                    conn.execute(
                        select(_RUNS).where(head == run_id).order_by(_RUNS.c.started_at).limit(6)
                    )
                    .mappings()
                    .all()
                )
                if len(matches) > 1:
                    ids = ", ".join(str(m["id"]) for m in matches[:5])
                    more = ", ..." if len(matches) > 5 else ""
                    raise WorkflowError(
                        f"{run_id!r} is the start of several workflow run ids in {self.path} "
                        f"({ids}{more}): give more of the id"
                    )
                found = matches[0] if matches else None
            if found is None:
                short = (
                    f" (a prefix of an id needs at least {MIN_PREFIX} characters)"
                    if len(run_id) < MIN_PREFIX
                    else ""
                )
                raise WorkflowError(
                    f"no workflow run {run_id!r} in {self.path}{short}; {_LIST_HINT}, and --db "
                    "(or COUNTERPOINT_TRACES_DB) picks another file"
                )
            tasks = conn.execute(
                select(_TASKS).where(_TASKS.c.run_id == found["id"]).order_by(_TASKS.c.updated_at)
            ).mappings()
            outcomes = {str(t["task_id"]): _outcome(t) for t in tasks}
            return StoredWorkflow(
                run_id=str(found["id"]),
                name=str(found["name"]),
                goal=str(found["goal"]),
                status=str(found["status"]),
                version=int(found["version"]),
                graph=list(found["graph"] or []),
                source=found["source"],
                config=dict(found["config"] or {}),
                outcomes=outcomes,
                started_at=float(found["started_at"]),
                ended_at=found["ended_at"],
                resumes=int(found["resumes"]),
            )

        return self._read(read, f"read the workflow run {run_id!r}")

    def save_graph(self, run_id: str, graph: list[dict[str, Any]], version: int) -> None:
        """Record the graph after a patch (``Graph.to_dicts()`` at ``version``).

        A version older than the one stored is ignored, so patches saved from several threads
        never roll the graph back.
        """
        dicts = _json_copy(graph, "graph")

        def write(conn: Connection) -> None:
            self._require_run(conn, run_id)
            conn.execute(
                update(_RUNS)
                .where(_RUNS.c.id == run_id, _RUNS.c.version <= int(version))
                .values(graph=dicts, version=int(version))
            )

        self._write(write, f"save the graph (version {version}) of workflow run {run_id!r}")

    def set_status(self, run_id: str, status: str, *, ended_at: float | None = None) -> None:
        """Set the run's status (``running``, ``ok``, ``failed``, ``cancelled``) and end time."""
        if status not in _RUN_STATUSES:
            raise WorkflowError(
                f"a workflow run's status is one of {', '.join(sorted(_RUN_STATUSES))}, "
                f"not {status!r}"
            )

        def write(conn: Connection) -> None:
            self._require_run(conn, run_id)
            conn.execute(
                update(_RUNS).where(_RUNS.c.id == run_id).values(status=status, ended_at=ended_at)
            )

        self._write(write, f"set the status of workflow run {run_id!r} to {status!r}")

    def mark_resumed(self, run_id: str) -> None:
        """Record a resume: the run is ``running`` again, without an end time, and ``resumes``
        grows by 1."""

        def write(conn: Connection) -> None:
            self._require_run(conn, run_id)
            conn.execute(
                update(_RUNS)
                .where(_RUNS.c.id == run_id)
                .values(status=RUNNING, ended_at=None, resumes=_RUNS.c.resumes + 1)
            )

        self._write(write, f"mark workflow run {run_id!r} resumed")

    def list_runs(self, limit: int = 50) -> list[WorkflowRunRecord]:
        """The latest ``limit`` workflow runs, newest first (detached records)."""

        def read(conn: Connection) -> list[WorkflowRunRecord]:
            rows = conn.execute(
                select(_RUNS).order_by(_RUNS.c.started_at.desc(), _RUNS.c.id).limit(max(0, limit))
            ).mappings()
            return [WorkflowRunRecord.model_validate(dict(r)) for r in rows]

        return self._read(read, "list the workflow runs")

    # -- tasks -----------------------------------------------------------------------------------

    def task_started(
        self,
        run_id: str,
        task_id: str,
        *,
        attempt: int,
        started: float,
        agent_run_id: str | None,
    ) -> None:
        """Mark ``task_id`` ``running`` (its ``attempt``-th attempt, ``started`` seconds into the
        run, its agent's run ``agent_run_id``); an earlier result or error of the row is cleared.
        """
        values = {
            "status": RUNNING,
            "result": None,
            "error": None,
            "attempts": int(attempt),
            "started": started,
            "ended": None,
            "agent_run_id": agent_run_id,
            "updated_at": time.time(),
        }

        def write(conn: Connection) -> None:
            self._require_run(conn, run_id)
            stmt = insert(_TASKS).values(run_id=run_id, task_id=task_id, graph_version=0, **values)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["run_id", "task_id"], set_=values)
            )

        self._write(write, f"mark task {task_id!r} of workflow run {run_id!r} started")

    def commit(self, run_id: str, outcome: TaskOutcome, *, graph_version: int = 0) -> None:
        """Make ``outcome`` durable: its status, result, error, attempts and times in one row,
        written in one ``BEGIN IMMEDIATE`` transaction; once this returns, it survives a crash.

        While another connection holds the file's lock this waits and retries (see the class);
        it raises :class:`WorkflowError`, naming the file and the task, if the file stays locked
        past ``commit_timeout_s`` or the write fails otherwise. Then nothing of it was written,
        and the task's previous row is unchanged.
        """
        if outcome.status not in _TASK_STATUSES:
            raise WorkflowError(
                f"task {outcome.task_id!r}: cannot commit the status {outcome.status!r} (one of "
                f"{', '.join(sorted(_TASK_STATUSES))})",
                ids=[outcome.task_id],
            )
        values = {
            "status": outcome.status,
            "result": outcome.result,
            "error": outcome.error,
            "attempts": int(outcome.attempts),
            "started": outcome.started,
            "ended": outcome.ended,
            "agent_run_id": outcome.agent_run_id,
            "graph_version": int(graph_version),
            "updated_at": time.time(),
        }

        def write(conn: Connection) -> None:
            self._require_run(conn, run_id)
            stmt = insert(_TASKS).values(run_id=run_id, task_id=outcome.task_id, **values)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["run_id", "task_id"], set_=values)
            )

        self._write(
            write,
            f"commit the outcome ({outcome.status}) of task {outcome.task_id!r} of workflow run "
            f"{run_id!r}",
            ids=[outcome.task_id],
        )

    # -- cache -----------------------------------------------------------------------------------

    def cache_get(self, key: str) -> str | None:
        """The result cached under ``key`` (see :func:`cache_key`), or None."""

        def read(conn: Connection) -> str | None:
            hit = conn.execute(select(_CACHE.c.result).where(_CACHE.c.key == key)).scalar()
            return None if hit is None else str(hit)

        return self._read(read, "read the workflow result cache")

    def cache_put(self, key: str, result: str, *, task_id: str, run_id: str) -> None:
        """Cache ``result`` under ``key`` (replacing an earlier entry), computed by ``task_id`` of
        ``run_id``."""
        values = {"result": result, "task_id": task_id, "run_id": run_id, "created_at": time.time()}

        def write(conn: Connection) -> None:
            stmt = insert(_CACHE).values(key=key, **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=values))

        self._write(write, f"cache the result of task {task_id!r}", ids=[task_id])

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database if this store opened it (a :class:`TraceStore` passed in stays
        open). Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._owned:
            self.traces.close()

    def __enter__(self) -> WorkflowStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WorkflowStore({self.path!r})"

    # -- internals -------------------------------------------------------------------------------

    def _require_run(self, conn: Connection, run_id: str) -> None:
        if conn.execute(select(_RUNS.c.id).where(_RUNS.c.id == run_id)).first() is None:
            raise WorkflowError(
                f"no workflow run {run_id!r} in {self.path} (create_run first); {_LIST_HINT}"
            )

    def _write(
        self, fn: Callable[[Connection], None], what: str, *, ids: tuple[str, ...] | list[str] = ()
    ) -> None:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retrying while the file is locked."""

        def attempt() -> None:
            with self.traces.connect(immediate=True) as conn, conn.begin():
                fn(conn)

        self._retrying(attempt, what, ids)

    def _read(self, fn: Callable[[Connection], _T], what: str) -> _T:
        def attempt() -> _T:
            with self.traces.connect() as conn, conn.begin():
                return fn(conn)

        return self._retrying(attempt, what, ())

    def _retrying(
        self, attempt: Callable[[], _T], what: str, ids: tuple[str, ...] | list[str]
    ) -> _T:
        if self._closed:
            raise WorkflowError(f"cannot {what}: the workflow store of {self.path} is closed")
        deadline = time.monotonic() + self.commit_timeout_s
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except (sqlite3.Error, SQLAlchemyError) as e:
                locked = is_transient_lock_error(e)
                left = deadline - time.monotonic()
                if locked and left > 0:
                    time.sleep(min(left, _backoff(tries)))
                    continue
                detail = getattr(e, "orig", None) or e
                if locked:
                    raise WorkflowError(
                        f"cannot {what}: the traces database {self.path} stayed locked by another "
                        f"connection for commit_timeout_s={self.commit_timeout_s:g} s ({tries} "
                        "tries; nothing was written). Find the process holding it (another "
                        "counterpoint, a `sqlite3` shell in a transaction) and stop it, or raise "
                        "commit_timeout_s; then resume the run.",
                        ids=ids,
                    ) from e
                raise WorkflowError(
                    f"cannot {what} in the traces database {self.path} ({detail}; nothing was "
                    "written). Check the file and its folder are writable, or pass another file "
                    "with --db or COUNTERPOINT_TRACES_DB.",
                    ids=ids,
                ) from e


def _outcome(row: RowMapping) -> TaskOutcome:
    # a "running" row (started, never committed) is reported with that status as it stands
    return TaskOutcome(
        task_id=str(row["task_id"]),
        status=cast(TaskStatus, row["status"]),
        result=row["result"],
        error=row["error"],
        attempts=int(row["attempts"]),
        started=row["started"],
        ended=row["ended"],
        agent_run_id=row["agent_run_id"],
    )


def _json_copy(value: _T, what: str) -> _T:
    """A deep copy through JSON (so the row holds what a reader gets back), or a clear error."""
    try:
        return cast(_T, json.loads(json.dumps(value)))
    except (TypeError, ValueError) as e:
        raise WorkflowError(f"the workflow's {what} must be JSON-serialisable: {e}") from None
