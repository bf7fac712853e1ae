"""Tests for counterpoint.evals.checker: each rule on hand-written cases, then the oracle run.

The oracle run answers every case of the four development categories with the first allowed
value of each parameter (it must score 100%), then applies single perturbations that must fail.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from counterpoint.core.calls import Call
from counterpoint.evals.checker import CheckResult, check_calls, oracle_calls
from counterpoint.evals.datasets import DEVELOPMENT_CATEGORIES, BFCLCase, load_category
from counterpoint.runtime.backends.base import Message

Calls = list[tuple[str, dict[str, Any]]]


def _fn(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"The {name} function.",
        "parameters": {"type": "dict", "properties": properties, "required": required},
    }


def _case(functions: list[dict[str, Any]], answer: list[dict[str, Any]]) -> BFCLCase:
    return BFCLCase(
        id="hand_0",
        category="hand",
        question=[[Message(role="user", content="?")]],
        functions=functions,
        possible_answer=answer,
    )


def _ok(result: CheckResult) -> None:
    assert result == CheckResult(True, None)


def _fails(result: CheckResult, *fragments: str) -> None:
    assert not result.correct
    assert result.reason is not None
    for fragment in fragments:
        assert fragment in result.reason, result.reason


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
F = {"type": "float"}
B = {"type": "boolean"}

WEATHER = _fn("weather.get", {"city": S, "unit": S, "days": I}, ["city"])
WEATHER_CASE = _case(
    [WEATHER], [{"weather.get": {"city": ["New York, NY", "NYC"], "unit": ["celsius", ""]}}]
)


# -- function names --------------------------------------------------------------------------


def test_function_name_must_match() -> None:
    _ok(check_calls(WEATHER_CASE, [("weather.get", {"city": "NYC"})]))
    _fails(
        check_calls(WEATHER_CASE, [("weather.fetch", {"city": "NYC"})]),
        "called 'weather.fetch', expected 'weather.get'",
    )


def test_dots_may_be_spelt_as_underscores() -> None:
    _ok(check_calls(WEATHER_CASE, [("weather_get", {"city": "NYC"})]))
    _fails(check_calls(WEATHER_CASE, [("weatherget", {"city": "NYC"})]), "called 'weatherget'")


def test_underscore_spelling_is_not_another_offered_function() -> None:
    other = _fn("weather_get", {"city": S}, ["city"])
    case = _case([WEATHER, other], [{"weather.get": {"city": ["NYC"]}}])
    _ok(check_calls(case, [("weather.get", {"city": "NYC"})]))
    _fails(check_calls(case, [("weather_get", {"city": "NYC"})]), "called 'weather_get'")


def test_multiple_needs_the_right_function_among_several() -> None:
    forecast = _fn("weather.forecast", {"city": S, "days": I}, ["city", "days"])
    case = _case([forecast, WEATHER], [{"weather.get": {"city": ["NYC"]}}])
    _ok(check_calls(case, [("weather.get", {"city": "NYC"})]))
    _fails(
        check_calls(case, [("weather.forecast", {"city": "NYC", "days": 1})]),
        "expected 'weather.get'",
    )


# -- parameters --------------------------------------------------------------------------------


def test_required_parameter_must_be_present() -> None:
    _ok(check_calls(WEATHER_CASE, [("weather.get", {"city": "NYC", "unit": "celsius"})]))
    _fails(
        check_calls(WEATHER_CASE, [("weather.get", {"unit": "celsius"})]),
        "weather.get: missing required parameter 'city'",
    )


def test_unknown_parameter_fails() -> None:
    _fails(
        check_calls(WEATHER_CASE, [("weather.get", {"city": "NYC", "country": "US"})]),
        "unexpected parameter 'country'",
    )


def test_parameter_the_answer_does_not_name_fails() -> None:
    # 'days' is in the doc but the possible answer does not allow it.
    _fails(
        check_calls(WEATHER_CASE, [("weather.get", {"city": "NYC", "days": 3})]),
        "unexpected parameter 'days'",
    )


def test_empty_string_marks_a_parameter_optional() -> None:
    _ok(check_calls(WEATHER_CASE, [("weather.get", {"city": "NYC"})]))
    strict = _case([WEATHER], [{"weather.get": {"city": ["NYC"], "unit": ["celsius"]}}])
    _fails(
        check_calls(strict, [("weather.get", {"city": "NYC"})]),
        "missing parameter 'unit'",
    )
    _ok(check_calls(strict, [("weather.get", {"city": "NYC", "unit": "Celsius"})]))


# -- types -----------------------------------------------------------------------------------

NUMBERS = _fn(
    "stats.mean",
    {
        "values": {"type": "array", "items": F},
        "weight": F,
        "count": I,
        "exact": B,
        "label": S,
    },
    ["values"],
)


def _numbers_case(**allowed: list[Any]) -> BFCLCase:
    return _case([NUMBERS], [{"stats.mean": {"values": [[1.5, 2.0]], **allowed}}])


def test_int_is_accepted_for_float() -> None:
    case = _numbers_case(weight=[2.0])
    _ok(check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "weight": 2})]))
    _ok(check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "weight": 2.0})]))
    _fails(  # an int past any float is still judged, not a crash
        check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "weight": 10**400})]),
        "weight = 1000",
    )
    _fails(
        check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "weight": "2.0"})]),
        "weight should be float, got string '2.0'",
    )


def test_int_is_not_accepted_inside_a_float_array() -> None:
    # BFCL converts an int to a float only at the top level; inside an array it reports
    # type_error:nested
    case = _numbers_case()
    _fails(
        check_calls(case, [("stats.mean", {"values": [1.5, 2]})]),
        "values[1] should be float, got integer 2",
    )
    _fails(check_calls(case, [("stats.mean", {"values": [2, 1.5]})]), "values[0] should be float")


def test_int_items_pass_for_float_items_where_bfcl_skips_the_nested_check() -> None:
    # an optional parameter ("" among its answers) and an answer written with ints are not
    # checked against the items' type, exactly as BFCL does
    optional = _case([NUMBERS], [{"stats.mean": {"values": [[1.5, 2.0], ""]}}])
    _ok(check_calls(optional, [("stats.mean", {"values": [1.5, 2]})]))
    int_answer = _case([NUMBERS], [{"stats.mean": {"values": [[1, 2]]}}])
    _ok(check_calls(int_answer, [("stats.mean", {"values": [1, 2]})]))
    _ok(check_calls(int_answer, [("stats.mean", {"values": [1.0, 2.0]})]))
    _fails(check_calls(int_answer, [("stats.mean", {"values": ["1", 2]})]), "values[0] should be")


def _real_case(case_id: str) -> BFCLCase:
    category = case_id.rsplit("_", 1)[0]
    return next(c for c in load_category(category) if c.id == case_id)


def test_simple_python_13_rejects_ints_in_its_float_interval() -> None:
    case = _real_case("simple_python_13")  # interval: array of float, answer [1.0, 3.0]
    call = {"function": "x**2", "interval": [1.0, 3.0]}
    _ok(check_calls(case, [("calculate_area_under_curve", call)]))
    for interval in ([1, 3], [1.0, 3], [1, 3.0]):
        _fails(
            check_calls(case, [("calculate_area_under_curve", {**call, "interval": interval})]),
            "should be float, got integer",
        )


def test_simple_python_122_accepts_floats_in_its_int_table() -> None:
    case = _real_case("simple_python_122")  # table: array of array of integer, [[10, 20], ...]
    for table in ([[10, 20], [30, 40]], [[10.0, 20.0], [30.0, 40.0]], [[10, 20.0], [30, 40]]):
        _ok(check_calls(case, [("chi_squared_test", {"table": table})]))
    _fails(
        check_calls(case, [("chi_squared_test", {"table": [[10, 20], [30, 41]]})]),
        "table[1][1] = 41, expected 40",
    )
    _fails(check_calls(case, [("chi_squared_test", {"table": [10, 20, 30, 40]})]), "table[0]")


def test_values_inside_dicts_are_not_type_checked_but_compared() -> None:
    # simple_python_260: area is a dict of integers; BFCL compares 20.0 == 20 there
    case = _real_case("simple_python_260")
    ((name, arguments),) = oracle_calls(case)
    assert arguments["area"] == {"width": 20, "height": 12}
    _ok(check_calls(case, [(name, {**arguments, "area": {"width": 20.0, "height": 12}})]))
    _fails(
        check_calls(case, [(name, {**arguments, "area": {"width": 21.0, "height": 12}})]),
        "area.width = 21.0 is not one of [20]",
    )


def test_lists_inside_dicts_compare_exactly() -> None:
    # simple_python_337: cards maps players to lists of cards; BFCL compares those lists with
    # ==, so their strings are not standardized (case matters)
    case = _real_case("simple_python_337")
    ((name, arguments),) = oracle_calls(case)
    _ok(check_calls(case, [(name, arguments)]))
    cards = dict(arguments["cards"])
    player, hand = next(iter(cards.items()))
    shouted = {**cards, player: [card.upper() for card in hand]}
    _fails(check_calls(case, [(name, {**arguments, "cards": shouted})]), f"cards.{player}")


def test_any_is_read_as_a_string() -> None:
    doc = _fn("describe", {"data": {"type": "any"}}, ["data"])
    case = _case([doc], [{"describe": {"data": ["my_data"]}}])
    _ok(check_calls(case, [("describe", {"data": "My Data"})]))
    _fails(check_calls(case, [("describe", {"data": ["my_data"]})]), "data should be string")


def test_float_is_not_accepted_for_int() -> None:
    case = _numbers_case(count=[3])
    _ok(check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "count": 3})]))
    _fails(
        check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "count": 3.0})]),
        "count should be integer, got float 3.0",
    )


def test_bool_is_not_a_number_and_numbers_are_not_bools() -> None:
    case = _numbers_case(count=[1], exact=[True])
    _ok(check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "count": 1, "exact": True})]))
    _fails(
        check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "count": True, "exact": True})]),
        "count should be integer, got boolean",
    )
    _fails(
        check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "count": 1, "exact": 1})]),
        "exact should be boolean, got integer",
    )


def test_list_items_are_type_checked() -> None:
    case = _numbers_case()
    _fails(
        check_calls(case, [("stats.mean", {"values": [1.5, "2.0"]})]),
        "values[1] should be float, got string",
    )
    _fails(check_calls(case, [("stats.mean", {"values": 1.5})]), "values should be array")


def test_tuples_are_lists() -> None:
    _ok(check_calls(_numbers_case(), [("stats.mean", {"values": (1.5, 2.0)})]))
    point = _fn("geo.point", {"at": {"type": "tuple", "items": F}}, ["at"])
    case = _case([point], [{"geo.point": {"at": [[48.85, 2.35]]}}])
    _ok(check_calls(case, [("geo.point", {"at": (48.85, 2.35)})]))
    _ok(check_calls(case, [("geo.point", {"at": [48.85, 2.35]})]))
    _fails(check_calls(case, [("geo.point", {"at": (2.35, 48.85)})]), "at[0] = 2.35")


def test_nested_lists_are_compared_item_by_item_but_typed_one_level_deep() -> None:
    table = {"type": "array", "items": {"type": "array", "items": I}}
    case = _case([_fn("chi2", {"table": table}, ["table"])], [{"chi2": {"table": [[[1, 2], [3]]]}}])
    _ok(check_calls(case, [("chi2", {"table": [[1, 2], [3]]})]))
    _ok(check_calls(case, [("chi2", {"table": [[1.0, 2], [3.0]]})]))  # as BFCL: 3.0 == 3
    _fails(check_calls(case, [("chi2", {"table": [[1, 2], [3.5]]})]), "table[1][0] = 3.5")
    _fails(check_calls(case, [("chi2", {"table": [[1, 2], 3]})]), "table[1] should be array")
    _fails(check_calls(case, [("chi2", {"table": [[1, 2], [4]]})]), "table[1][0] = 4, expected 3")
    _fails(check_calls(case, [("chi2", {"table": [[1, 2]]})]), "table has 1 items, expected 2")


# -- values ----------------------------------------------------------------------------------


def test_value_must_be_allowed() -> None:
    _fails(
        check_calls(WEATHER_CASE, [("weather.get", {"city": "Boston"})]),
        "city = 'Boston' is not one of ['New York, NY', 'NYC']",
    )
    case = _numbers_case(count=[3, 4])
    _ok(check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "count": 4})]))
    _fails(
        check_calls(case, [("stats.mean", {"values": [1.5, 2.0], "count": 5})]),
        "count = 5 is not one of [3, 4]",
    )


def test_strings_ignore_case_spaces_and_punctuation() -> None:
    for spelling in ("new york ny", "NEW-YORK/NY", "New York,NY.", "n_y_c", "nyc"):
        _ok(check_calls(WEATHER_CASE, [("weather.get", {"city": spelling})]))
    for spelling in ("New York City", "NY", "new jersey ny"):
        _fails(check_calls(WEATHER_CASE, [("weather.get", {"city": spelling})]), "city =")


def test_list_of_strings_is_compared_item_by_item_in_order() -> None:
    tags = _fn("tag", {"names": {"type": "array", "items": S}}, ["names"])
    case = _case([tags], [{"tag": {"names": [["Red Wine", "cheese"]]}}])
    _ok(check_calls(case, [("tag", {"names": ["red wine", "Cheese"]})]))
    _fails(check_calls(case, [("tag", {"names": ["cheese", "red wine"]})]), "names[0]")


def test_empty_list_stands_for_an_optional_list() -> None:
    tags = _fn("tag", {"names": {"type": "array", "items": S}}, [])
    optional = _case([tags], [{"tag": {"names": [["a"], ""]}}])
    _ok(check_calls(optional, [("tag", {"names": []})]))
    _ok(check_calls(optional, [("tag", {})]))
    required = _case([tags], [{"tag": {"names": [["a"]]}}])
    _fails(check_calls(required, [("tag", {"names": []})]), "names has 0 items, expected 1")


def test_answer_contradicting_the_doc_type_is_a_variable() -> None:
    # BFCL writes variables and expressions as strings even for array parameters.
    fit = _fn("fit", {"x": {"type": "array", "items": F}}, ["x"])
    case = _case([fit], [{"fit": {"x": ["data['sales']"]}}])
    _ok(check_calls(case, [("fit", {"x": "data['sales']"})]))
    _fails(check_calls(case, [("fit", {"x": "DATA['SALES']"})]), "x should be array")
    _fails(check_calls(case, [("fit", {"x": [1.0]})]), "x = [1.0] is not one of")


# -- dicts -----------------------------------------------------------------------------------

CONDITIONS = {
    "type": "dict",
    "properties": {
        "department": S,
        "school": S,
        "limits": {"type": "dict", "properties": {"min": I, "max": I}},
    },
}
QUERY = _fn("db.query", {"conditions": CONDITIONS}, ["conditions"])
QUERY_CASE = _case(
    [QUERY],
    [
        {
            "db.query": {
                "conditions": [
                    {
                        "department": ["Science"],
                        "school": ["Bluebird High School", "Bluebird HS", ""],
                        "limits": [{"min": [1], "max": [10, ""]}],
                    }
                ]
            }
        }
    ],
)


def _query(conditions: Any) -> Calls:
    return [("db.query", {"conditions": conditions})]


def test_dict_values_are_checked_key_by_key() -> None:
    good = {"department": "science", "school": "Bluebird HS", "limits": {"min": 1, "max": 10}}
    _ok(check_calls(QUERY_CASE, _query(good)))
    _fails(
        check_calls(QUERY_CASE, _query({**good, "department": "Arts"})),
        "conditions.department = 'Arts' is not one of ['Science']",
    )
    _fails(check_calls(QUERY_CASE, _query({**good, "city": "X"})), "unexpected key 'city'")
    _fails(check_calls(QUERY_CASE, _query("Science")), "conditions should be dict")


def test_dict_keys_allowing_empty_may_be_left_out() -> None:
    _ok(check_calls(QUERY_CASE, _query({"department": "Science", "limits": {"min": 1}})))
    _fails(
        check_calls(QUERY_CASE, _query({"school": "Bluebird HS", "limits": {"min": 1}})),
        "conditions is missing key 'department'",
    )


def test_nested_dicts_are_checked_recursively() -> None:
    base = {"department": "Science"}
    _fails(
        check_calls(QUERY_CASE, _query({**base, "limits": {"min": 2}})),
        "conditions.limits.min = 2",
    )
    _fails(
        check_calls(QUERY_CASE, _query({**base, "limits": {"max": 10}})),
        "conditions.limits is missing key 'min'",
    )
    _fails(
        check_calls(QUERY_CASE, _query({**base, "limits": {"min": "1"}})),
        "conditions.limits.min = '1' is not one of [1]",  # compared, not type-checked (BFCL)
    )
    _fails(
        check_calls(QUERY_CASE, _query({**base, "limits": {"min": True}})),
        "conditions.limits.min = True",  # ours: a bool is never a number (BFCL: True == 1)
    )


def test_list_of_dicts_is_matched_in_order() -> None:
    rule = {"type": "dict", "properties": {"field": S, "op": S}}
    doc = _fn("filter", {"rules": {"type": "array", "items": rule}}, ["rules"])
    case = _case(
        [doc],
        [
            {
                "filter": {
                    "rules": [[{"field": ["age"], "op": [">"]}, {"field": ["job"], "op": ["="]}]]
                }
            }
        ],
    )
    rules = [{"field": "Age", "op": ">"}, {"field": "job", "op": "="}]
    _ok(check_calls(case, [("filter", {"rules": rules})]))
    _fails(check_calls(case, [("filter", {"rules": rules[::-1]})]), "rules[0].field")
    _fails(check_calls(case, [("filter", {"rules": rules[:1]})]), "rules has 1 items")


# -- number of calls, parallel matching --------------------------------------------------------

PRICE = _fn("stock.price", {"company": S, "date": S}, ["company"])


def _price_case(*answers: dict[str, list[Any]]) -> BFCLCase:
    return _case([PRICE], [{"stock.price": a} for a in answers])


def test_wrong_number_of_calls_fails() -> None:
    _fails(check_calls(WEATHER_CASE, []), "expected 1 call (weather.get), got 0 (none)")
    twice = [("weather.get", {"city": "NYC"})] * 2
    _fails(check_calls(WEATHER_CASE, twice), "expected 1 call (weather.get), got 2")
    case = _price_case({"company": ["Apple"]}, {"company": ["Google"]})
    _fails(check_calls(case, [("stock.price", {"company": "Apple"})]), "expected 2 calls")


def test_parallel_calls_match_in_any_order() -> None:
    case = _price_case({"company": ["Apple"]}, {"company": ["Google"]}, {"company": ["Meta"]})
    calls: Calls = [("stock.price", {"company": c}) for c in ("Meta", "Apple", "Google")]
    _ok(check_calls(case, calls))
    _ok(check_calls(case, calls[::-1]))
    calls[0] = ("stock.price", {"company": "Apple"})
    _fails(check_calls(case, calls), "no call matches expected call 3", "'Apple'")


def test_parallel_matching_backtracks_where_greedy_would_fail() -> None:
    # The first call fits both expected calls; taking it for the first one (greedy, as BFCL's
    # own checker does) would leave the second expected call without a match.
    case = _price_case(
        {"company": ["Apple"], "date": ["2024-01-01", "2024-02-01"]},
        {"company": ["Apple"], "date": ["2024-01-01"]},
    )
    calls: Calls = [
        ("stock.price", {"company": "Apple", "date": "2024-01-01"}),
        ("stock.price", {"company": "Apple", "date": "2024-02-01"}),
    ]
    _ok(check_calls(case, calls))
    _ok(check_calls(case, calls[::-1]))
    left_over = ("stock.price", {"company": "Apple", "date": "2024-03-01"})
    _fails(
        check_calls(case, [calls[0], left_over]),
        "no call matches expected call 2: stock.price: date = '2024-03-01' is not one of",
    )


def test_reason_when_a_fitting_call_is_taken_by_another_expected_call() -> None:
    case = _case(
        [PRICE, WEATHER],
        [
            {"stock.price": {"company": ["Apple", "Google"]}},
            {"stock.price": {"company": ["Apple"]}},
            {"weather.get": {"city": ["NYC"]}},
        ],
    )
    apple = ("stock.price", {"company": "Apple"})
    weather = ("weather.get", {"city": "NYC"})
    _ok(check_calls(case, [apple, weather, ("stock.price", {"company": "Google"})]))
    _fails(
        check_calls(case, [apple, weather, weather]),
        "too few correct calls to 'stock.price' (call 3, to 'weather.get', is left over)",
    )


def test_parallel_multiple_needs_each_function() -> None:
    case = _case(
        [PRICE, WEATHER],
        [{"stock.price": {"company": ["Apple"]}}, {"weather.get": {"city": ["NYC"]}}],
    )
    _ok(
        check_calls(case, [("weather.get", {"city": "NYC"}), ("stock.price", {"company": "Apple"})])
    )
    _fails(
        check_calls(case, [("stock.price", {"company": "Apple"})] * 2),
        "no call to 'weather.get' (calls: stock.price, stock.price)",
    )


def test_runtime_calls_map_positional_arguments_in_doc_order() -> None:
    _ok(check_calls(WEATHER_CASE, [Call(id="c1", name="weather.get", positional=("NYC",))]))
    _ok(
        check_calls(
            WEATHER_CASE,
            [Call(id="c1", name="weather.get", arguments={"unit": "celsius"}, positional=("NYC",))],
        )
    )
    _fails(
        check_calls(WEATHER_CASE, [Call(id="c1", name="weather.get", positional=("NYC", "c"))]),
        "unit = 'c' is not one of ['celsius']",
    )
    _fails(
        check_calls(WEATHER_CASE, [Call(id="c1", name="weather.get", positional=(1, 2, 3, 4))]),
        "weather.get: 4 positional arguments for 3 parameters",
    )
    twice = Call(id="c1", name="weather.get", arguments={"city": "NYC"}, positional=("NYC",))
    _fails(check_calls(WEATHER_CASE, [twice]), "parameter 'city' given twice")


def test_no_call_expected() -> None:
    case = _case([WEATHER], [])
    _ok(check_calls(case, []))
    _fails(check_calls(case, [("weather.get", {"city": "NYC"})]), "expected no call, got 1")


# -- the oracle over the development categories ------------------------------------------------


def _perturb_value(value: Any, allowed: list[Any]) -> Any | None:
    """A value of the same kind that is certainly not allowed, or None if there is none."""
    if isinstance(value, bool):
        return None if (not value) in allowed else (not value)
    if isinstance(value, int):
        return value + 7919
    if isinstance(value, float):
        return value + 7919.5
    if isinstance(value, str):
        return value + " zq9"
    if isinstance(value, list):
        return [*value, value[-1] if value else "zq9"]
    if isinstance(value, dict):
        return {**value, "zq9_unknown_key": 1}
    return None


def _wrong_value(case: BFCLCase, calls: Calls) -> Calls | None:
    for i, (name, args) in enumerate(calls):
        allowed = dict(case.expected_calls)[name]
        for param, value in args.items():
            wrong = _perturb_value(value, allowed[param])
            if wrong is not None:
                out = copy.deepcopy(calls)
                out[i][1][param] = wrong
                return out
    return None


def _missing_required(case: BFCLCase, calls: Calls) -> Calls | None:
    for i, (name, args) in enumerate(calls):
        doc = case.function(name)
        assert doc is not None
        for param in doc["parameters"]["required"]:
            if param in args:
                out = copy.deepcopy(calls)
                del out[i][1][param]
                return out
    return None


def _wrong_name(case: BFCLCase, calls: Calls) -> Calls:
    name, args = calls[0]
    others = [d["name"] for d in case.functions if d["name"] != name]
    return [(others[0] if others else name + "_v2", args), *calls[1:]]


@pytest.fixture(scope="module", params=DEVELOPMENT_CATEGORIES)
def category_cases(request: pytest.FixtureRequest) -> list[BFCLCase]:
    return load_category(request.param)


def test_oracle_scores_100_percent(category_cases: list[BFCLCase]) -> None:
    failures = {}
    for case in category_cases:
        result = check_calls(case, oracle_calls(case))
        if not result.correct:
            failures[case.id] = result.reason
    assert failures == {}
    assert len(category_cases) >= 200


def test_oracle_leaves_out_what_may_be_left_out() -> None:
    [case] = [c for c in load_category("simple_python", limit=3) if c.id == "simple_python_2"]
    assert oracle_calls(case) == [("math.hypot", {"x": 4, "y": 5})]


def test_single_perturbations_fail(category_cases: list[BFCLCase]) -> None:
    tried: Counter[str] = Counter()
    wrongly_correct: list[tuple[str, str]] = []
    for case in category_cases:
        calls = oracle_calls(case)
        variants = {
            "wrong value": _wrong_value(case, calls),
            "missing required": _missing_required(case, calls),
            "extra call": [*calls, calls[0]],
            "wrong name": _wrong_name(case, calls),
        }
        for kind, variant in variants.items():
            if variant is None:
                continue
            tried[kind] += 1
            result = check_calls(case, variant)
            if result.correct or not result.reason:
                wrongly_correct.append((case.id, kind))
    assert wrongly_correct == []
    n = len(category_cases)
    # Every case gets an extra call and a wrong name; almost every case has a value to change
    # and a required parameter to drop.
    assert tried["extra call"] == tried["wrong name"] == n
    assert tried["wrong value"] >= 0.97 * n
    assert tried["missing required"] >= 0.97 * n


def test_perturbation_reasons_are_specific() -> None:
    [case] = [c for c in load_category("parallel_multiple", limit=1)]
    calls = oracle_calls(case)
    assert check_calls(case, calls).correct
    missing = _missing_required(case, calls)
    wrong = _wrong_value(case, calls)
    assert missing is not None and wrong is not None
    _fails(check_calls(case, missing), "missing required parameter")
    _fails(check_calls(case, wrong), "is not one of")
    _fails(check_calls(case, [*calls, calls[0]]), "expected 2 calls")
    _fails(check_calls(case, _wrong_name(case, calls)), "no call to")
