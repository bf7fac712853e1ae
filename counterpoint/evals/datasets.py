"""BFCL datasets: find the Berkeley Function Calling Leaderboard data, load a category's cases.

Each case is a :class:`BFCLCase`: the conversation to answer, the function docs the model may
call, and the possible answers (the calls a correct model makes, with every value it may use for
each parameter). The data ships in the PyPI package ``bfcl-eval``; install it with
``pip install --no-deps bfcl-eval==2026.3.23`` or point ``data_dir`` (``--data-dir``,
``$COUNTERPOINT_BFCL_DIR``) at a folder of ``BFCL_v<N>_<category>.json`` files with a
``possible_answer/`` sibling folder.

The development categories are :data:`DEVELOPMENT_CATEGORIES`. The ``live_*`` categories
(user-contributed, :data:`ACCEPTANCE_CATEGORIES`) load the same way but are held back for
acceptance: do not tune anything on them.

Example::

    from counterpoint.evals.datasets import load_category, case_prompt, tool_spec

    for case in load_category("parallel", limit=5):
        messages = case_prompt(case)
        specs = [tool_spec(doc) for doc in case.functions]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from counterpoint.errors import ConfigError
from counterpoint.evals._files import (
    DatasetError,
    category_file,
    locate_data_dir,
    read_json_lines,
)
from counterpoint.runtime.backends.base import Message
from counterpoint.tools._schema import normalise_schema

__all__ = [
    "ACCEPTANCE_CATEGORIES",
    "DEVELOPMENT_CATEGORIES",
    "IRRELEVANCE_CATEGORIES",
    "BFCLCase",
    "DatasetError",
    "case_prompt",
    "categories",
    "data_dir",
    "find_function",
    "is_held_back",
    "load_category",
    "tool_spec",
]

DEVELOPMENT_CATEGORIES: tuple[str, ...] = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
)
"""Single-turn Python categories to develop and tune on."""

ACCEPTANCE_CATEGORIES: tuple[str, ...] = (
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
"""The same tasks on user-contributed data; held back for acceptance."""

IRRELEVANCE_CATEGORIES: tuple[str, ...] = ("irrelevance", "live_irrelevance")
"""No offered function fits the question: the correct answer is to make no call."""

_KNOWN: tuple[str, ...] = DEVELOPMENT_CATEGORIES + ACCEPTANCE_CATEGORIES + IRRELEVANCE_CATEGORIES

ExpectedCall = dict[str, dict[str, list[Any]]]
"""One expected call: ``{function_name: {parameter: [allowed values...]}}``; ``""`` among the
allowed values means the parameter may be left out."""


class BFCLCase(BaseModel):
    """One BFCL test case.

    ``question`` is a list of turns, each a list of chat messages (the categories here have one
    turn). ``functions`` holds the function docs as BFCL writes them (``name``, ``description``,
    ``parameters`` with BFCL's type names). ``possible_answer`` lists the expected calls, each
    ``{function_name: {parameter: [allowed values...]}}``; an empty list means no call is expected.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    category: str
    question: list[list[Message]]
    functions: list[dict[str, Any]]
    possible_answer: list[ExpectedCall]

    @field_validator("functions")
    @classmethod
    def _function_docs(cls, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, doc in enumerate(docs):
            if not isinstance(doc.get("name"), str) or not doc["name"]:
                raise ValueError(f"function {i} has no 'name'")
            params = doc.get("parameters")
            if not isinstance(params, dict) or not isinstance(params.get("properties"), dict):
                raise ValueError(f"function {doc['name']!r} has no 'parameters.properties' object")
            required = params.get("required", [])
            if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
                raise ValueError(f"function {doc['name']!r}: 'required' must be a list of names")
        return docs

    @field_validator("possible_answer")
    @classmethod
    def _one_function_per_call(cls, calls: list[ExpectedCall]) -> list[ExpectedCall]:
        for i, call in enumerate(calls):
            if len(call) != 1:
                raise ValueError(
                    f"expected call {i} must map exactly one function name to its parameters, "
                    f"got {len(call)} names"
                )
        return calls

    @model_validator(mode="after")
    def _answers_name_offered_functions(self) -> BFCLCase:
        for name, _ in self.expected_calls:
            if find_function(self.functions, name) is None:
                offered = ", ".join(repr(d["name"]) for d in self.functions)
                raise ValueError(f"expected function {name!r} is not among the offered {offered}")
        return self

    @property
    def expected_calls(self) -> list[tuple[str, dict[str, list[Any]]]]:
        """The expected calls as ``(function_name, {parameter: [allowed values...]})`` pairs."""
        return [next(iter(call.items())) for call in self.possible_answer]

    def function(self, name: str) -> dict[str, Any] | None:
        """The doc of the offered function called ``name`` (dots or underscores), if any."""
        return find_function(self.functions, name)


def find_function(docs: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The doc named ``name`` in ``docs``; failing an exact match, one whose name equals ``name``
    once dots are replaced by underscores (how OpenAI-style APIs must spell ``math.factorial``)."""
    for doc in docs:
        if doc["name"] == name:
            return doc
    flat = name.replace(".", "_")
    for doc in docs:
        if doc["name"].replace(".", "_") == flat:
            return doc
    return None


def data_dir(override: Path | str | None = None) -> Path:
    """The BFCL ``data/`` folder in use.

    ``override`` wins, then the environment variable ``COUNTERPOINT_BFCL_DIR``, then the folder
    inside the installed ``bfcl-eval`` package (located without importing it). Raises
    :class:`DatasetError` saying how to install the data when none is found.
    """
    return locate_data_dir(override)


def categories(*, data_dir: Path | str | None = None) -> list[str]:
    """The categories this module can load whose files are present, development ones first."""
    root = locate_data_dir(data_dir)
    return [name for name in _KNOWN if category_file(root, name) is not None]


def is_held_back(category: str) -> bool:
    """Whether ``category`` is held back for acceptance (the ``live_*`` ones)."""
    return category.startswith("live_")


def load_category(
    name: str, *, data_dir: Path | str | None = None, limit: int | None = None
) -> list[BFCLCase]:
    """Load the cases of category ``name`` (e.g. ``"simple_python"``), in file order.

    ``limit`` keeps the first ``limit`` cases. Raises :class:`ConfigError` for a category this
    module does not know and :class:`DatasetError` for a missing or malformed file; the message
    names the file and line number and what to fix.
    """
    if name not in _KNOWN:
        raise ConfigError(f"unknown BFCL category {name!r}: choose one of {', '.join(_KNOWN)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be 0 or more, got {limit}")
    root = locate_data_dir(data_dir)
    path = category_file(root, name)
    if path is None:
        raise DatasetError(
            f"no BFCL_v*_{name}.json in {root}: point --data-dir at a complete BFCL data folder "
            "or reinstall it with `pip install --no-deps bfcl-eval==2026.3.23`"
        )
    raw: list[tuple[int, dict[str, Any]]] = []
    for number, obj in read_json_lines(path):
        if limit is not None and len(raw) >= limit:
            break
        raw.append((number, obj))
    answers = {} if name in IRRELEVANCE_CATEGORIES else _load_answers(root, name, path)
    no_call: tuple[object, str | None] = ([], None)
    cases: list[BFCLCase] = []
    seen: dict[str, int] = {}
    for number, obj in raw:
        case_id = obj.get("id")
        if not isinstance(case_id, str):
            raise DatasetError(f"{path} line {number}: the case has no string 'id'; add one")
        if case_id in seen:
            raise DatasetError(
                f"{path} line {number}: id {case_id!r} repeats line {seen[case_id]}; "
                "ids must be unique"
            )
        seen[case_id] = number
        if name in IRRELEVANCE_CATEGORIES:
            expected = no_call
        elif case_id in answers:
            expected = answers[case_id]
        else:
            answer_path = category_file(root, name, answers=True)
            raise DatasetError(
                f"{path} line {number}: no possible answer for id {case_id!r} in "
                f"{answer_path}; add a line with this id and its 'ground_truth'"
            )
        cases.append(_case(f"{path} line {number}", name, obj, *expected))
    return cases


def _load_answers(root: Path, name: str, case_path: Path) -> dict[str, tuple[object, str | None]]:
    """The ground truth of each id, with where it was read (``"<file> line <n>"``)."""
    path = category_file(root, name, answers=True)
    if path is None:
        raise DatasetError(
            f"no possible answers for {case_path.name}: expected "
            f"{root / 'possible_answer' / case_path.name}; point --data-dir at a complete BFCL "
            "data folder or reinstall it with `pip install --no-deps bfcl-eval==2026.3.23`"
        )
    answers: dict[str, tuple[object, str | None]] = {}
    for number, obj in read_json_lines(path):
        case_id = obj.get("id")
        if not isinstance(case_id, str):
            raise DatasetError(f"{path} line {number}: the answer has no string 'id'; add one")
        if "ground_truth" not in obj:
            raise DatasetError(
                f"{path} line {number}: the answer for {case_id!r} has no 'ground_truth'; add "
                "the list of expected calls"
            )
        if case_id in answers:
            raise DatasetError(
                f"{path} line {number}: a second answer for {case_id!r} (first at "
                f"{answers[case_id][1]}); keep one answer per id"
            )
        answers[case_id] = (obj["ground_truth"], f"{path} line {number}")
    return answers


def _case(
    where: str, category: str, obj: dict[str, Any], expected: object, answer_at: str | None
) -> BFCLCase:
    """Validate one case line; ``where`` and ``answer_at`` name the lines it came from."""
    for field in ("question", "function"):
        if field not in obj:
            raise DatasetError(f"{where}: case {obj['id']!r} has no {field!r} field; add it")
    try:
        return BFCLCase.model_validate(
            {
                "id": obj["id"],
                "category": category,
                "question": obj["question"],
                "functions": obj["function"],
                "possible_answer": expected,
            }
        )
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        message = str(err["msg"]).removeprefix("Value error, ")
        if loc and loc[0] == "possible_answer":
            at = ".".join(["ground_truth", *loc[1:]])
            raise DatasetError(
                f"{answer_at}: the possible answer for {obj['id']!r} is malformed at {at}: "
                f"{message}; write it as a list of {{function_name: {{parameter: [values]}}}}"
            ) from None
        if not loc:
            raise DatasetError(
                f"{where}: case {obj['id']!r} does not agree with its possible answer "
                f"({answer_at}): {message}; fix the function list or the answer"
            ) from None
        at = ".".join(["function" if loc[0] == "functions" else loc[0], *loc[1:]])
        raise DatasetError(
            f"{where}: case {obj['id']!r} is malformed at {at}: {message}; fix the line to "
            "BFCL's format"
        ) from None


def case_prompt(case: BFCLCase) -> list[Message]:
    """The conversation to put to the model: every turn's messages, in order.

    The function docs are not included: offer them as tools (see :func:`tool_spec`).
    """
    return [message for turn in case.question for message in turn]


def tool_spec(function: dict[str, Any], *, flat_name: bool = False) -> dict[str, Any]:
    """A BFCL function doc as an OpenAI-style tool spec with a standard JSON Schema.

    Returns ``{"name", "description", "parameters"}`` where ``parameters`` is JSON Schema, as
    :meth:`~counterpoint.tools.tool.Tool.from_schema` normalises it (``dict`` -> ``object``,
    ``float`` -> ``number``, ``tuple`` -> ``array``, ``any`` -> unconstrained, ``required`` names
    that are not properties dropped). With ``flat_name``, dots in the name become underscores
    (APIs that allow only ``[a-zA-Z0-9_-]``); the checker accepts either spelling.
    """
    name = str(function["name"])
    parameters = normalise_schema(dict(function.get("parameters", {})))
    parameters["type"] = "object"
    parameters.setdefault("properties", {})
    return {
        "name": name.replace(".", "_") if flat_name else name,
        "description": str(function.get("description", "")),
        "parameters": parameters,
    }
