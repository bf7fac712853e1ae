"""Loading workflows from JSON and YAML: counterpoint's schema, Flow's unchanged, and every error
as one line naming the file, the task and the problem."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from counterpoint.agents.workflow.graph import WorkflowError
from counterpoint.agents.workflow.loading import (
    load_workflow,
    read_document,
    workflow_from_dict,
    workflow_from_spec,
)
from tests.agents.workflow._cli_models import ByTask

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "workflows"
FAST = "tests.agents.workflow._cli_models:fast"

REPORT_YAML = """\
name: report
goal: A short report on a text.
agents:
  analyst:
    instructions: You summarise one aspect of a text.
    max_tokens: 64
    stop: "\\n\\n"
    mode: sync
  writer: You merge summaries.
tasks:
  - id: facts
    objective: List the facts.
    agent: analyst
  - id: tone
    objective: Describe the tone.
    agent: analyst
    timeout_s: 30
    max_attempts: 2
  - id: report
    objective: Merge both.
    agent: writer
    needs: [facts, tone]
    output_format: one paragraph
config:
  max_concurrency: 2
  limits: {analyst: 1, "model:embedded": 2}
  timeout_s: 90
  retries: 1
  backoff_s: 0.1
  retry_budget: 4
  on_failure: fail
  refine_every: 2
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path, **kw: object) -> str:
    with pytest.raises(WorkflowError) as info:
        load_workflow(path, **kw)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    assert info.value.source == str(path)
    return message


# -- counterpoint's schema ---------------------------------------------------------------------


def test_yaml_in_counterpoints_schema(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, "report.yaml", REPORT_YAML))
    assert wf.name == "report" and wf.goal == "A short report on a text."
    assert [t.id for t in wf] == ["facts", "tone", "report"]
    assert wf["report"].needs == ("facts", "tone")
    assert wf["report"].output_format == "one paragraph"
    assert wf["tone"].timeout_s == 30 and wf["tone"].max_attempts == 2
    analyst = wf.agents["analyst"]
    assert analyst.instructions == "You summarise one aspect of a text."
    assert analyst.mode == "sync"
    assert analyst.params is not None and analyst.params.max_tokens == 64
    assert analyst.params.stop == ("\n\n",)
    assert analyst.limits is not None and analyst.limits.max_tokens == 64
    assert analyst.model_key == "embedded"  # not loaded: a spec until first use
    assert wf.agents["writer"].instructions == "You merge summaries."
    config = wf.config
    assert config.max_concurrency == 2 and config.timeout_s == 90
    assert dict(config.limits) == {"analyst": 1, "model:embedded": 2}
    assert config.retry.max_attempts == 2 and config.retry.backoff_s == 0.1
    assert config.retry.budget == 4
    assert config.on_failure == "fail" and config.refine_every == 2
    assert wf.source == str(tmp_path / "report.yaml")


def test_json_gives_the_same_workflow(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(REPORT_YAML)
    from_json = load_workflow(write(tmp_path, "report.json", json.dumps(data)))
    from_yaml = load_workflow(write(tmp_path, "report.yml", REPORT_YAML))
    assert from_json.to_dicts() == from_yaml.to_dicts()
    assert from_json.config == from_yaml.config
    assert from_json.spec["document"] == from_yaml.spec["document"]


def test_shorthands_tasks_by_id_one_need_and_a_single_agent(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "short.yaml",
        """\
        agents:
          solo: You do things.
        tasks:
          a: {objective: First.}
          b: {objective: Second., needs: a}
        """,
    )
    wf = load_workflow(path)
    assert wf.name == "short"
    assert [(t.id, t.agent_name, t.needs) for t in wf] == [("a", "solo", ()), ("b", "solo", ("a",))]


def test_model_precedence_agent_then_argument_then_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models.yaml",
        """\
        model: openai:file-default
        agents:
          own: {instructions: x, model: "openai:own"}
          plain: y
        tasks:
          - {id: a, objective: A., agent: own}
          - {id: b, objective: B., agent: plain}
        """,
    )
    wf = load_workflow(path)
    assert wf.agents["own"].model_key == "openai:own"
    assert wf.agents["plain"].model_key == "openai:file-default"
    wf = load_workflow(path, model="openai:flag")
    assert wf.agents["own"].model_key == "openai:own"
    assert wf.agents["plain"].model_key == "openai:flag"
    assert wf.spec["model"] == "openai:flag"
    path.write_text(path.read_text().replace("model: openai:file-default\n", ""))
    assert load_workflow(path).agents["plain"].model_key == "embedded"


