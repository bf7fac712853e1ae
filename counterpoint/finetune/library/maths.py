"""Maths: arithmetic, statistics, number theory and equations (exact implementations)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from counterpoint.finetune.library._base import Domain
from counterpoint.finetune.library.values import floats, ints, listof
from counterpoint.tools import tool

DOMAIN = Domain("maths")
_NUMS = listof(floats(1, 500, 1), 3, 6)


@DOMAIN.register(
    asks=["What is the sum of {numbers}?", "Add up {numbers}.", "Total these numbers: {numbers}."],
    say="The sum is {total}.",
    values={"numbers": _NUMS},
)
@tool(estimated_latency=0.005)
def sum_numbers(numbers: list[float]) -> dict[str, Any]:
    """Add a list of numbers.

    Args:
        numbers: The numbers to add.
    """
    return {"total": round(math.fsum(numbers), 6)}


@DOMAIN.register(
    asks=[
        "What's the average of {numbers}?",
        "Compute the mean of {numbers}.",
        "Find the arithmetic mean of these values: {numbers}.",
    ],
    say="The mean is {mean}.",
    values={"numbers": _NUMS},
)
@tool(estimated_latency=0.005)
def calculate_mean(numbers: list[float]) -> dict[str, Any]:
    """Compute the arithmetic mean of a list of numbers.

    Args:
        numbers: The numbers.
    """
    return {"mean": round(statistics.fmean(numbers), 4)}


@DOMAIN.register(
    asks=[
        "What's the standard deviation of {numbers}?",
        ("Compute the sample standard deviation of {numbers}.", {"sample": True}),
        "How spread out are {numbers}? Give the standard deviation.",
    ],
    say="The standard deviation is {stdev}.",
    values={"numbers": _NUMS},
)
@tool(estimated_latency=0.01)
def standard_deviation(numbers: list[float], sample: bool = False) -> dict[str, Any]:
    """Compute the standard deviation of a list of numbers.

    Args:
        numbers: The numbers.
        sample: Use the sample (n-1) formula instead of the population one.
    """
    value = statistics.stdev(numbers) if sample else statistics.pstdev(numbers)
    return {"stdev": round(value, 4), "sample": sample}


@DOMAIN.register(
    asks=[
        "Solve {a}x^2 + {b}x + {c} = 0.",
        "Find the roots of the quadratic with a={a}, b={b}, c={c}.",
        "What are the solutions of {a}x² + {b}x + {c} = 0?",
    ],
    say="The roots are {roots}.",
    values={"a": ints(1, 9), "b": ints(-20, 20), "c": ints(-30, 10)},
)
@tool(estimated_latency=0.01)
def solve_quadratic(a: float, b: float, c: float) -> dict[str, Any]:
    """Solve a quadratic equation ax^2 + bx + c = 0.

    Args:
        a: The x^2 coefficient (not zero).
        b: The x coefficient.
        c: The constant term.
    """
    if a == 0:
        return {"roots": [], "error": "a must not be zero"}
    d = b * b - 4 * a * c
    if d < 0:
        return {"roots": "none (complex)"}
    r = math.sqrt(d)
    return {"roots": sorted({round((-b - r) / (2 * a), 4), round((-b + r) / (2 * a), 4)})}


@DOMAIN.register(
    asks=["What is {n} factorial?", "Compute {n}!.", "Calculate the factorial of {n}."],
    say="{n}! is {result}.",
    values={"n": ints(3, 20)},
)
@tool(estimated_latency=0.005)
def factorial(n: int) -> dict[str, Any]:
    """Compute the factorial of a non-negative integer.

    Args:
        n: The integer (0-170).
    """
    return {"n": n, "result": math.factorial(n)}


@DOMAIN.register(
    asks=["Is {n} a prime number?", "Check whether {n} is prime.", "Tell me if {n} is prime."],
    say="Is {n} prime: {is_prime}.",
    values={"n": ints(11, 99991)},
)
@tool(estimated_latency=0.01)
def is_prime(n: int) -> dict[str, Any]:
    """Tell whether an integer is prime.

    Args:
        n: The integer to test.
    """
    prime = n > 1 and all(n % k for k in range(2, math.isqrt(n) + 1))
    return {"n": n, "is_prime": prime}


@DOMAIN.register(
    asks=[
        "What's the greatest common divisor of {a} and {b}?",
        "Find the GCD of {a} and {b}.",
    ],
    say="The greatest common divisor of {a} and {b} is {gcd}.",
    values={"a": ints(12, 5000), "b": ints(12, 5000)},
)
@tool(estimated_latency=0.005)
def greatest_common_divisor(a: int, b: int) -> dict[str, Any]:
    """Compute the greatest common divisor of two integers.

    Args:
        a: The first integer.
        b: The second integer.
    """
    return {"a": a, "b": b, "gcd": math.gcd(a, b)}


@DOMAIN.register(
    asks=[
        "How much will {principal} grow to at {rate_percent}% a year over {years} years?",
        "Compute compound interest on {principal} at {rate_percent} percent for {years} years, "
        "compounded {compounds_per_year} times a year.",
    ],
    say="{principal} at {rate_percent}% for {years} years grows to {final_amount}.",
    values={
        "principal": ints(100, 90000),
        "rate_percent": floats(0.5, 9, 2),
        "years": ints(1, 40),
        "compounds_per_year": ints(1, 12),
    },
)
@tool(estimated_latency=0.005)
def compound_interest(
    principal: float, rate_percent: float, years: int, compounds_per_year: int = 12
) -> dict[str, Any]:
    """Compute the final amount of a deposit with compound interest.

    Args:
        principal: The starting amount.
        rate_percent: The yearly rate in percent.
        years: How many years.
        compounds_per_year: How often interest is added each year.
    """
    n = compounds_per_year
    final = principal * (1 + rate_percent / 100 / n) ** (n * years)
    return {"final_amount": round(final, 2)}


@DOMAIN.register(
    asks=[
        "What percentage of {whole} is {part}?",
        "{part} out of {whole} is what percent?",
        "Express {part} as a percentage of {whole}.",
    ],
    say="{part} is {percent}% of {whole}.",
    values={"part": ints(1, 400), "whole": ints(401, 5000)},
)
@tool(estimated_latency=0.005)
def percentage_of(part: float, whole: float) -> dict[str, Any]:
    """Compute what percentage one number is of another.

    Args:
        part: The part.
        whole: The whole (not zero).
    """
    return {"percent": round(100 * part / whole, 2) if whole else None}


@DOMAIN.register(
    asks=[
        "Round {value} to {digits} decimal places.",
        "What is {value} rounded to {digits} digits?",
    ],
    say="{value} rounded to {digits} places is {rounded}.",
    values={"value": floats(0, 1000, 5), "digits": ints(0, 3)},
)
@tool(estimated_latency=0.005)
def round_number(value: float, digits: int = 2) -> dict[str, Any]:
    """Round a number to a number of decimal places.

    Args:
        value: The number.
        digits: How many decimal places to keep.
    """
    return {"rounded": round(value, digits)}


@DOMAIN.register(
    asks=["What is the {n}th Fibonacci number?", "Compute Fibonacci number {n}."],
    say="Fibonacci number {n} is {value}.",
    values={"n": ints(5, 80)},
)
@tool(estimated_latency=0.005)
def fibonacci(n: int) -> dict[str, Any]:
    """Compute the n-th Fibonacci number (F(0) = 0, F(1) = 1).

    Args:
        n: The index.
    """
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return {"n": n, "value": a}
