"""The AST checker: does a list of calls answer a BFCL case? (BFCL's semantics, our own code.)

A case is answered when the calls can be paired one to one with the expected calls, in any order,
such that each pair passes these checks (as BFCL's AST checker for Python does them, in
``bfcl_eval/eval_checker/ast_eval/ast_checker.py``):

- the function name is the expected one, spelt with dots or with dots replaced by underscores;
- every parameter the doc marks required is given, and no parameter is given that the doc or the
  possible answer does not name;
- each value has the doc's type (an ``int`` passes for a ``float``; tuples are lists; ``any`` is
  a string). The items of an array are typed one level deep and exactly: an ``int`` item does not
  pass for a ``float`` item (BFCL's ``type_error:nested``: ``interval=[1, 3]`` fails
  ``simple_python_13``), unless the possible answer's own items are ints or the parameter may be
  left out; nothing deeper is typed (``[[10.0, 20.0], [30.0, 40.0]]`` passes ``simple_python_122``'s
  array of arrays of integers, ``20.0`` an integer inside a dict);
- each value is one of the allowed values (strings compared without case, spaces or ``,./-_*^``
  at the top level, as list items and as dict values; dicts key by key; lists item by item; other
  values with ``==``, so ``20.0`` equals ``20``), and a parameter left out must allow ``""``.

One call per expected call: an extra or a missing call fails, and so does any call when the case
expects none (the irrelevance categories). Pairing is a maximum bipartite matching, so the order in
which a model writes parallel calls never matters.

BFCL's quirks kept on purpose: ``[]`` passes for a list parameter that may be left out; where the
possible answer contradicts the doc's type (BFCL writes variables such as ``"data['sales']"`` as
strings for array parameters), a value of the answer's type passes and is compared with the
answer exactly.

Where this checker differs from BFCL's own. The last three are all that a comparison with BFCL's
``simple_function_checker`` found, call by call, over about 70,000 argument sets: every allowed
answer of every development case and perturbations of their types and values (ints and floats
swapped, inside lists and dicts too, strings recased, items added or dropped, tuples, bools):

- BFCL pairs parallel calls greedily, so a valid answer written in an unlucky order can fail there
  (``parallel_178`` reversed) and passes here;
- BFCL accepts dotted names spelt with underscores only for models configured so; this checker
  always does;
- BFCL accepts a tuple only for ``tuple`` parameters; this checker takes tuples as lists
  everywhere (for any array, and inside lists and dicts);
- BFCL lets ``True`` pass for ``1`` inside dicts (Python's ``True == 1``: ``parallel_29``'s
  ``population.singles``) and inside lists of lists; here a bool never equals a number;
- a dict inside a dict (no development case has one): BFCL compares it whole with ``==``
  against its answer, which, written as a dict of allowed values, never matches; this checker
  matches it key by key like the outer dict.

Example::

    from counterpoint.evals.checker import check_calls

    result = check_calls(case, [("math.hypot", {"x": 4, "y": 5})])
    if not result.correct:
        print(result.reason)  # e.g. "math.hypot: y = 6 is not one of [5]"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from counterpoint.core.calls import Call
from counterpoint.evals._matching import maximum_matching
from counterpoint.evals._values import argument_error, concrete
from counterpoint.evals.datasets import BFCLCase

__all__ = ["CheckResult", "check_calls", "oracle_calls"]

MadeCall = tuple[str, Mapping[str, Any]]
"""A call as ``(function_name, keyword_arguments)``."""


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one case: ``reason`` says briefly why it failed (``None`` when correct)."""

    correct: bool
    reason: str | None = None


_CORRECT = CheckResult(True, None)


def check_calls(case: BFCLCase, calls: Sequence[MadeCall | Call]) -> CheckResult:
    """Check the calls a model made against ``case``.

    Each call is ``(function_name, arguments)`` or a runtime :class:`Call`, whose positional
    arguments are mapped onto the function's parameters in the doc's order (as the tool executor
    maps them). Pass every call the model wrote, including those the executor
    rejected: the checker judges what was written.
    """
    expected = case.expected_calls
    made = [_keywords(case, call) for call in calls]
    if len(made) != len(expected):
        names = ", ".join(name for name, _, _ in made) or "none"
        if not expected:
            return CheckResult(False, f"expected no call, got {len(made)} ({names})")
        wanted = ", ".join(name for name, _ in expected)
        return CheckResult(
            False,
            f"expected {_plural(len(expected), 'call')} ({wanted}), got {len(made)} ({names})",
        )
    if not expected:
        return _CORRECT
    offered = {doc["name"] for doc in case.functions}
    reasons = [
        [_call_error(case, offered, e_name, allowed, call) for e_name, allowed in expected]
        for call in made
    ]
    matched = maximum_matching([[r is None for r in row] for row in reasons])
    if all(row is not None for row in matched):
        return _CORRECT
    return CheckResult(False, _explain(expected, made, reasons, matched, offered))


