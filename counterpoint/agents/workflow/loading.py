"""Loading workflows from JSON and YAML files: counterpoint's own schema, or Flow's unchanged.

:func:`load_workflow` reads a ``.json``, ``.yaml`` or ``.yml`` file; :func:`workflow_from_dict`
builds a :class:`~counterpoint.agents.workflow.workflow.Workflow` from data already parsed. The
schema is told apart by its keys: ``tasks`` is counterpoint's, ``workflow`` is Flow's.

counterpoint's schema (YAML shown; JSON holds the same data)::

    name: report                   # optional (default: the file's name)
    goal: A short report on ...    # optional: told to every task
    description: ...               # optional, for people
    model: embedded                # optional: the model of agents that name none
    agents:                        # NAME: {...}, or NAME: "its instructions"
      analyst:
        instructions: You summarise one aspect of a text.
        model: embedded            # optional: embedded, a local path, a cached hub id,
                                   #   openai:NAME, or pkg.mod:attr (a Model or a factory of one)
        mode: async                # optional: async (default) | parallel | sync
        tools: [pkg.mod:attr]      # optional: each a Toolset, a Tool, a function, or a list
        max_tokens: 160            # optional: most tokens per run (hitting it fails the attempt)
        temperature: 0.0           # optional (0 is greedy, the default)
        stop: ["\\n\\n"]           # optional: strings that end the answer
    tasks:                         # a list, or a mapping from id to task
      - id: facts
        objective: List the facts in the text.
        agent: analyst             # optional when there is one agent
        needs: []                  # optional: ids (or one id)
        output_format: three bullets    # optional
        timeout_s: 60              # optional: per attempt
        max_attempts: 2            # optional
    config:                        # optional
      max_concurrency: 4           # tasks at once (default: unbounded)
      limits: {analyst: 2, "model:embedded": 3}   # per agent name, or per model
      timeout_s: 120               # per attempt, for tasks that set none
      retries: 1                   # attempts after the first (or max_attempts: 2, not both)
      backoff_s: 0.5               # the first wait before a retry (doubling after)
      retry_budget: 5              # retries of the whole workflow
      on_failure: skip             # skip the dependents of a failed task, or fail the workflow
      refine_every: 0              # ask the refiner after this many completions (0: never)

Unknown keys are an error (naming the key, and the nearest allowed one).

Flow's schema (``tmllab/2025_ICLR_FLOW``), accepted as Flow writes it::

    {"workflow": {"task0": {"objective": "...", "agent_id": 0, "output_format": "...",
                            "next": ["task1"], "prev": []}, ...},
     "agents": [{"id": "Agent 0", "role": "Data Collector"}, ...],
     "final_goal": "..."}                                  # optional ("goal" works too)

A task's ``needs`` are its ``prev`` plus every task that lists it in ``next``: the two are unioned
(Flow files often list an edge on one side only), but an id in either that is not a task is an
error. ``agent_id`` names an agent by its ``id`` (``"Agent 0"``), or by number as Flow does (``0``
is ``"Agent 0"``, else the agent at that position). Each agent is
``Agent(name=id, instructions=role, model=model)``. Flow's own bookkeeping keys (``status``,
``data``, ``remaining_dependencies``, ``agent``, ``history``, an agent's ``subtasks``...) are
accepted and ignored.

Which model an agent runs on: its own ``model``, else the ``model`` argument (the CLI's
``--model``), else the file's ``model``, else ``embedded``. Models are loaded when first used.

Every problem is a :class:`~counterpoint.agents.workflow.graph.WorkflowError` whose one-line
message names the file, the task (or agent) and what to fix: unparsable JSON or YAML (with its
line), a missing or unknown key, a value of the wrong type, an unknown agent, a duplicate id, a
dangling need, a cycle, tools or a model that cannot be imported.

The workflow's :attr:`~counterpoint.agents.workflow.workflow.Workflow.spec` (stored with each run)
holds ``format`` (``counterpoint`` or ``flow``), ``document`` (the workflow in counterpoint's
schema, Flow files converted, overrides applied), ``agents`` (its agents section), ``model`` (the
``model`` argument when it was a spec string) and ``overrides`` (the ``config`` and
``max_tokens`` arguments, to apply again when the file is loaded for a resume):
:func:`workflow_from_spec` rebuilds the workflow from it when the file is gone.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from counterpoint.agents.agent import Agent
from counterpoint.agents.workflow.graph import Task, WorkflowError
from counterpoint.agents.workflow.scheduler import RetryPolicy, SchedulerConfig
from counterpoint.agents.workflow.workflow import Workflow
from counterpoint.errors import CounterpointError
from counterpoint.runtime.backends.base import Model, SamplingParams
from counterpoint.runtime.session import Limits
from counterpoint.tools.toolset import Toolset

__all__ = [
    "SUFFIXES",
    "import_object",
    "load_workflow",
    "read_document",
    "workflow_from_dict",
    "workflow_from_spec",
]

SUFFIXES = (".json", ".yaml", ".yml")
"""The file types :func:`load_workflow` reads."""

Format = Literal["counterpoint", "flow"]

_IMPORT_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


# -- the schemas -------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _AgentDoc(_Strict):
    instructions: str
    model: str | None = None
    mode: Literal["async", "parallel", "sync"] = "async"
    tools: list[str] = Field(default_factory=list)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=5.0)
    stop: list[str] = Field(default_factory=list)


class _TaskDoc(_Strict):
    id: str = Field(min_length=1)
    objective: str = Field(min_length=1)
    agent: str | None = None
    needs: list[str] = Field(default_factory=list)
    output_format: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1)


class _ConfigDoc(_Strict):
    max_concurrency: int | None = Field(default=None, ge=1)
    limits: dict[str, int] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0)
    max_attempts: int | None = Field(default=None, ge=1)
    backoff_s: float | None = Field(default=None, ge=0)
    retry_budget: int | None = Field(default=None, ge=0)
    on_failure: Literal["skip", "fail"] = "skip"
    refine_every: int = Field(default=0, ge=0)


class _Document(_Strict):
    name: str | None = None
    goal: str = ""
    description: str = ""
    model: str | None = None
    agents: dict[str, _AgentDoc] = Field(default_factory=dict)
    tasks: list[_TaskDoc] = Field(default_factory=list)
    config: _ConfigDoc = Field(default_factory=_ConfigDoc)


class _FlowTask(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    objective: str = Field(min_length=1)
    agent_id: int | str
    output_format: str | None = None
    next: list[str] = Field(default_factory=list)
    prev: list[str] = Field(default_factory=list)
    # Flow's own bookkeeping: accepted, ignored
    id: Any = None
    status: Any = None
    data: Any = None
    remaining_dependencies: Any = None
    agent: Any = None
    history: Any = None
    result: Any = None
    feedback: Any = None


class _FlowAgent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | int
    role: str
    subtasks: Any = None
    collaborates_with: Any = None


class _FlowDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    workflow: dict[str, _FlowTask]
    agents: list[_FlowAgent] = Field(min_length=1)
    name: str | None = None
    goal: str | None = None
    final_goal: str | None = None
    task: str | None = None
    Change_Justification: Any = Field(default=None, alias="Change Justification")


_ALLOWED: dict[str, tuple[str, ...]] = {
    "document": tuple(_Document.model_fields),
    "agent": tuple(_AgentDoc.model_fields),
    "task": tuple(_TaskDoc.model_fields),
    "config": tuple(_ConfigDoc.model_fields),
    "flow": ("workflow", "agents", "name", "goal", "final_goal"),
    "flow task": ("objective", "agent_id", "output_format", "next", "prev"),
    "flow agent": ("id", "role"),
}


# -- public ------------------------------------------------------------------------------------


def load_workflow(
    path: str | os.PathLike[str],
    *,
    model: str | Model | None = None,
    agents: Mapping[str, Agent] | None = None,
    config: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    require_tasks: bool = True,
) -> Workflow:
    """The workflow in a ``.json``, ``.yaml`` or ``.yml`` file (either schema; see the module doc).

    Args:
        path: the file.
        model: the model of agents that name none (a spec string or a Model); None: the file's
            ``model``, else ``embedded``.
        agents: agents by name, added to the file's (replacing one of the same name).
        config: settings that override the file's ``config`` section (the same keys).
        max_tokens: override every agent's ``max_tokens``.
        require_tasks: False accepts a file without tasks (its agents, for a planner).

    Raises:
        WorkflowError: one line naming the file, the task and the problem.
    """
    source = os.fspath(path)
    data = read_document(source)
    return workflow_from_dict(
        data,
        source=source,
        model=model,
        agents=agents,
        config=config,
        max_tokens=max_tokens,
        require_tasks=require_tasks,
    )


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The data in a workflow file (JSON or YAML, by its suffix), not yet validated.

    Raises:
        WorkflowError: the file cannot be read or parsed (the message gives the line), or it does
            not hold a mapping.
    """
    source = os.fspath(path)
    file = Path(source)
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise WorkflowError(
            f"unknown workflow file type {suffix or '(none)'!r}: use .json, .yaml or .yml",
            source=source,
        )
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError("no such file: check the path", source=source) from None
    except IsADirectoryError:
        raise WorkflowError("is a folder, not a workflow file", source=source) from None
    except UnicodeDecodeError as e:
        raise WorkflowError(f"not UTF-8 text (byte {e.start})", source=source) from None
    except OSError as e:
        raise WorkflowError(f"cannot read the file: {e.strerror or e}", source=source) from None
    data = _parse_json(text, source) if suffix == ".json" else _parse_yaml(text, source)
    if data is None:
        raise WorkflowError("the file is empty: it should hold a workflow", source=source)
    if not isinstance(data, dict):
        raise WorkflowError(
            f"the file holds {_kind(data)}, not a workflow: expected a mapping with 'tasks' "
            "(counterpoint's schema) or 'workflow' (Flow's schema)",
            source=source,
        )
    return data