def test_an_importable_model_spec_is_one_model_shared_by_the_agents(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, "r.yaml", REPORT_YAML), model=FAST)
    analyst, writer = wf.agents["analyst"].model, wf.agents["writer"].model
    assert isinstance(analyst, ByTask) and analyst is writer


def test_tools_are_imported_from_the_files_folder(tmp_path: Path) -> None:
    (tmp_path / "wf_tools_mod.py").write_text(
        "def word_count(text: str) -> int:\n"
        '    """Count the words in text."""\n'
        "    return len(text.split())\n"
        "TOOLS = [word_count]\n"
    )
    path = write(
        tmp_path,
        "tools.yaml",
        """\
        agents:
          counter: {instructions: You count., tools: "wf_tools_mod:TOOLS"}
        tasks:
          - {id: a, objective: Count.}
        """,
    )
    wf = load_workflow(path)
    assert wf.agents["counter"].tools.names == ("word_count",)


def test_overrides_of_config_and_max_tokens_are_kept_in_the_spec(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", REPORT_YAML)
    wf = load_workflow(
        path, config={"max_concurrency": 5, "max_attempts": 4, "timeout_s": None}, max_tokens=9
    )
    assert wf.config.max_concurrency == 5 and wf.config.retry.max_attempts == 4
    assert wf.config.timeout_s == 90  # None: the file's value stays
    assert all(a.limits is not None and a.limits.max_tokens == 9 for a in wf.agents.values())
    assert wf.spec["overrides"] == {
        "config": {"max_concurrency": 5, "max_attempts": 4},
        "max_tokens": 9,
    }
    assert wf.spec["document"]["config"]["max_concurrency"] == 5
    assert "retries" not in wf.spec["document"]["config"]


def test_the_spec_rebuilds_the_workflow(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, "r.yaml", REPORT_YAML), model="openai:x", max_tokens=50)
    spec = json.loads(json.dumps(wf.spec))  # stored as JSON
    again = workflow_from_spec(spec)
    assert again.to_dicts() == wf.to_dicts()
    assert again.config == wf.config and again.goal == wf.goal and again.name == wf.name
    assert again.agents["writer"].model_key == "openai:x"
    assert again.agents["writer"].limits is not None
    assert again.agents["writer"].limits.max_tokens == 50
    assert workflow_from_spec(spec, model="openai:y").agents["writer"].model_key == "openai:y"


async def test_a_loaded_workflow_runs(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, "r.yaml", REPORT_YAML), model=FAST)
    result = await wf.run(durable=False, tracer=False)
    assert result.status == "ok"
    assert result.text == "result of report"


# -- Flow's schema -----------------------------------------------------------------------------

FLOW = {
    "final_goal": "A customer report.",
    "workflow": {
        "task0": {
            "objective": "Collect feedback.",
            "agent_id": 0,
            "next": ["task1", "task2"],
            "prev": [],
            "status": "completed",
            "data": "old result",
        },
        "task1": {"objective": "Analyse sentiment.", "agent_id": 1, "next": [], "prev": []},
        "task2": {
            "objective": "Extract themes.",
            "agent_id": "Agent 1",
            "output_format": "bullets",
            "next": ["task3"],
            "prev": ["task0"],
            "remaining_dependencies": 1,
            "agent": "Data Analyst",
        },
        "task3": {"objective": "Write it.", "agent_id": 2, "next": [], "prev": ["task1"]},
    },
    "agents": [
        {"id": "Agent 0", "role": "Data Collector", "subtasks": [0]},
        {"id": "Agent 1", "role": "Data Analyst", "subtasks": [1, 2]},
        {"id": "Writer", "role": "Report Writer"},
    ],
}


