"""Scripted models for the workflow CLI tests, named on the command line as
``--model tests.agents.workflow._cli_models:NAME`` (the loader imports ``pkg.mod:attr`` specs).

Each answers a task's prompt by the task's id (``Your task (ID): ...`` in the prompt), so one
model serves every agent of a workflow:

- :func:`fast`: ``result of ID`` at once;
- :func:`slow`: the same, but a task whose id starts with ``slow`` takes about 1.5 s;
- :func:`stalled`: a task whose id starts with ``slow`` does not finish within a test's patience
  (a minute a token): a process killed while it runs has certainly not finished it;
- :func:`failing`: a task whose id starts with ``bad`` fails every attempt;
- :func:`planner`: a planning prompt gets a fixed plan (a diamond over ``analyst`` and
  ``writer``); a task gets ``result of ID``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from counterpoint.core.bus import RunScope
from counterpoint.core.calls import ToolSpec
from counterpoint.runtime.backends.base import Message, Prompt, SamplingParams
from counterpoint.testing.scripted import ScriptedDecoder, ScriptedModel

_TASK = re.compile(r"Your task \(([^)]+)\)")

PLAN = {
    "tasks": [
        {"id": "gather", "objective": "Gather the facts.", "agent": "analyst", "needs": []},
        {"id": "pros", "objective": "List the pros.", "agent": "analyst", "needs": ["gather"]},
        {"id": "cons", "objective": "List the cons.", "agent": "analyst", "needs": ["gather"]},
        {
            "id": "summary",
            "objective": "Write the summary.",
            "agent": "writer",
            "needs": ["pros", "cons"],
        },
    ]
}


class ByTask:
    """A Model whose answer (and speed) depends on the task id in the prompt."""

    def __init__(
        self,
        answer: Callable[[str, str], str],
        token_time: Callable[[str], float] = lambda _tid: 0.0,
        *,
        fail: Callable[[str], bool] = lambda _tid: False,
        name: str = "scripted-by-task",
    ) -> None:
        self.answer = answer
        self.token_time = token_time
        self.fail = fail
        self._name = name
        self.prompts: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    async def start(
        self,
        context: Sequence[Message] | Prompt,
        params: SamplingParams | None = None,
        *,
        tools: Sequence[ToolSpec] = (),
        async_results: bool = False,
        scope: RunScope | None = None,
    ) -> ScriptedDecoder:
        if isinstance(context, Prompt):
            text = context.text
        else:
            text = "\n".join(m.content for m in context)
        self.prompts.append(text)
        found = _TASK.search(text)
        tid = found.group(1) if found else ""
        if self.fail(tid):
            raise RuntimeError(f"scripted failure of {tid}")
        inner = ScriptedModel(self.answer(tid, text), token_time_s=self.token_time(tid))
        return await inner.start(
            context, params, tools=tools, async_results=async_results, scope=scope
        )


def _result(tid: str, _text: str) -> str:
    return f"result of {tid}"


def fast() -> ByTask:
    return ByTask(_result)


def slow() -> ByTask:
    # "result of slowX" is 3 tokens: 0.5 s each
    return ByTask(_result, lambda tid: 0.5 if tid.startswith("slow") else 0.0)


def stalled() -> ByTask:
    return ByTask(_result, lambda tid: 60.0 if tid.startswith("slow") else 0.0)


def failing() -> ByTask:
    return ByTask(_result, fail=lambda tid: tid.startswith("bad"))


def planner() -> ByTask:
    def answer(tid: str, text: str) -> str:
        if "Plan a workflow" in text:
            return json.dumps(PLAN)
        return _result(tid, text)

    return ByTask(answer)