_Made = tuple[str, Mapping[str, Any], str | None]
"""A call by keyword: name, arguments, and a problem found while mapping positional ones."""


def _keywords(case: BFCLCase, call: MadeCall | Call) -> _Made:
    if not isinstance(call, Call):
        name, arguments = call
        return name, arguments, None
    if not call.positional:
        return call.name, call.arguments, None
    doc = case.function(call.name)
    order = list(doc["parameters"]["properties"]) if doc is not None else []
    if len(call.positional) > len(order):
        return (
            call.name,
            call.arguments,
            (f"{len(call.positional)} positional arguments for {len(order)} parameters"),
        )
    arguments = dict(call.arguments)
    for param, value in zip(order, call.positional, strict=False):
        if param in arguments:
            return call.name, call.arguments, f"parameter {param!r} given twice"
        arguments[param] = value
    return call.name, arguments, None


def _call_error(
    case: BFCLCase,
    offered: set[str],
    expected_name: str,
    allowed: Mapping[str, list[Any]],
    call: _Made,
) -> str | None:
    """Why ``call`` is not the expected call, or ``None``."""
    name, arguments, problem = call
    if not _names_match(name, expected_name, offered):
        return f"called {name!r}, expected {expected_name!r}"
    if problem is not None:
        return f"{expected_name}: {problem}"
    doc = case.function(expected_name)
    assert doc is not None  # BFCLCase validates that every expected function is offered
    properties: dict[str, Any] = doc["parameters"]["properties"]
    for param in doc["parameters"].get("required", []):
        if param not in arguments:
            return f"{expected_name}: missing required parameter {param!r}"
    for param, value in arguments.items():
        if param not in properties or param not in allowed:
            return f"{expected_name}: unexpected parameter {param!r}"
        reason = argument_error(param, value, properties[param], allowed[param])
        if reason is not None:
            return f"{expected_name}: {reason}"
    for param, values in allowed.items():
        if param not in arguments and "" not in values:
            return f"{expected_name}: missing parameter {param!r} (no default is accepted)"
    return None


def _names_match(name: str, expected: str, offered: set[str]) -> bool:
    if name == expected:
        return True
    if name in offered:  # the exact name of another offered function
        return False
    return name.replace(".", "_") == expected.replace(".", "_")


def _explain(
    expected: Sequence[tuple[str, Mapping[str, list[Any]]]],
    calls: Sequence[_Made],
    reasons: list[list[str | None]],
    matched: list[int | None],
    offered: set[str],
) -> str:
    """Why the first expected call left without a match has none, told by a left-over call."""
    col = next(c for c, row in enumerate(matched) if row is None)
    name = expected[col][0]
    free = [r for r in range(len(calls)) if r not in matched]
    same_name = [r for r in free if _names_match(calls[r][0], name, offered)]
    if same_name:
        reason = reasons[same_name[0]][col]
        assert reason is not None  # else the matching would have used this call
        return (
            reason if len(expected) == 1 else f"no call matches expected call {col + 1}: {reason}"
        )
    if not any(_names_match(call[0], name, offered) for call in calls):
        if len(expected) == 1:
            reason = reasons[0][0]
            assert reason is not None
            return reason
        made = ", ".join(call[0] for call in calls)
        return f"no call to {name!r} (calls: {made})"
    left = free[0]
    return (
        f"too few correct calls to {name!r} (call {left + 1}, to {calls[left][0]!r}, is left over)"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def oracle_calls(case: BFCLCase) -> list[tuple[str, dict[str, Any]]]:
    """The calls that answer ``case`` with the first allowed value of every parameter.

    A parameter whose first allowed value is ``""`` (may be left out) is left out, unless the doc
    requires it, in which case its first other value is used (BFCL's data marks a few required
    parameters optional). A parameter the answer names but the doc does not declare is left out
    when the answer allows that. Useful as a reference answer and for scripted end-to-end tests.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for name, allowed in case.expected_calls:
        doc = case.function(name)
        assert doc is not None
        declared: dict[str, Any] = doc["parameters"]["properties"]
        required = set(doc["parameters"].get("required", []))
        arguments: dict[str, Any] = {}
        for param, values in allowed.items():
            omittable = "" in values
            if omittable and (param not in declared or (values[0] == "" and param not in required)):
                continue
            given = [v for v in values if v != ""]
            if given:
                arguments[param] = concrete(given[0])
        out.append((name, arguments))
    return out
