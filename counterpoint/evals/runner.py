"""The BFCL eval runner: every case of some categories, in some modes, through an Agent.

For each (case, mode) the runner builds the case's simulated tools (:mod:`.simulate`), runs an
:class:`~counterpoint.agents.agent.Agent` on the case's question in that mode, checks every call the
model wrote with :func:`~counterpoint.evals.checker.check_calls`, and records the verdict, the
failure reason, the calls (and whether each ran and succeeded), the end-to-end latency from the
first generated token to the last, tokens in and out, and the tokens spent on CML markup, in the
``eval_results`` table of the traces database. The agent's run is the case's trace: its run id is
in the result, and its ``parent_run_id`` is the eval run's id.

The calls judged are every well-formed call block the model wrote, re-read from its tokens: calls
the executor rejected (unknown tool, invalid arguments) count, and so do calls still in flight or
never dispatched when the run hit its token limit. Blocks the runtime refused as markup (no
``[END]``, an id used twice, a body that is not a call) are not calls.

Each case is committed the moment it ends. Cancelling the run (Ctrl-C) keeps every finished case
and marks the eval run ``interrupted``; :func:`resume_bfcl` continues it without redoing a case.

Errors: a case whose run fails is judged by what failed (:func:`backend_failed`). An error of
the case itself (its prompt overflows the model's context, the model breaks the protocol, the
server refuses this one request with a 400, a bug) is that case's result: incorrect, status
``error``, the error as the failure reason, and the eval goes on. An error that says the backend
is failing stops the eval at once, before that case is recorded: a :class:`BackendError` with no
HTTP answer (connection refused, timed out or dropped, a stream cut off or failing) or with 401,
403, 404, 408, 409, 429 or 5xx. The HTTP client has already retried the transient ones (the
model's ``max_retries``), so every later case would fail the same way; the eval run is marked
``error`` and :func:`resume_bfcl` redoes that case once the server is back.

Multi-turn questions: by default the model sees every turn's messages, in order, in one
conversation (``turns="all"``); ``turns="first"`` keeps only the first turn. The development
categories have a single turn. A case's own system messages are appended to the agent's
instructions (its system prompt, which also teaches the protocol and lists the tools).

Example::

    tracer = SQLiteTracer("/tmp/evals.db")
    config = EvalConfig(categories=("parallel",), modes=("sync", "async"), model="scripted-oracle",
                        limit=5, latency_scale=0.05)
    outcome = await run_bfcl(config, tracer)
    print(outcome.run_id, sum(r.correct for r in outcome.results))
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlmodel import select

from counterpoint.agents.agent import Agent
from counterpoint.core.bus import EventBus
from counterpoint.errors import ConfigError, CounterpointError
from counterpoint.evals._calls import CallCollector, protocol_tokens
from counterpoint.evals._models import SCRIPTED_MODELS, CaseModels, case_models
from counterpoint.evals.checker import check_calls
from counterpoint.evals.datasets import (
    ACCEPTANCE_CATEGORIES,
    DEVELOPMENT_CATEGORIES,
    IRRELEVANCE_CATEGORIES,
    BFCLCase,
    is_held_back,
    load_category,
)
from counterpoint.evals.simulate import case_toolset
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.openai import BackendError
from counterpoint.runtime.session import MODES, Limits, Mode
from counterpoint.runtime.tracing import (
    AmbiguousRunError,
    EvalResultRecord,
    EvalRunRecord,
    SpanKind,
    SpanStatus,
    SQLiteTracer,
    UnknownRunError,
)
from counterpoint.runtime.tracing.query import starts_with
from counterpoint.runtime.tracing.store import TraceStore

__all__ = [
    "ALL",
    "BACKEND_FAILURE_STATUSES",
    "KNOWN_CATEGORIES",
    "CaseResult",
    "EvalConfig",
    "EvalOutcome",
    "EvalPlan",
    "EvalStatus",
    "backend_failed",
    "expand_categories",
    "expand_modes",
    "find_eval_run",
    "resume_bfcl",
    "run_bfcl",
]

ALL = "all"
"""Given as a category: every development category; as a mode: every mode."""

KNOWN_CATEGORIES: tuple[str, ...] = (
    DEVELOPMENT_CATEGORIES + ACCEPTANCE_CATEGORIES + IRRELEVANCE_CATEGORIES
)

EvalStatus = Literal["running", "done", "interrupted", "error"]

INSTRUCTIONS = (
    "You are an expert at calling functions. Answer the user's request by calling the functions "
    "listed below: make every call the request needs, and no other, with literal argument values "
    "taken from the request. If no function fits, do not call any. When the results are in, "
    "answer in one short sentence."
)
"""The eval agent's instructions (the protocol and the tools follow them in the system prompt)."""