def workflow_from_dict(
    data: Mapping[str, Any],
    *,
    source: str | None = None,
    model: str | Model | None = None,
    agents: Mapping[str, Agent] | None = None,
    config: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    require_tasks: bool = True,
) -> Workflow:
    """A workflow from parsed data in either schema (see :func:`load_workflow` for the rest).

    Raises:
        WorkflowError: one line naming the source, the task and the problem.
    """
    if not isinstance(data, Mapping):
        raise WorkflowError(f"a workflow is a mapping, not {_kind(data)}", source=source)
    fmt: Format
    if "workflow" in data and "tasks" not in data:
        fmt = "flow"
        document = _flow_to_document(data, source)
    elif "tasks" in data or ("agents" in data and not require_tasks):
        fmt = "counterpoint"
        document = dict(data)
    else:
        keys = ", ".join(repr(k) for k in list(data)[:6]) or "none"
        raise WorkflowError(
            "not a workflow: expected 'tasks' (counterpoint's schema) or 'workflow' (Flow's "
            f"schema) at the top level (found: {keys})",
            source=source,
        )
    document = _normalise(document)
    if config:
        document["config"] = _merge_config(document.get("config"), config)
    doc = _validate(_Document, document, source, "document")
    if max_tokens is not None:
        for agent in doc.agents.values():
            agent.max_tokens = max_tokens
    if not doc.tasks and require_tasks:
        raise WorkflowError("the workflow has no tasks: add some under 'tasks'", source=source)
    wf = _build(doc, fmt, source, model, agents)
    wf.spec["overrides"] = {
        "config": {k: v for k, v in (config or {}).items() if v is not None},
        "max_tokens": max_tokens,
    }
    return wf


