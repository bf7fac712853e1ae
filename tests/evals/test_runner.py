"""Tests for counterpoint.evals.runner: BFCL cases through an agent, recorded in SQLite.

Scripted models keep these fast: ``scripted-oracle`` writes each case's oracle calls in CML and
must score 100% in every mode; ``scripted-perturbed`` changes one value and must fail every case.
Simulated latencies are scaled down (x0.05) except where a test compares modes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from counterpoint.errors import ConfigError, CounterpointError, ProtocolError
from counterpoint.evals._models import ORACLE, PERTURBED, case_models
from counterpoint.evals.checker import oracle_calls
from counterpoint.evals.datasets import DEVELOPMENT_CATEGORIES, BFCLCase, load_category
from counterpoint.evals.runner import (
    CaseResult,
    EvalConfig,
    expand_categories,
    expand_modes,
    find_eval_run,
    resume_bfcl,
    run_bfcl,
)
from counterpoint.evals.simulate import case_toolset
from counterpoint.runtime.backends._http import BackendError
from counterpoint.runtime.backends._sse import StreamInterrupted
from counterpoint.runtime.backends.base import Model, SamplingParams
from counterpoint.runtime.session import Mode
from counterpoint.runtime.tracing import (
    EvalResultRecord,
    SpanKind,
    SQLiteTracer,
    TraceStore,
    UnknownRunError,
    query,
)
from counterpoint.testing.scripted import ScriptedModel
from counterpoint.tools.toolset import Toolset

FAST = 0.05


@pytest.fixture
def tracer(tmp_path: Path) -> Iterator[SQLiteTracer]:
    with SQLiteTracer(tmp_path / "traces.db") as t:
        yield t


def _config(**kwargs: Any) -> EvalConfig:
    base: dict[str, Any] = {"model": ORACLE, "latency_scale": FAST, "limit": 2}
    return EvalConfig(**{**base, **kwargs})


# -- configuration ---------------------------------------------------------------------------


def test_all_expands_to_the_development_categories_and_every_mode() -> None:
    assert expand_categories(["all"]) == DEVELOPMENT_CATEGORIES
    assert expand_categories(["parallel", "all"])[0] == "parallel"
    assert expand_categories([]) == DEVELOPMENT_CATEGORIES
    assert expand_modes(["all"]) == ("sync", "parallel", "async")
    assert expand_modes(["async", "async", "sync"]) == ("async", "sync")


def test_unknown_categories_and_modes_are_config_errors_that_list_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown BFCL category 'paralel'.*parallel_multiple"):
        EvalConfig(categories=("paralel",))
    with pytest.raises(ConfigError, match=r"unknown mode 'fast'.*sync, parallel, async"):
        EvalConfig(modes=("fast",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--limit"):
        EvalConfig(limit=-1)
    with pytest.raises(ConfigError, match="--latency-scale"):
        EvalConfig(latency_scale=-0.5)


def test_held_back_categories_are_named_without_loading_them() -> None:
    assert EvalConfig(categories=("parallel", "live_simple")).held_back == ("live_simple",)
    assert EvalConfig(categories=("all",)).held_back == ()


def test_the_config_round_trips_through_json() -> None:
    config = _config(categories=("parallel",), modes=("async",), max_tokens=99)
    data = json.loads(json.dumps(config.to_json()))
    assert EvalConfig.from_json(data) == config


# -- the oracle and the perturbed oracle -----------------------------------------------------


async def test_the_oracle_scores_100_percent_in_every_category_and_mode(
    tracer: SQLiteTracer,
) -> None:
    seen: list[CaseResult] = []
    outcome = await run_bfcl(_config(limit=3), tracer, on_result=seen.append)
    assert outcome.status == "done"
    assert len(outcome.results) == len(seen) == 3 * 4 * 3
    wrong = [(r.case_id, r.mode, r.failure_reason) for r in outcome.results if not r.correct]
    assert wrong == []
    pairs = {(r.category, r.mode) for r in outcome.results}
    assert pairs == {(c, m) for c in DEVELOPMENT_CATEGORIES for m in ("sync", "parallel", "async")}

    # every case is recorded, linked to its trace run, which is parented to the eval run
    store = tracer.store
    rows = query.eval_results(store, outcome.run_id)
    assert len(rows) == 36
    record = query.get_eval_run(store, outcome.run_id)
    assert record.status == "done" and record.model == ORACLE and record.n_cases == 36
    for row in rows:
        assert row.correct and row.failure_reason is None
        assert row.model == ORACLE
        assert row.latency_s > 0 and row.output_tokens > 0 and row.input_tokens > 0
        assert row.attributes["protocol_tokens"] > 0
        assert row.calls and all(c["ran"] and c["ok"] for c in row.calls)
        assert row.run_id is not None
        run = query.get_run(store, row.run_id)
        assert run.parent_run_id == outcome.run_id and run.mode == row.mode
        kinds = {s.kind for s in query.spans_of(store, row.run_id)}
        assert {SpanKind.EVAL_CASE.value, SpanKind.TOOL_CALL.value} <= kinds


async def test_the_recorded_calls_are_the_oracle_calls(tracer: SQLiteTracer) -> None:
    outcome = await run_bfcl(_config(categories=("parallel",), modes=("async",)), tracer)
    cases = {c.id: c for c in load_category("parallel", limit=2)}
    for result in outcome.results:
        made = sorted(json.dumps([c["name"], c["arguments"]]) for c in result.calls)
        expected = sorted(json.dumps(list(call)) for call in oracle_calls(cases[result.case_id]))
        assert made == expected


async def test_a_perturbed_model_fails_every_case_with_a_reason(tracer: SQLiteTracer) -> None:
    outcome = await run_bfcl(_config(model=PERTURBED), tracer)
    assert len(outcome.results) == 2 * 4 * 3
    for r in outcome.results:
        assert not r.correct, r.case_id
        assert r.failure_reason, r.case_id
    reasons = {r.case_id: r.failure_reason for r in outcome.results}
    # simple_python_0 calls calculate_triangle_area(base=10, height=5): base is changed
    assert reasons["simple_python_0"] == "calculate_triangle_area: base = 7929 is not one of [10]"


async def test_async_beats_sync_on_parallel_cases(tracer: SQLiteTracer) -> None:
    """With real-size latencies (x1), the same script finishes sooner when calls overlap."""
    config = _config(categories=("parallel",), modes=("sync", "async"), latency_scale=1.0)
    outcome = await run_bfcl(config, tracer)
    total = {m: sum(r.latency_s for r in outcome.results if r.mode == m) for m in config.modes}
    assert all(r.correct for r in outcome.results)
    assert total["async"] < total["sync"]


async def test_concurrent_cases_each_run_once(tracer: SQLiteTracer) -> None:
    config = _config(categories=("parallel", "multiple"), limit=3)
    outcome = await run_bfcl(config, tracer, concurrency=4)
    keys = [(r.category, r.case_id, r.mode) for r in outcome.results]
    assert len(keys) == len(set(keys)) == 2 * 3 * 3
    assert all(r.correct for r in outcome.results)
    assert query.get_eval_run(tracer.store, outcome.run_id).attributes["concurrency"] == 4


# -- calls the executor never ran still count ------------------------------------------------


class _FixedScript:
    """A CaseModels source whose model writes a fixed script for every case."""

    flat_names = False

    def __init__(self, script: Sequence[str] | str, name: str = "scripted-fixed") -> None:
        self.script = script
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def for_case(self, case: BFCLCase, mode: Mode, tools: Toolset) -> Model:
        return ScriptedModel(self.script, name=self._name)

    async def aclose(self) -> None:
        pass


async def test_calls_the_executor_rejected_are_judged_as_written(tracer: SQLiteTracer) -> None:
    # simple_python_1: math.factorial(number=5); the model passes a string, which the tool's
    # schema rejects before running; the checker still judges the call the model wrote
    script = '[CALL] c1 [HEAD] math.factorial(number="five") [END]\n[TRAP][END]\nDone.'
    config = _config(categories=("simple_python",), modes=("async",))
    outcome = await run_bfcl(config, tracer, models=_FixedScript(script))
    result = next(r for r in outcome.results if r.case_id == "simple_python_1")
    assert not result.correct
    assert result.failure_reason is not None and "number" in result.failure_reason
    (call,) = result.calls
    assert call["name"] == "math.factorial" and call["arguments"] == {"number": "five"}
    assert call["ran"] is False and call["ok"] is False and "number" in call["error"]


async def test_calls_a_token_limit_left_unrun_still_count(tracer: SQLiteTracer) -> None:
    # parallel mode runs a turn's calls at its end; a model that writes the right call and then
    # rambles into the token limit never reaches that end, but it did write the right call
    case = load_category("simple_python", limit=1)[0]
    ((name, arguments),) = oracle_calls(case)
    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in arguments.items())
    script = f"[CALL] c1 [HEAD] {name}({args}) [END]\n" + "and so on " * 200
    config = _config(categories=("simple_python",), modes=("parallel",), limit=1, max_tokens=60)
    outcome = await run_bfcl(config, tracer, models=_FixedScript(script))
    (result,) = outcome.results
    assert result.status == "limit"
    assert result.output_tokens == 60
    assert result.correct, result.failure_reason
    assert [c["ran"] for c in result.calls] == [False]


async def test_bad_call_syntax_is_named_in_the_reason(tracer: SQLiteTracer) -> None:
    script = "[CALL] c1 [HEAD] calculate_triangle_area(base: 10) [END]\nDone."
    config = _config(categories=("simple_python",), modes=("sync",), limit=1)
    outcome = await run_bfcl(config, tracer, models=_FixedScript(script))
    (result,) = outcome.results
    assert not result.correct and result.calls == []
    assert result.failure_reason is not None
    assert result.failure_reason.startswith("expected 1 call (calculate_triangle_area), got 0")
    assert "refused call blocks" in result.failure_reason


# -- errors: a case's own, or the backend's --------------------------------------------------

OVERFLOW = (
    "the context would grow to 9000 tokens, past the 8192 that 'tiny' supports: shorten the "
    "prompt or the injected results, or start a new generation"
)


class _StartFails(ScriptedModel):
    """A model whose every generation fails to start with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__("Done.", name="scripted-fixed")
        self.error = error

    async def start(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class _FailsOn(_FixedScript):
    """Writes ``script`` for every case but those in ``failing``, which fail with ``error``."""

    def __init__(self, script: str, failing: set[str], error: Exception) -> None:
        super().__init__(script)
        self.failing = failing
        self.error = error

    def for_case(self, case: BFCLCase, mode: Mode, tools: Toolset) -> Model:
        if case.id in self.failing:
            return _StartFails(self.error)
        return super().for_case(case, mode, tools)


@pytest.mark.parametrize(
    "error",
    [
        CounterpointError(OVERFLOW),  # the transformers backend: the prompt is too long
        ProtocolError("the model broke the protocol"),
        BackendError("http://x/v1 answered 400 Bad Request: too long", url="u", status_code=400),
    ],
    ids=["context-overflow", "protocol", "http-400"],
)
async def test_a_case_that_fails_is_that_cases_result_and_the_eval_goes_on(
    tracer: SQLiteTracer, error: Exception
) -> None:
    script = "[CALL] c1 [HEAD] math.factorial(number=5) [END]\n[TRAP][END]\nDone."
    source = _FailsOn(script, {"simple_python_0"}, error)
    config = _config(categories=("simple_python",), modes=("sync", "async"))
    outcome = await run_bfcl(config, tracer, models=source)
    assert outcome.status == "done"
    by_case = {(r.case_id, r.mode): r for r in outcome.results}
    assert len(by_case) == 4
    for mode in ("sync", "async"):
        failed = by_case["simple_python_0", mode]
        assert not failed.correct and failed.status == "error" and failed.run_id == ""
        assert failed.failure_reason == f"the run failed: {type(error).__name__}: {error}"
        assert by_case["simple_python_1", mode].correct  # the next case ran, and passed
    rows = {(r.case_id, r.mode): r for r in query.eval_results(tracer.store, outcome.run_id)}
    assert len(rows) == 4 and not rows["simple_python_0", "sync"].correct
    assert str(error) in (rows["simple_python_0", "sync"].failure_reason or "")
    assert query.get_eval_run(tracer.store, outcome.run_id).status == "done"


@pytest.mark.parametrize(
    "error",
    [
        BackendError("http://x/v1: cannot connect (is the server running?)", url="u"),
        StreamInterrupted("http://x/v1 dropped the stream", url="u"),
        BackendError("http://x/v1 answered 401 Unauthorized: bad key", url="u", status_code=401),
        BackendError("http://x/v1 answered 503 Service Unavailable", url="u", status_code=503),
    ],
    ids=["connect", "dropped", "http-401", "http-503"],
)
async def test_a_failing_backend_stops_the_eval_and_resume_redoes_the_case(
    tracer: SQLiteTracer, error: Exception
) -> None:
    script = "[CALL] c1 [HEAD] math.factorial(number=5) [END]\n[TRAP][END]\nDone."
    config = _config(categories=("simple_python",), modes=("sync",))
    seen: list[CaseResult] = []
    with pytest.raises(type(error)) as caught:
        await run_bfcl(
            config,
            tracer,
            models=_FailsOn(script, {"simple_python_1"}, error),
            on_result=seen.append,
        )
    assert caught.value is error
    assert [r.case_id for r in seen] == ["simple_python_0"]  # the case before was kept
    run_id = seen[0].eval_run_id
    record = query.get_eval_run(tracer.store, run_id)
    assert record.status == "error" and str(error) in record.attributes["error"]
    assert [r.case_id for r in query.eval_results(tracer.store, run_id)] == ["simple_python_0"]

    outcome = await resume_bfcl(run_id, tracer, models=_FixedScript(script))  # the server is back
    assert outcome.status == "done" and [r.case_id for r in outcome.results] == ["simple_python_1"]
    assert outcome.results[0].correct


# -- interruption and resume -----------------------------------------------------------------


def _keys(rows: Sequence[EvalResultRecord]) -> list[tuple[str, str, str]]:
    return [(r.category, r.case_id, r.mode) for r in rows]


async def test_cancelling_keeps_finished_cases_and_resume_does_the_rest(
    tracer: SQLiteTracer,
) -> None:
    config = _config(categories=("simple_python", "parallel"), limit=3)
    finished: list[CaseResult] = []
    enough = asyncio.Event()

    def on_result(result: CaseResult) -> None:
        finished.append(result)
        if len(finished) >= 5:
            enough.set()

    task = asyncio.create_task(run_bfcl(config, tracer, on_result=on_result))
    await asyncio.wait_for(enough.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    run_id = finished[0].eval_run_id
    store = tracer.store
    kept = query.eval_results(store, run_id)
    assert _keys(kept) == [(r.category, r.case_id, r.mode) for r in finished]
    assert query.get_eval_run(store, run_id).status == "interrupted"

    resumed: list[CaseResult] = []
    outcome = await resume_bfcl(run_id[:8], tracer, on_result=resumed.append)
    assert outcome.run_id == run_id and outcome.status == "done"
    assert outcome.plan.done == len(finished)
    assert len(resumed) == 18 - len(finished)
    done_before = set(_keys(kept))
    assert not done_before & {(r.category, r.case_id, r.mode) for r in resumed}

    rows = query.eval_results(store, run_id)
    assert len(rows) == 18 and len(set(_keys(rows))) == 18
    assert all(r.correct for r in rows)
    assert query.get_eval_run(store, run_id).status == "done"

    again = await resume_bfcl(run_id, tracer)  # nothing left: nothing redone
    assert again.results == [] and again.plan.done == 18
    assert len(query.eval_results(store, run_id)) == 18


async def test_resume_keeps_the_stored_config(tracer: SQLiteTracer) -> None:
    config = _config(categories=("multiple",), modes=("sync",), limit=1, max_tokens=77)
    first = await run_bfcl(config, tracer)
    record = find_eval_run(tracer.store, first.run_id)
    assert EvalConfig.from_json(record.config) == config
    outcome = await resume_bfcl(first.run_id, tracer)
    assert outcome.plan.config == config


async def test_an_eval_run_prefix_takes_like_wildcards_literally(tracer: SQLiteTracer) -> None:
    config = _config(categories=("simple_python",), modes=("sync",), limit=1)
    run_id = (await run_bfcl(config, tracer)).run_id
    store = tracer.store
    assert find_eval_run(store, run_id[:6]).id == run_id
    for pattern in ("%", "_", "_" * 6, run_id[:3] + "%", "%" + run_id[-4:]):
        with pytest.raises(UnknownRunError, match="no eval run has an id starting with"):
            find_eval_run(store, pattern)


async def test_resuming_an_unknown_run_is_a_user_error(tracer: SQLiteTracer) -> None:
    with pytest.raises(UnknownRunError, match="nope"):
        await resume_bfcl("nope", tracer)


async def test_each_case_is_committed_when_it_ends(tmp_path: Path) -> None:
    """A second connection sees each result as soon as on_result reports it."""
    path = tmp_path / "traces.db"
    counts: list[tuple[int, int]] = []
    with SQLiteTracer(path) as tracer, TraceStore(path) as other:

        def on_result(result: CaseResult) -> None:
            stmt = select(EvalResultRecord).where(
                EvalResultRecord.eval_run_id == result.eval_run_id
            )
            with other.session() as session:
                counts.append((len(counts) + 1, len(session.exec(stmt).all())))

        config = _config(categories=("simple_python",), modes=("sync", "async"))
        await run_bfcl(config, tracer, on_result=on_result)
    assert counts == [(i, i) for i in range(1, 5)]


# -- multi-turn questions and case system messages -------------------------------------------


def _write_dataset(folder: Path) -> None:
    question = [
        [
            {"role": "system", "content": "Temperatures are in kelvin here."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        [{"role": "user", "content": "And in Rome?"}],
    ]
    function = [
        {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "dict",
                "properties": {"city": {"type": "string", "description": "The city."}},
                "required": ["city"],
            },
        }
    ]
    case = {"id": "simple_python_0", "question": question, "function": function}
    answer = {"id": "simple_python_0", "ground_truth": [{"get_weather": {"city": ["Paris"]}}]}
    (folder / "possible_answer").mkdir(parents=True)
    (folder / "BFCL_v3_simple_python.json").write_text(json.dumps(case) + "\n")
    (folder / "possible_answer" / "BFCL_v3_simple_python.json").write_text(
        json.dumps(answer) + "\n"
    )


class _Recording(_FixedScript):
    def __init__(self, script: str) -> None:
        super().__init__(script)
        self.models: list[ScriptedModel] = []

    def for_case(self, case: BFCLCase, mode: Mode, tools: Toolset) -> Model:
        model = ScriptedModel(self.script, name=self.name)
        self.models.append(model)
        return model


@pytest.mark.parametrize(("turns", "rome"), [("all", True), ("first", False)])
async def test_turns_and_system_messages_reach_the_model(
    tracer: SQLiteTracer, tmp_path: Path, turns: str, rome: bool
) -> None:
    _write_dataset(tmp_path / "data")
    source = _Recording('[CALL] c1 [HEAD] get_weather(city="Paris") [END]\n[TRAP][END]\nDone.')
    config = _config(
        categories=("simple_python",),
        modes=("sync",),
        data_dir=str(tmp_path / "data"),
        turns=turns,
    )
    outcome = await run_bfcl(config, tracer, models=source)
    assert [r.correct for r in outcome.results] == [True]
    prompt = source.models[0].decoders[0].prompt.text
    assert "What is the weather in Paris?" in prompt
    assert ("And in Rome?" in prompt) is rome
    # the case's system message joins the agent's system prompt, which keeps the tools
    system = prompt.split("<|user|>")[0]
    assert "Temperatures are in kelvin here." in system
    assert "get_weather(city: str)" in system


# -- model sources ---------------------------------------------------------------------------


async def test_openai_models_get_flat_tool_names() -> None:
    # The session hands the case's tools to the model and tells it whether results arrive
    # mid-stream (async mode: CML; sync/parallel: native tool calls): see test_openai.py.
    source = case_models("openai:some-model", base_url="http://127.0.0.1:9/v1")
    try:
        assert source.flat_names and source.name == "some-model"
        case = load_category("simple_python", limit=2)[1]  # math.factorial
        tools = case_toolset(case, flat_names=True)
        assert [spec.name for spec in tools.specs()] == ["math_factorial"]
        sync_model: Any = source.for_case(case, "sync", tools)
        assert sync_model.native_tools is True
    finally:
        await source.aclose()


def test_scripted_models_need_no_loading() -> None:
    assert case_models(ORACLE).name == ORACLE
    assert case_models(PERTURBED).name == PERTURBED


# -- the real model --------------------------------------------------------------------------


@pytest.mark.model
async def test_the_embedded_model_runs_a_case_end_to_end(tracer: SQLiteTracer) -> None:
    config = EvalConfig(
        categories=("simple_python",), modes=("async",), model="embedded", limit=1, max_tokens=16
    )
    outcome = await run_bfcl(config, tracer)
    (result,) = outcome.results
    assert 0 < result.output_tokens <= 16
    assert result.latency_s > 0 and result.input_tokens > 100
    assert result.correct or result.failure_reason
    assert result.model == "SmolLM2-135M-Instruct+cml"  # the shipped adapter, by default
    run = query.get_run(tracer.store, result.run_id)
    assert run.parent_run_id == outcome.run_id and run.output_tokens == result.output_tokens


# -- the call threshold ------------------------------------------------------------------------


def test_the_call_threshold_is_stored_with_the_run() -> None:
    config = _config(call_threshold=0.3)
    assert EvalConfig.from_json(config.to_json()).call_threshold == 0.3
    assert _config().call_threshold == SamplingParams().call_threshold == 0.5
    # a run stored before the threshold existed decoded plainly: resuming it keeps that
    assert EvalConfig.from_json({"categories": ["simple_python"]}).call_threshold == 0.0
    for bad in (-0.5, 1.0):
        with pytest.raises(ConfigError, match="--call-threshold"):
            _config(call_threshold=bad)


@pytest.mark.parametrize("threshold", [0.0, 0.7])
async def test_the_call_threshold_reaches_the_model(tracer: SQLiteTracer, threshold: float) -> None:
    source = _Recording("[CALL] c1 [HEAD] math.factorial(number=5) [END]\n[TRAP][END]\nDone.")
    config = _config(
        categories=("simple_python",), modes=("sync",), limit=1, call_threshold=threshold
    )
    await run_bfcl(config, tracer, models=source)
    (decoder,) = source.models[0].decoders
    assert decoder.params.call_threshold == threshold