BACKEND_FAILURE_STATUSES = frozenset({401, 403, 404, 408, 409, 429})
"""HTTP statuses (besides 5xx) after which no case can succeed: bad key, no such endpoint or
model, a server that stays overloaded or rate-limited once the client's retries are spent."""


def backend_failed(error: BaseException) -> bool:
    """True when ``error``, raised while running one case, says the backend itself is failing
    (stop the eval), False when it is that case's own failure (record it, go on).

    The backend is failing when a :class:`BackendError` has no HTTP answer (the server could not
    be reached, timed out, dropped the connection or the stream, or failed while streaming) or
    answered with one of :data:`BACKEND_FAILURE_STATUSES` or a 5xx. Any other error, including
    other :class:`CounterpointError` s (a prompt past the model's context, a protocol error, a 400
    for this request), belongs to the case.
    """
    if not isinstance(error, BackendError):
        return False
    status = error.status_code
    return status is None or status >= 500 or status in BACKEND_FAILURE_STATUSES


def _expand(
    values: Sequence[str], known: Sequence[str], everything: Sequence[str], what: str
) -> list[str]:
    """Names as given (``all`` = ``everything``), each checked against ``known``, no repeats."""
    out: list[str] = []
    for value in values or (ALL,):
        for name in everything if value == ALL else (value,):
            if name not in known:
                raise ConfigError(
                    f"unknown {what} {name!r}: choose from {', '.join(known)} or {ALL!r}"
                )
            if name not in out:
                out.append(name)
    return out


def expand_categories(values: Sequence[str]) -> tuple[str, ...]:
    """Categories as given (``all`` = the development ones), checked, without repeats."""
    return tuple(_expand(values, KNOWN_CATEGORIES, DEVELOPMENT_CATEGORIES, "BFCL category"))


def expand_modes(values: Sequence[str]) -> tuple[Mode, ...]:
    """Modes as given (``all`` = sync, parallel, async), checked, without repeats."""
    names = _expand(values, MODES, MODES, "mode")
    return tuple(m for name in names for m in MODES if m == name)