def workflow_from_spec(
    spec: Mapping[str, Any],
    *,
    source: str | None = None,
    model: str | Model | None = None,
    agents: Mapping[str, Agent] | None = None,
) -> Workflow:
    """Rebuild a workflow from its stored :attr:`~Workflow.spec` (a resume whose file is gone).

    ``model`` overrides the stored ``model``.
    """
    document = spec.get("document")
    if not isinstance(document, Mapping):
        raise WorkflowError(
            "the stored run has no workflow document to rebuild it from: resume it from Python "
            "with the same Workflow, or run the file again",
            source=source,
        )
    stored_model = spec.get("model")
    chosen = model if model is not None else stored_model if isinstance(stored_model, str) else None
    wf = workflow_from_dict(
        document, source=source, model=chosen, agents=agents, require_tasks=False
    )
    wf.spec["format"] = spec.get("format", wf.spec["format"])
    return wf


def import_object(ref: str, *, search: Sequence[str | os.PathLike[str]] = ()) -> Any:
    """The object ``pkg.mod:attr`` names (``attr`` may be dotted).

    A module not found on ``sys.path`` is looked for in the folders of ``search`` too (say, the
    workflow file's folder and the working directory).

    Raises:
        CounterpointError: the reference is malformed, or cannot be imported (one line, why).
    """
    if not _IMPORT_SPEC.fullmatch(ref):
        raise CounterpointError(f"{ref!r} is not a reference of the form 'pkg.module:attribute'")
    module_name, _, attr = ref.partition(":")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if not search or (e.name and not module_name.startswith(e.name)):
                raise
            with _search_path(search):
                module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise CounterpointError(f"cannot import {ref!r}: no module named {e.name!r}") from None
    except CounterpointError:
        raise
    except Exception as e:
        raise CounterpointError(
            f"cannot import {ref!r}: {type(e).__name__}: {_one_line(str(e))}"
        ) from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CounterpointError(
                f"cannot import {ref!r}: {module_name} has no attribute {attr!r}"
            ) from None
    return value