def test_flow_file_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path, "flow.json", json.dumps(FLOW))
    wf = load_workflow(path, model="openai:m")
    assert wf.goal == "A customer report." and wf.name == "flow"
    assert wf.spec["format"] == "flow"
    by_id = {t.id: t for t in wf}
    # task1 lists no prev, but task0 lists it in next: the edge counts (union of next and prev)
    assert by_id["task1"].needs == ("task0",)
    assert by_id["task2"].needs == ("task0",)
    assert set(by_id["task3"].needs) == {"task1", "task2"}
    assert by_id["task2"].output_format == "bullets"
    # agent_id by number ("Agent 0"), by id, and by position when no id ends with the number
    assert [by_id[t].agent_name for t in ("task0", "task1", "task2", "task3")] == [
        "Agent 0",
        "Agent 1",
        "Agent 1",
        "Writer",
    ]
    collector = wf.agents["Agent 0"]
    assert collector.name == "Agent 0" and collector.instructions == "Data Collector"
    assert collector.model_key == "openai:m"


def test_flow_in_yaml_and_its_spec_rebuilds(tmp_path: Path) -> None:
    import yaml

    wf = load_workflow(write(tmp_path, "flow.yaml", yaml.safe_dump(FLOW)))
    again = workflow_from_spec(json.loads(json.dumps(wf.spec)))
    assert again.to_dicts() == wf.to_dicts()
    assert again.agents["Writer"].instructions == "Report Writer"


def test_flow_sloppiness_one_id_for_a_list_and_null(tmp_path: Path) -> None:
    data = flow_with(workflow__task3__prev="task1", workflow__task1__next=None)
    data["workflow"]["task2"]["next"] = None  # type: ignore[index]
    wf = load_workflow(write(tmp_path, "flow.json", json.dumps(data)))
    assert wf["task3"].needs == ("task1",)
    assert wf["task1"].needs == ("task0",)


def flow_with(**changes: object) -> dict[str, object]:
    data = json.loads(json.dumps(FLOW))
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return data


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"workflow__task3__agent_id": 7}, ["task 'task3'", "agent_id 7", "'Agent 0'"]),
        ({"workflow__task3__agent_id": "Agent 9"}, ["task 'task3'", "'Agent 9'"]),
        ({"workflow__task1__next": ["task9"]}, ["task 'task1'", "next", "'task9'"]),
        ({"workflow__task2__prev": ["nope"]}, ["task 'task2'", "prev", "'nope'"]),
        ({"workflow__task2__objective": None}, ["task 'task2'", "missing key 'objective'"]),
        ({"workflow__task2__agent_id": None}, ["task 'task2'", "missing key 'agent_id'"]),
        ({"workflow__task2__objectiv": "x"}, ["task 'task2'", "unknown key 'objectiv'"]),
        ({"workflow__task1__next": ["task0"]}, ["cycle", "task0", "task1"]),
        ({"workflow__task1__id": "other"}, ["task 'task1'", "must match its key"]),
        ({"agents": [{"id": "A", "role": "r"}, {"id": "A", "role": "s"}]}, ["duplicate agent"]),
        ({"agents": []}, ["agents should not be empty"]),
        ({"workflow": {}}, ["no tasks"]),
        ({"workflow__task1__prev": 5}, ["task 'task1'", "prev should be a valid list, not 5"]),
    ],
)
def test_flow_errors_name_the_file_and_task(
    tmp_path: Path, changes: dict[str, object], fragments: list[str]
) -> None:
    path = write(tmp_path, "flow.json", json.dumps(flow_with(**changes)))
    message = error_of(path)
    for fragment in fragments:
        assert fragment in message, message


# -- errors ------------------------------------------------------------------------------------

VALID_TASKS = """\
agents:
  analyst: You analyse.
  writer: You write.
tasks:
"""