@dataclass(frozen=True)
class EvalConfig:
    """What an eval run runs. Stored with the run, so that it can be resumed.

    Attributes:
        categories: BFCL categories (``all`` expands to the development ones).
        modes: calling modes (``all`` expands to sync, parallel, async).
        model: ``embedded``, a local path or hub id, ``openai:NAME``, ``scripted-oracle`` or
            ``scripted-perturbed``.
        base_url: the server of an ``openai:`` model.
        limit: the first ``limit`` cases of each category (None: all).
        max_tokens: the most tokens the model may generate per case.
        latency_scale: multiplies every simulated tool latency (and a scripted model's token time).
        data_dir: the BFCL data folder (None: the installed ``bfcl-eval``).
        turns: ``all`` turns of a multi-turn question in order, or only the ``first``.
        constrained: grammar-constrained call blocks on the local backend (False: the raw
            model writes every token itself).
        adapter: a LoRA adapter folder merged into the local model (None: the project's CML
            adapter on the embedded model, none on others; ``"none"``: the base model).
        call_threshold: the local backend opens a call block only where the model gives it at
            least this probability (:attr:`SamplingParams.call_threshold`; 0: plain greedy).
    """

    categories: tuple[str, ...] = DEVELOPMENT_CATEGORIES
    modes: tuple[Mode, ...] = MODES
    model: str = "embedded"
    base_url: str | None = None
    limit: int | None = None
    max_tokens: int = 256
    latency_scale: float = 1.0
    data_dir: str | None = None
    turns: Literal["all", "first"] = "all"
    constrained: bool = True
    adapter: str | None = None
    call_threshold: float = SamplingParams().call_threshold

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", expand_categories(self.categories))
        object.__setattr__(self, "modes", expand_modes(self.modes))
        if not self.model:
            raise ConfigError("the model is empty: pass --model embedded, a path, or openai:NAME")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"--limit must be 0 or more, got {self.limit}")
        if self.max_tokens < 1:
            raise ConfigError(f"--max-tokens must be 1 or more, got {self.max_tokens}")
        if not self.latency_scale >= 0:
            raise ConfigError(f"--latency-scale must be 0 or more, got {self.latency_scale}")
        if not 0.0 <= self.call_threshold < 1.0:
            raise ConfigError(
                f"--call-threshold must be at least 0 and below 1, got {self.call_threshold}"
            )
        if self.turns not in ("all", "first"):
            raise ConfigError(f"turns must be 'all' or 'first', got {self.turns!r}")

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-able data (what the eval run stores)."""
        data = dataclasses.asdict(self)
        data["categories"] = list(self.categories)
        data["modes"] = list(self.modes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalConfig:
        """The config an eval run stored (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs.setdefault("call_threshold", 0.0)  # stored before it existed: plain greedy
        for key in ("categories", "modes"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @property
    def held_back(self) -> tuple[str, ...]:
        """The categories held back for acceptance among those to run."""
        return tuple(c for c in self.categories if is_held_back(c))


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case in one mode (what is recorded in ``eval_results``)."""

    eval_run_id: str
    case_id: str
    category: str
    mode: Mode
    model: str
    correct: bool
    failure_reason: str | None
    calls: list[dict[str, Any]]
    latency_s: float
    input_tokens: int
    output_tokens: int
    protocol_tokens: float
    status: str
    run_id: str
    wall_s: float
    generated: str = ""
    protocol_violations: int = 0
    """Protocol violations the model made (malformed blocks, forged markers)."""


@dataclass(frozen=True)
class EvalPlan:
    """What a run is about to do: ``jobs`` (case, mode) pairs, of which ``done`` already ran."""

    run_id: str
    config: EvalConfig
    model: str
    jobs: tuple[tuple[BFCLCase, Mode], ...]
    done: int
    resumed: bool

    @property
    def total(self) -> int:
        """Every (case, mode) pair of the run, finished or not."""
        return len(self.jobs) + self.done


@dataclass
class EvalOutcome:
    """How a call of :func:`run_bfcl` / :func:`resume_bfcl` ended."""

    run_id: str
    status: EvalStatus
    plan: EvalPlan
    results: list[CaseResult] = field(default_factory=list)


_KEEP_GENERATED = 4000
"""Characters of the model's own output kept with each result (to read why a case failed)."""


def _now() -> float:
    return time.time()


class _Run:
    """One execution of an eval run (a fresh start or a resume)."""

    def __init__(
        self,
        record: EvalRunRecord,
        config: EvalConfig,
        tracer: SQLiteTracer,
        models: CaseModels,
        concurrency: int,
        on_result: Callable[[CaseResult], None] | None,
    ) -> None:
        self.record = record
        self.config = config
        self.tracer = tracer
        self.models = models
        self.concurrency = concurrency
        self.on_result = on_result
        self.results: list[CaseResult] = []

    def _save(self, status: EvalStatus, **attributes: Any) -> None:
        self.record.status = status
        if status != "running":
            self.record.ended_at = _now()
        self.record.attributes = {**self.record.attributes, **attributes}
        self.tracer.record_eval_run(self.record)

    async def execute(self, plan: EvalPlan) -> EvalOutcome:
        jobs: Iterator[tuple[BFCLCase, Mode]] = iter(plan.jobs)

        async def worker() -> None:
            for case, mode in jobs:  # one shared iterator: each job is taken once
                await self._one(case, mode)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, min(self.concurrency, len(plan.jobs)))):
                    group.create_task(worker())
        except asyncio.CancelledError:
            self._save("interrupted")
            self.tracer.flush()
            raise
        except BaseExceptionGroup as failure:
            error = failure.exceptions[0]
            self._save("error", error=f"{type(error).__name__}: {error}")
            self.tracer.flush()
            raise error from None
        except BaseException as error:  # KeyboardInterrupt in a worker thread, SystemExit
            self._save("interrupted", error=type(error).__name__)
            self.tracer.flush()
            raise
        self._save("done")
        await self.tracer.aflush()
        return EvalOutcome(self.record.id, "done", plan, self.results)

    async def _one(self, case: BFCLCase, mode: Mode) -> None:
        config = self.config
        tools = case_toolset(
            case, latency_scale=config.latency_scale, flat_names=self.models.flat_names
        )
        collector = CallCollector()
        bus = EventBus()  # the case's run: the tracer and the collector read the same events
        bus.subscribe(self.tracer)
        bus.subscribe(collector)
        system, prompt = _split_system(_question(case, config.turns))
        instructions = "\n\n".join([INSTRUCTIONS, *system])
        agent = Agent(
            name=f"bfcl/{case.id}",
            instructions=instructions,
            tools=tools,
            model=self.models.for_case(case, mode, tools),
            mode=mode,
            params=SamplingParams(
                max_tokens=config.max_tokens, call_threshold=config.call_threshold
            ),
            limits=Limits(max_tokens=config.max_tokens),
            tracer=False,
        )
        status: str
        error: str | None = None
        try:
            run = await agent.run(prompt, parent_run_id=self.record.id, bus=bus)
        except Exception as exc:
            if backend_failed(exc):
                raise  # a dead or refusing server: stop the eval (resume it once fixed)
            # this case's own failure (too long a prompt, a protocol error, a bug): judge it
            # failed, go on
            error = f"{type(exc).__name__}: {exc}"
            status, run_id, latency, wall, tokens_in, tokens_out = "error", "", 0.0, 0.0, 0, 0
        else:
            status, run_id, latency, wall = run.status, run.run_id, run.latency_s, run.wall_s
            tokens_in, tokens_out = run.usage.input_tokens, run.usage.output_tokens
        written = collector.calls
        verdict = check_calls(case, [w.call for w in written])
        reason = verdict.reason
        if error is not None:
            reason = f"the run failed: {error}"
        elif not verdict.correct and collector.rejected_blocks and not written:
            reason = f"{reason}; refused call blocks: {collector.rejected_blocks[0]}"
        if not verdict.correct and status == "limit":
            reason = f"{reason} (hit the {config.max_tokens}-token limit)"
        result = CaseResult(
            eval_run_id=self.record.id,
            case_id=case.id,
            category=case.category,
            mode=mode,
            model=self.models.name,
            correct=verdict.correct and error is None,
            failure_reason=None if verdict.correct and error is None else reason,
            calls=[w.as_json() for w in written],
            latency_s=latency,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            protocol_tokens=protocol_tokens(collector.generated),
            status=status,
            run_id=run_id,
            wall_s=wall,
            generated="".join(collector.generated),
            protocol_violations=collector.protocol_errors,
        )
        self._record(result)
        await self.tracer.aflush()  # committed: an interruption from here on keeps this case
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def _record(self, r: CaseResult) -> None:
        attributes = {
            "status": r.status,
            "protocol_tokens": r.protocol_tokens,
            "protocol_violations": r.protocol_violations,
            "wall_s": r.wall_s,
            "max_tokens": self.config.max_tokens,
            "latency_scale": self.config.latency_scale,
            "generated": r.generated[:_KEEP_GENERATED],
        }
        if r.run_id:
            self.tracer.span(
                r.run_id,
                SpanKind.EVAL_CASE,
                r.case_id,
                0.0,
                r.wall_s,
                attributes={
                    "counterpoint.eval.run_id": r.eval_run_id,
                    "counterpoint.eval.category": r.category,
                    "counterpoint.eval.mode": r.mode,
                    "counterpoint.eval.correct": r.correct,
                    "counterpoint.eval.failure_reason": r.failure_reason,
                },
                status=SpanStatus.OK if r.correct else SpanStatus.ERROR,
            )
        self.tracer.record_eval_result(
            EvalResultRecord(
                eval_run_id=r.eval_run_id,
                case_id=r.case_id,
                category=r.category,
                mode=r.mode,
                model=r.model,
                correct=r.correct,
                failure_reason=r.failure_reason,
                calls=r.calls,
                latency_s=r.latency_s,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                run_id=r.run_id or None,
                created_at=_now(),
                attributes=attributes,
            )
        )