# -- parsing -----------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int | None = None) -> None:
        self.key = key
        self.line = line


def _parse_json(text: str, source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _DuplicateKey(key)
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise WorkflowError(
            f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=source
        ) from None
    except _DuplicateKey as e:
        raise WorkflowError(
            f"duplicate key {e.key!r}: each key (and each task id) may appear once",
            source=source,
        ) from None


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except _DuplicateKey as e:
        raise WorkflowError(
            f"duplicate key {e.key!r} at line {e.line}: each key (and each task id) may appear "
            "once",
            source=source,
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = e.problem or e.context or "unparsable"
        raise WorkflowError(f"invalid YAML{where}: {problem}", source=source) from None
    except yaml.YAMLError as e:
        raise WorkflowError(f"invalid YAML: {_one_line(str(e))}", source=source) from None


def _normalise(data: Mapping[str, Any]) -> dict[str, Any]:
    """Shorthands to their full form: tasks as a mapping, an agent as its instructions, a
    single need, tool or stop string."""
    out = dict(data)
    tasks = out.get("tasks")
    if isinstance(tasks, Mapping):
        listed: list[Any] = []
        for key, body in tasks.items():
            if isinstance(body, Mapping):
                item = dict(body)
                item.setdefault("id", key)
                listed.append(item)
            else:
                listed.append(body)
        out["tasks"] = listed
    if isinstance(out.get("tasks"), list):
        fixed = []
        for item in out["tasks"]:
            if isinstance(item, Mapping):
                item = dict(item)
                if isinstance(item.get("needs"), str):
                    item["needs"] = [item["needs"]]
                if item.get("needs") is None and "needs" in item:
                    item["needs"] = []
            fixed.append(item)
        out["tasks"] = fixed
    agents = out.get("agents")
    if isinstance(agents, Mapping):
        built: dict[Any, Any] = {}
        for name, body in agents.items():
            if isinstance(body, str):
                body = {"instructions": body}
            elif isinstance(body, Mapping):
                body = dict(body)
                for key in ("tools", "stop"):
                    if isinstance(body.get(key), str):
                        body[key] = [body[key]]
            built[name] = body
        out["agents"] = built
    if out.get("config") is None and "config" in out:
        out["config"] = {}
    return out


def _merge_config(base: Any, overrides: Mapping[str, Any]) -> Any:
    if base is not None and not isinstance(base, Mapping):
        return base  # validation reports it
    merged = dict(base or {})
    given = {k: v for k, v in overrides.items() if v is not None}
    if "retries" in given:
        merged.pop("max_attempts", None)
    if "max_attempts" in given:
        merged.pop("retries", None)
    merged.update(given)
    return merged


# -- validation --------------------------------------------------------------------------------


def _validate(model: type[Any], data: Any, source: str | None, level: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        # an unknown key first: it is often the misspelling of the key reported missing
        errors = sorted(e.errors(), key=lambda err: err.get("type") != "extra_forbidden")
        first = _describe(errors[0], data, level)
        more = len(errors) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise WorkflowError(first + tail, source=source) from None


def _describe(error: Any, data: Any, level: str) -> str:
    loc = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    where, field, parent_level = _locate(loc, data, level)
    prefix = f"{where}: " if where else ""
    if kind == "missing":
        return f"{prefix}missing key {field!r}"
    if kind == "extra_forbidden":
        allowed = _ALLOWED.get(parent_level, ())
        close = difflib.get_close_matches(field, allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{prefix}unknown key {field!r} ({hint}allowed: {', '.join(allowed)})"
    if kind in ("too_short", "string_too_short"):
        return f"{prefix}{field or 'the value'} should not be empty"
    message = str(error.get("msg", "is invalid"))
    message = message.replace("Input should be", "should be")
    got = error.get("input")
    shown = f", not {_short(got)}"
    subject = field if field else "the value"
    if kind in ("model_type", "dict_type") and isinstance(got, list | str | int | float):
        return f"{prefix}{subject} should be a mapping{shown}"
    return f"{prefix}{subject} {message}{shown}"


def _locate(loc: tuple[Any, ...], data: Any, level: str) -> tuple[str, str, str]:
    """(where: "task 'x'", the field path, the schema level of the innermost mapping)."""
    if level == "document":
        task_key, agent_key, config_key = "tasks", "agents", "config"
        task_level, agent_level = "task", "agent"
    else:
        task_key, agent_key, config_key = "workflow", "agents", ""
        task_level, agent_level = "flow task", "flow agent"
    rest = loc
    where = ""
    current = level
    if len(loc) >= 2 and loc[0] == task_key:
        key = loc[1]
        if isinstance(key, int):
            items = data.get(task_key) if isinstance(data, Mapping) else None
            item = items[key] if isinstance(items, list) and key < len(items) else None
            tid = item.get("id") if isinstance(item, Mapping) else None
            where = f"task {tid!r}" if isinstance(tid, str) and tid else f"task #{key + 1}"
        else:
            where = f"task {key!r}"
        rest, current = loc[2:], task_level
    elif len(loc) >= 2 and loc[0] == agent_key:
        key = loc[1]
        if isinstance(key, int):
            items = data.get(agent_key) if isinstance(data, Mapping) else None
            item = items[key] if isinstance(items, list) and key < len(items) else None
            aid = item.get("id") if isinstance(item, Mapping) else None
            where = f"agent {aid!r}" if aid is not None else f"agent #{key + 1}"
        else:
            where = f"agent {key!r}"
        rest, current = loc[2:], agent_level
    elif config_key and len(loc) >= 1 and loc[0] == config_key:
        where, rest, current = "config", loc[1:], "config"
    field = ".".join(str(p) for p in rest if not _is_union_tag(p))
    if not field and loc:
        field = str(loc[-1])
    if len(rest) > 1:  # an error inside a nested value: the allowed keys are not ours
        current = ""
    return where, field, current


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in ("str", "int", "float", "list[str]")


# -- Flow --------------------------------------------------------------------------------------


def _flow_to_document(data: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    """A Flow file as counterpoint's document (see the module doc for the rules)."""
    flow = _validate(_FlowDocument, _normalise_flow(data), source, "flow")
    agent_ids: list[str] = []
    for agent in flow.agents:
        aid = str(agent.id)
        if aid in agent_ids:
            raise WorkflowError(f"duplicate agent id {aid!r} in 'agents'", ids=[aid], source=source)
        agent_ids.append(aid)
    tasks: dict[str, _FlowTask] = flow.workflow
    if not tasks:
        raise WorkflowError("'workflow' has no tasks", source=source)
    for tid, task in tasks.items():
        if task.id is not None and str(task.id) != tid:
            raise WorkflowError(
                f"task {tid!r} has id {task.id!r}: a task's id must match its key",
                ids=[tid],
                source=source,
            )
        for key, ids in (("prev", task.prev), ("next", task.next)):
            unknown = [i for i in ids if i not in tasks]
            if unknown:
                raise WorkflowError(
                    f"task {tid!r}: {key} names unknown task(s) "
                    f"{', '.join(repr(i) for i in unknown)} (tasks: {_listing(tasks)})",
                    ids=[tid, *unknown],
                    source=source,
                )
    needs: dict[str, list[str]] = {tid: list(dict.fromkeys(t.prev)) for tid, t in tasks.items()}
    for tid, task in tasks.items():
        for nxt in task.next:
            if tid not in needs[nxt]:
                needs[nxt].append(tid)
    documents: list[dict[str, Any]] = []
    for tid, task in tasks.items():
        item: dict[str, Any] = {
            "id": tid,
            "objective": task.objective,
            "agent": _flow_agent(tid, task.agent_id, agent_ids, source),
            "needs": needs[tid],
        }
        if task.output_format is not None:
            item["output_format"] = task.output_format
        documents.append(item)
    goal = flow.goal or flow.final_goal or flow.task or ""
    out: dict[str, Any] = {
        "goal": goal,
        "agents": {str(a.id): {"instructions": a.role} for a in flow.agents},
        "tasks": documents,
    }
    if flow.name:
        out["name"] = flow.name
    return out


def _normalise_flow(data: Mapping[str, Any]) -> dict[str, Any]:
    """A single id given as ``next`` or ``prev`` (not a list), or null, as a list."""
    out = dict(data)
    tasks = out.get("workflow")
    if isinstance(tasks, Mapping):
        fixed: dict[Any, Any] = {}
        for tid, body in tasks.items():
            if isinstance(body, Mapping):
                body = dict(body)
                for key in ("next", "prev"):
                    if isinstance(body.get(key), str):
                        body[key] = [body[key]]
                    elif key in body and body[key] is None:
                        body[key] = []
            fixed[tid] = body
        out["workflow"] = fixed
    return out


def _flow_agent(tid: str, agent_id: int | str, agent_ids: list[str], source: str | None) -> str:
    if str(agent_id) in agent_ids:
        return str(agent_id)
    number: int | None = None
    if isinstance(agent_id, int):
        number = agent_id
    elif agent_id.strip().isdigit():
        number = int(agent_id)
    if number is not None:
        for aid in agent_ids:
            trailing = re.search(r"(\d+)\s*$", aid)
            if trailing and int(trailing.group(1)) == number:
                return aid
        if 0 <= number < len(agent_ids):
            return agent_ids[number]
    raise WorkflowError(
        f"task {tid!r}: agent_id {agent_id!r} is not one of the agents "
        f"({', '.join(repr(a) for a in agent_ids)}): use an agent's id",
        ids=[tid],
        source=source,
    )


# -- building ----------------------------------------------------------------------------------


def _build(
    doc: _Document,
    fmt: Format,
    source: str | None,
    model: str | Model | None,
    given: Mapping[str, Agent] | None,
) -> Workflow:
    search = [str(Path(source).resolve().parent)] if source else []
    search.append(os.getcwd())
    default_model: str | Model = model if model is not None else doc.model or "embedded"
    models: dict[str, Model | str] = {}
    agents: dict[str, Agent] = {}
    for name, agent_doc in doc.agents.items():
        if not name.strip():
            raise WorkflowError("an agent's name must not be empty", source=source)
        agents[name] = _agent(name, agent_doc, default_model, models, search, source)
    agents.update(given or {})
    if not agents:
        raise WorkflowError(
            "the workflow defines no agents: add an 'agents' section", source=source
        )
    only = next(iter(agents)) if len(agents) == 1 else None
    tasks: list[Task] = []
    for item in doc.tasks:
        agent = item.agent or only
        if agent is None:
            raise WorkflowError(
                f"task {item.id!r} has no agent: add agent: NAME (one of {_listing(agents)})",
                ids=[item.id],
                source=source,
            )
        try:
            tasks.append(
                Task(
                    item.id,
                    item.objective,
                    agent,
                    needs=tuple(item.needs),
                    output_format=item.output_format,
                    timeout_s=item.timeout_s,
                    max_attempts=item.max_attempts,
                )
            )
        except WorkflowError as e:
            raise _with_source(e, source) from None
    config = _config(doc.config, agents, source)
    name = doc.name or (Path(source).stem if source else "workflow")
    document = doc.model_dump(exclude_defaults=True)
    document["agents"] = {n: a.model_dump(exclude_defaults=True) for n, a in doc.agents.items()}
    document["tasks"] = [t.model_dump(exclude_defaults=True) for t in doc.tasks]
    for item in document["tasks"]:
        item.setdefault("needs", [])
    spec: dict[str, Any] = {
        "format": fmt,
        "document": document,
        "agents": document["agents"],
        "model": model if isinstance(model, str) else None,
    }
    try:
        return Workflow(
            tasks,
            goal=doc.goal,
            agents=agents,
            name=name,
            config=config,
            source=source,
            spec=spec,
        )
    except WorkflowError as e:
        raise _with_source(e, source) from None


def _agent(
    name: str,
    spec: _AgentDoc,
    default_model: str | Model,
    models: dict[str, Model | str],
    search: Sequence[str],
    source: str | None,
) -> Agent:
    chosen = spec.model if spec.model is not None else default_model
    model: Model | str
    if isinstance(chosen, str):
        model = models.get(chosen) or _model(chosen, search, name, source)
        models[chosen] = model
    else:
        model = chosen
    tools = Toolset()
    for ref in spec.tools:
        try:
            value = import_object(ref, search=search)
        except CounterpointError as e:
            raise WorkflowError(f"agent {name!r}: tools: {e}", source=source) from None
        try:
            tools = Toolset(tools, value)
        except CounterpointError as e:
            raise WorkflowError(f"agent {name!r}: tools {ref!r}: {e}", source=source) from None
        except Exception as e:
            raise WorkflowError(
                f"agent {name!r}: tools {ref!r} is not a tool, a function, a Toolset or a list "
                f"of them ({type(e).__name__}: {_one_line(str(e))})",
                source=source,
            ) from None
    params: SamplingParams | None = None
    limits: Limits | None = None
    if spec.max_tokens is not None or spec.temperature is not None or spec.stop:
        fields: dict[str, Any] = {"stop": tuple(spec.stop)}
        if spec.temperature is not None:
            fields["temperature"] = spec.temperature
        if spec.max_tokens is not None:
            fields["max_tokens"] = spec.max_tokens
        params = SamplingParams(**fields)
    if spec.max_tokens is not None:
        limits = Limits(max_tokens=spec.max_tokens)
    return Agent(
        name,
        spec.instructions,
        tools=tools,
        model=model,
        mode=spec.mode,
        params=params,
        limits=limits,
    )


def _model(spec: str, search: Sequence[str], agent: str, source: str | None) -> Model | str:
    """A spec the registry resolves stays a string (loaded on first use); ``pkg.mod:attr`` is
    imported now: a Model, or a callable that returns one."""
    if spec.startswith("openai:") or not _IMPORT_SPEC.fullmatch(spec):
        return spec
    try:
        value = import_object(spec, search=search)
    except CounterpointError as e:
        raise WorkflowError(f"agent {agent!r}: model: {e}", source=source) from None
    if not isinstance(value, Model) and callable(value):
        try:
            value = value()
        except Exception as e:
            raise WorkflowError(
                f"agent {agent!r}: model {spec!r} failed: {type(e).__name__}: {_one_line(str(e))}",
                source=source,
            ) from None
    if not isinstance(value, Model):
        raise WorkflowError(
            f"agent {agent!r}: model {spec!r} is {_kind(value)}, not a Model (or a function "
            "that returns one)",
            source=source,
        )
    return value


def _config(doc: _ConfigDoc, agents: Mapping[str, Agent], source: str | None) -> SchedulerConfig:
    if doc.retries is not None and doc.max_attempts is not None:
        raise WorkflowError(
            "config: give retries or max_attempts, not both (max_attempts = retries + 1)",
            source=source,
        )
    unknown = [k for k in doc.limits if not k.startswith("model:") and k not in agents]
    if unknown:
        raise WorkflowError(
            f"config: limits name unknown agent(s) {', '.join(repr(k) for k in unknown)} "
            f"(agents: {_listing(agents)}; a model's limit is written 'model:KEY')",
            source=source,
        )
    retry: dict[str, Any] = {}
    if doc.retries is not None:
        retry["max_attempts"] = doc.retries + 1
    if doc.max_attempts is not None:
        retry["max_attempts"] = doc.max_attempts
    if doc.backoff_s is not None:
        retry["backoff_s"] = doc.backoff_s
    if doc.retry_budget is not None:
        retry["budget"] = doc.retry_budget
    try:
        return SchedulerConfig(
            max_concurrency=doc.max_concurrency,
            limits=dict(doc.limits),
            timeout_s=doc.timeout_s,
            retry=RetryPolicy(**retry),
            on_failure=doc.on_failure,
            refine_every=doc.refine_every,
        )
    except CounterpointError as e:
        raise WorkflowError(f"config: {e}", source=source) from None


# -- helpers -----------------------------------------------------------------------------------


def _with_source(error: WorkflowError, source: str | None) -> WorkflowError:
    if error.source is not None or source is None:
        return error
    return WorkflowError(str(error), ids=error.ids, source=source)


@contextlib.contextmanager
def _search_path(folders: Iterable[str | os.PathLike[str]]) -> Iterator[None]:
    added = [os.fspath(f) for f in folders if os.fspath(f) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def _listing(names: Iterable[str]) -> str:
    listed = [repr(n) for n in names]
    return ", ".join(listed[:8]) + (", ..." if len(listed) > 8 else "") if listed else "none"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, Mapping | list) else _kind(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