@pytest.mark.parametrize(
    ("name", "text", "fragments"),
    [
        ("bad.json", '{"tasks": [\n  {"id": "a",, }\n]}', ["invalid JSON at line 2"]),
        ("bad.yaml", "agents:\n  a: x\ntasks:\n  - id: [a\n    objective: b\n", ["invalid YAML"]),
        ("tab.yaml", "agents:\n\ta: x\n", ["invalid YAML at line 2"]),
        (
            "missing.yaml",
            VALID_TASKS + "  - {id: facts, agent: analyst}\n",
            ["task 'facts'", "missing key 'objective'"],
        ),
        (
            "typo.yaml",
            VALID_TASKS + "  - {id: facts, objectiv: x, agent: analyst}\n",
            ["task 'facts'", "unknown key 'objectiv'", "did you mean 'objective'?"],
        ),
        (
            "unknown_agent.yaml",
            VALID_TASKS + "  - {id: facts, objective: x, agent: editor}\n",
            ["'facts'", "unknown agent(s) 'editor'", "analyst"],
        ),
        (
            "no_agent.yaml",
            VALID_TASKS + "  - {id: facts, objective: x}\n",
            ["task 'facts' has no agent", "'analyst'"],
        ),
        (
            "cycle.yaml",
            VALID_TASKS
            + "  - {id: a, objective: x, agent: analyst, needs: [b]}\n"
            + "  - {id: b, objective: y, agent: analyst, needs: [a]}\n",
            ["the tasks form a cycle", "a -> b", "(remove a need)"],
        ),
        (
            "self.yaml",
            VALID_TASKS + "  - {id: a, objective: x, agent: analyst, needs: [a]}\n",
            ["task 'a' needs itself"],
        ),
        (
            "dangling.yaml",
            VALID_TASKS + "  - {id: a, objective: x, agent: analyst, needs: [ghost]}\n",
            ["task 'a' needs unknown task(s) 'ghost'"],
        ),
        (
            "duplicate.yaml",
            VALID_TASKS
            + "  - {id: a, objective: x, agent: analyst}\n"
            + "  - {id: a, objective: y, agent: writer}\n",
            ["duplicate task id 'a'"],
        ),
        (
            "duplicate_key.yaml",
            "agents:\n  analyst: x\ntasks:\n  a: {objective: x}\n  a: {objective: y}\n",
            ["duplicate key 'a' at line 5"],
        ),
        (
            "duplicate_key.json",
            '{"agents": {"w": "x"}, "tasks": {"a": {"objective": "x"}, "a": {"objective": "y"}}}',
            ["duplicate key 'a'"],
        ),
        (
            "type.yaml",
            VALID_TASKS + "  - {id: a, objective: x, agent: analyst, timeout_s: soon}\n",
            ["task 'a'", "timeout_s should be a valid number", "'soon'"],
        ),
        (
            "negative.yaml",
            VALID_TASKS + "  - {id: a, objective: x, agent: analyst, max_attempts: 0}\n",
            ["task 'a'", "max_attempts should be greater than or equal to 1"],
        ),
        (
            "empty_id.yaml",
            VALID_TASKS + "  - {id: '', objective: x, agent: analyst}\n",
            ["task #1: id should not be empty"],
        ),
        (
            "id_type.yaml",
            VALID_TASKS + "  - {id: 3, objective: x, agent: analyst}\n",
            ["task #1", "id should be a valid string"],
        ),
        (
            "needs_type.yaml",
            VALID_TASKS + "  - {id: a, objective: x, agent: analyst, needs: {b: 1}}\n",
            ["task 'a'", "needs should be a valid list"],
        ),
        (
            "agent_key.yaml",
            "agents:\n  analyst: {instructions: x, max_token: 5}\n"
            "tasks:\n  - {id: a, objective: x}\n",
            ["agent 'analyst'", "unknown key 'max_token'", "did you mean 'max_tokens'?"],
        ),
        (
            "agent_mode.yaml",
            "agents:\n  analyst: {instructions: x, mode: fast}\n"
            "tasks:\n  - {id: a, objective: x}\n",
            ["agent 'analyst'", "mode should be 'async', 'parallel' or 'sync'"],
        ),
        (
            "top_key.yaml",
            VALID_TASKS + "  - {id: a, objective: x, agent: analyst}\n" + "confg: {}\n",
            ["unknown key 'confg'", "did you mean 'config'?"],
        ),
        (
            "on_failure.yaml",
            VALID_TASKS
            + "  - {id: a, objective: x, agent: analyst}\n"
            + "config: {on_failure: stop}\n",
            ["config: on_failure should be 'skip' or 'fail'"],
        ),
        (
            "both_retries.yaml",
            VALID_TASKS
            + "  - {id: a, objective: x, agent: analyst}\nconfig: {retries: 1, max_attempts: 3}\n",
            ["config: give retries or max_attempts, not both"],
        ),
        (
            "limits.yaml",
            VALID_TASKS
            + "  - {id: a, objective: x, agent: analyst}\nconfig: {limits: {edtor: 1}}\n",
            ["config: limits name unknown agent(s) 'edtor'"],
        ),
        (
            "limit_value.yaml",
            VALID_TASKS
            + "  - {id: a, objective: x, agent: analyst}\nconfig: {limits: {analyst: 0}}\n",
            ["config", "at least 1"],
        ),
        (
            "tools.yaml",
            "agents:\n  a: {instructions: x, tools: 'no_such_mod_xyz:T'}\ntasks:\n"
            "  - {id: t, objective: x}\n",
            ["agent 'a'", "no module named 'no_such_mod_xyz'"],
        ),
        (
            "tools_attr.yaml",
            "agents:\n  a: {instructions: x, tools: 'json:nothing_here'}\ntasks:\n"
            "  - {id: t, objective: x}\n",
            ["agent 'a'", "has no attribute 'nothing_here'"],
        ),
        (
            "tools_kind.yaml",
            "agents:\n  a: {instructions: x, tools: 'json:__name__'}\ntasks:\n"
            "  - {id: t, objective: x}\n",
            ["agent 'a'", "tools 'json:__name__'"],
        ),
        (
            "model.yaml",
            "agents:\n  a: {instructions: x, model: 'json:__name__'}\ntasks:\n"
            "  - {id: t, objective: x}\n",
            ["agent 'a'", "model 'json:__name__'", "not a Model"],
        ),
        ("list.yaml", "- a\n- b\n", ["holds a list, not a workflow"]),
        ("empty.yaml", "", ["the file is empty"]),
        ("neither.json", '{"steps": []}', ["expected 'tasks'", "'workflow'", "'steps'"]),
        ("no_tasks.yaml", "agents:\n  a: x\ntasks: []\n", ["no tasks"]),
        ("no_agents.yaml", "tasks:\n  - {id: a, objective: x, agent: w}\n", ["no agents"]),
        ("notes.txt", "tasks: []", ["unknown workflow file type '.txt'"]),
    ],
)
def test_every_error_is_one_line_naming_file_task_and_problem(
    tmp_path: Path, name: str, text: str, fragments: list[str]
) -> None:
    message = error_of(write(tmp_path, name, text))
    for fragment in fragments:
        assert fragment in message, message