def _question(case: BFCLCase, turns: Literal["all", "first"]) -> list[Message]:
    chosen = case.question[:1] if turns == "first" else case.question
    return [m for turn in chosen for m in turn]


def _split_system(messages: list[Message]) -> tuple[list[str], list[Message]]:
    """A case's system messages (for the instructions) and the rest (the prompt)."""
    system = [m.content for m in messages if m.role == "system" and m.content.strip()]
    return system, [m for m in messages if m.role != "system"]


def _load_jobs(config: EvalConfig) -> list[tuple[BFCLCase, Mode]]:
    """Every (case, mode) pair: category by category, case by case, each case in every mode
    (so that an interrupted run leaves complete pairs for the speedup comparison)."""
    jobs: list[tuple[BFCLCase, Mode]] = []
    for category in config.categories:
        for case in load_category(category, data_dir=config.data_dir, limit=config.limit):
            jobs.extend((case, mode) for mode in config.modes)
    return jobs


def _done_keys(store: TraceStore, eval_run_id: str) -> set[tuple[str, str, str]]:
    stmt = select(EvalResultRecord.category, EvalResultRecord.case_id, EvalResultRecord.mode).where(
        EvalResultRecord.eval_run_id == eval_run_id
    )
    with store.session() as session:
        return {(c, i, m) for c, i, m in session.exec(stmt).all()}


