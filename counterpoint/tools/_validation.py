"""Validation problems (from pydantic or jsonschema) written as short sentences for the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsonschema
from pydantic import ValidationError

__all__ = ["jsonschema_problems", "pydantic_problems", "shorten"]

_MAX_PROBLEMS = 4
_MAX_VALUE_CHARS = 60


def shorten(text: str, limit: int = _MAX_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(path: Sequence[Any]) -> str:
    """``('coord', 1)`` -> ``coord[1]``; ``('user', 'name')`` -> ``user.name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _cap(problems: list[str]) -> list[str]:
    if len(problems) > _MAX_PROBLEMS:
        more = len(problems) - _MAX_PROBLEMS
        return [*problems[:_MAX_PROBLEMS], f"and {more} more problem{'s' if more > 1 else ''}"]
    return problems


def pydantic_problems(exc: ValidationError) -> list[str]:
    """One sentence per error of a validation of the arguments model."""
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        where = _where(loc)
        if err["type"] == "missing":
            if len(loc) == 1:
                problems.append(f"missing required argument '{where}'")
            else:
                problems.append(f"argument '{where}': a required value is missing")
        elif err["type"] == "extra_forbidden" and len(loc) == 1:
            problems.append(f"unexpected argument '{where}'")
        else:
            got = shorten(repr(err.get("input")))
            problems.append(f"argument '{where}': {err['msg']} (got {got})")
    return _cap(list(dict.fromkeys(problems)))


def jsonschema_problems(errors: Iterable[jsonschema.ValidationError]) -> list[str]:
    """One sentence per error of a jsonschema validation, most relevant first."""
    problems: list[str] = []
    for err in sorted(errors, key=jsonschema.exceptions.relevance):
        path = list(err.absolute_path)
        if err.validator == "required" and not path and isinstance(err.validator_value, list):
            given = err.instance if isinstance(err.instance, Mapping) else {}
            missing = [m for m in err.validator_value if m not in given]
            problems.extend(f"missing required argument '{m}'" for m in missing)
            continue
        message = shorten(err.message, 200)
        problems.append(f"argument '{_where(path)}': {message}" if path else message)
    return _cap(list(dict.fromkeys(problems)))