def test_a_missing_file_or_a_folder(tmp_path: Path) -> None:
    assert "no such file" in error_of(tmp_path / "absent.yaml")
    (tmp_path / "dir.yaml").mkdir()
    assert "folder" in error_of(tmp_path / "dir.yaml")


def test_errors_of_data_name_the_given_source() -> None:
    with pytest.raises(WorkflowError, match=r"^inline: task 'a': missing key 'objective'$"):
        workflow_from_dict({"agents": {"w": "x"}, "tasks": [{"id": "a"}]}, source="inline")


def test_several_problems_are_counted() -> None:
    with pytest.raises(WorkflowError, match=r"\(and 1 more problem\)$"):
        workflow_from_dict({"agents": {"w": "x"}, "tasks": [{"id": "a", "timeout_s": "x"}]})


# -- the examples ------------------------------------------------------------------------------


def test_the_examples_load() -> None:
    files = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    assert {"report.yaml", "flow_example.json"} <= {p.name for p in files}
    for path in files:
        wf = load_workflow(path)
        assert len(wf) >= 3, path
        assert wf.goal, path
    report = load_workflow(EXAMPLES / "report.yaml")
    assert report.layers() == [["history", "impact", "outlook"], ["critique"], ["report"]]
    flow = load_workflow(EXAMPLES / "flow_example.json")
    assert flow.spec["format"] == "flow"
    assert flow.layers() == [["task0"], ["task1", "task2"], ["task3"]]
    assert read_document(EXAMPLES / "flow_example.json")["workflow"]["task0"]["agent_id"] == 0