def find_eval_run(store: TraceStore, run: str) -> EvalRunRecord:
    """The eval run with id ``run`` or the only one whose id starts with it."""
    if not run:
        raise UnknownRunError("give an eval run id (see `counterpoint eval report`)")
    with store.session() as session:
        exact = session.get(EvalRunRecord, run)
        if exact is not None:
            return exact
        stmt = select(EvalRunRecord).where(starts_with(EvalRunRecord.id, run)).limit(2)
        found = list(session.exec(stmt).all())
    if not found:
        raise UnknownRunError(f"no eval run has an id starting with {run!r} in {store.path}")
    if len(found) > 1:
        raise AmbiguousRunError(f"several eval runs start with {run!r}: give more of the id")
    return found[0]


async def _execute(
    plan: EvalPlan,
    record: EvalRunRecord,
    tracer: SQLiteTracer,
    models: CaseModels,
    *,
    concurrency: int,
    on_plan: Callable[[EvalPlan], None] | None,
    on_result: Callable[[CaseResult], None] | None,
) -> EvalOutcome:
    run = _Run(record, plan.config, tracer, models, concurrency, on_result)
    try:
        run._save("running", concurrency=concurrency)
        await tracer.aflush()
        if on_plan is not None:
            on_plan(plan)
        return await run.execute(plan)
    finally:
        await models.aclose()


def _check_concurrency(concurrency: int) -> None:
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be 1 or more, got {concurrency}")


async def run_bfcl(
    config: EvalConfig,
    tracer: SQLiteTracer,
    *,
    concurrency: int = 1,
    on_plan: Callable[[EvalPlan], None] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
    models: CaseModels | None = None,
) -> EvalOutcome:
    """Start an eval run and run it to the end (or until cancelled).

    ``concurrency`` cases run at once (on a local model their sessions share the model and
    interleave, which slows each one: keep 1 for latency measurements). ``on_plan`` is called once
    the cases are loaded and the run is recorded; ``on_result`` after each case is committed.
    ``models`` replaces the model ``config.model`` names (for tests). Raises
    :class:`CounterpointError` for a bad config, missing data or an unusable model, before
    anything is recorded.
    """
    _check_concurrency(concurrency)
    jobs = _load_jobs(config)
    source = models or case_models(
        config.model,
        base_url=config.base_url,
        latency_scale=config.latency_scale,
        constrained=config.constrained,
        adapter=config.adapter,
    )
    record = EvalRunRecord(
        id=uuid.uuid4().hex,
        name="bfcl",
        dataset="bfcl",
        model=source.name,
        categories=list(config.categories),
        modes=list(config.modes),
        status="running",
        n_cases=len(jobs),
        started_at=_now(),
        config=config.to_json(),
        attributes={"turns": config.turns, "scripted": config.model in SCRIPTED_MODELS},
    )
    plan = EvalPlan(record.id, config, source.name, tuple(jobs), 0, resumed=False)
    return await _execute(
        plan,
        record,
        tracer,
        source,
        concurrency=concurrency,
        on_plan=on_plan,
        on_result=on_result,
    )


async def resume_bfcl(
    run: str,
    tracer: SQLiteTracer,
    *,
    concurrency: int = 1,
    on_plan: Callable[[EvalPlan], None] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
    models: CaseModels | None = None,
    base_url: str | None = None,
) -> EvalOutcome:
    """Continue the eval run ``run`` (an id or a unique prefix) with its stored config, running
    only the (case, mode) pairs that have no result yet. ``base_url`` replaces the stored server
    address of an ``openai:`` model (a server restarted elsewhere)."""
    _check_concurrency(concurrency)
    record = find_eval_run(tracer.store, run)
    try:
        config = EvalConfig.from_json(dict(record.config))
        if base_url is not None:
            config = dataclasses.replace(config, base_url=base_url)
    except (TypeError, CounterpointError) as exc:
        raise ConfigError(
            f"eval run {record.id} has no usable stored config ({exc}); start a new run"
        ) from None
    done = _done_keys(tracer.store, record.id)
    jobs = [(c, m) for c, m in _load_jobs(config) if (c.category, c.id, m) not in done]
    source = models or case_models(
        config.model,
        base_url=config.base_url,
        latency_scale=config.latency_scale,
        constrained=config.constrained,
        adapter=config.adapter,
    )
    resumes = [*record.attributes.get("resumed_at", []), _now()]
    record.attributes = {**record.attributes, "resumed_at": resumes}
    record.ended_at = None
    plan = EvalPlan(record.id, config, source.name, tuple(jobs), len(done), resumed=True)
    return await _execute(
        plan,
        record,
        tracer,
        source,
        concurrency=concurrency,
        on_plan=on_plan,
        on_result=on_result,
    )
