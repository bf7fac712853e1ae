"""Units: conversions of length, temperature, weight, volume, speed, area, data and time."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain
from counterpoint.finetune.library.values import floats
from counterpoint.tools import tool

DOMAIN = Domain("units")
_VALUE = {"value": floats(0.5, 900, 2)}
_ASKS = [
    "Convert {value} {from_unit} to {to_unit}.",
    "How many {to_unit} is {value} {from_unit}?",
    "What is {value} {from_unit} in {to_unit}?",
    "I have {value} {from_unit}; how much is that in {to_unit}?",
]
_SAY = "{value} {from_unit} is {result} {to_unit}."


def _scale(table: dict[str, float], value: float, src: str, dst: str) -> dict[str, Any]:
    return {"result": round(value * table[src] / table[dst], 4)}


_LENGTH = {"meters": 1.0, "kilometers": 1000.0, "miles": 1609.344, "feet": 0.3048, "inches": 0.0254}
_WEIGHT = {"grams": 1.0, "kilograms": 1000.0, "pounds": 453.592, "ounces": 28.3495}
_VOLUME = {"liters": 1.0, "milliliters": 0.001, "gallons": 3.78541, "cups": 0.236588}
_SPEED = {"kmh": 1.0, "mph": 1.609344, "knots": 1.852}
_AREA = {"hectares": 10000.0, "acres": 4046.86, "sqm": 1.0, "sqft": 0.092903}
_DATA = {"KB": 1.0, "MB": 1024.0, "GB": 1024.0**2, "TB": 1024.0**3}
_TIME = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0}

LengthUnit = Literal["meters", "kilometers", "miles", "feet", "inches"]
WeightUnit = Literal["grams", "kilograms", "pounds", "ounces"]
VolumeUnit = Literal["liters", "milliliters", "gallons", "cups"]
SpeedUnit = Literal["kmh", "mph", "knots"]
AreaUnit = Literal["hectares", "acres", "sqm", "sqft"]
DataUnit = Literal["KB", "MB", "GB", "TB"]
TimeUnit = Literal["seconds", "minutes", "hours", "days"]
TempUnit = Literal["celsius", "fahrenheit", "kelvin"]


@DOMAIN.register(asks=_ASKS, say=_SAY, values=_VALUE)
@tool(estimated_latency=0.004)
def convert_length(value: float, from_unit: LengthUnit, to_unit: LengthUnit) -> dict[str, Any]:
    """Convert a length between units.

    Args:
        value: The length.
        from_unit: Its unit.
        to_unit: The unit to convert to.
    """
    return _scale(_LENGTH, value, from_unit, to_unit)


@DOMAIN.register(asks=_ASKS, say=_SAY, values=_VALUE)
@tool(estimated_latency=0.004)
def convert_weight(value: float, from_unit: WeightUnit, to_unit: WeightUnit) -> dict[str, Any]:
    """Convert a weight between units.

    Args:
        value: The weight.
        from_unit: Its unit.
        to_unit: The unit to convert to.
    """
    return _scale(_WEIGHT, value, from_unit, to_unit)


@DOMAIN.register(asks=_ASKS, say=_SAY, values=_VALUE)
@tool(estimated_latency=0.004)
def convert_volume(value: float, from_unit: VolumeUnit, to_unit: VolumeUnit) -> dict[str, Any]:
    """Convert a volume between units.

    Args:
        value: The volume.
        from_unit: Its unit.
        to_unit: The unit to convert to.
    """
    return _scale(_VOLUME, value, from_unit, to_unit)


@DOMAIN.register(asks=_ASKS, say=_SAY, values=_VALUE)
@tool(estimated_latency=0.004)
def convert_speed(value: float, from_unit: SpeedUnit, to_unit: SpeedUnit) -> dict[str, Any]:
    """Convert a speed between units.

    Args:
        value: The speed.
        from_unit: Its unit (kmh is kilometres per hour).
        to_unit: The unit to convert to.
    """
    return _scale(_SPEED, value, from_unit, to_unit)


@DOMAIN.register(asks=_ASKS, say=_SAY, values=_VALUE)
@tool(estimated_latency=0.004)
def convert_area(value: float, from_unit: AreaUnit, to_unit: AreaUnit) -> dict[str, Any]:
    """Convert an area between units.

    Args:
        value: The area.
        from_unit: Its unit (sqm: square metres, sqft: square feet).
        to_unit: The unit to convert to.
    """
    return _scale(_AREA, value, from_unit, to_unit)


@DOMAIN.register(asks=_ASKS, say=_SAY, values=_VALUE)
@tool(estimated_latency=0.004)
def convert_data_size(value: float, from_unit: DataUnit, to_unit: DataUnit) -> dict[str, Any]:
    """Convert an amount of data between units (binary multiples).

    Args:
        value: The amount of data.
        from_unit: Its unit.
        to_unit: The unit to convert to.
    """
    return _scale(_DATA, value, from_unit, to_unit)


@DOMAIN.register(asks=_ASKS, say=_SAY, values=_VALUE)
@tool(estimated_latency=0.004)
def convert_duration(value: float, from_unit: TimeUnit, to_unit: TimeUnit) -> dict[str, Any]:
    """Convert a duration between units.

    Args:
        value: The duration.
        from_unit: Its unit.
        to_unit: The unit to convert to.
    """
    return _scale(_TIME, value, from_unit, to_unit)


@DOMAIN.register(
    asks=[*_ASKS, "What's {value} degrees {from_unit} in {to_unit}?"],
    say=_SAY,
    values={"value": floats(-40, 120, 1)},
)
@tool(estimated_latency=0.004)
def convert_temperature(value: float, from_unit: TempUnit, to_unit: TempUnit) -> dict[str, Any]:
    """Convert a temperature between scales.

    Args:
        value: The temperature.
        from_unit: Its scale.
        to_unit: The scale to convert to.
    """
    kelvin = {
        "celsius": value + 273.15,
        "fahrenheit": (value - 32) * 5 / 9 + 273.15,
        "kelvin": value,
    }[from_unit]
    out = {
        "celsius": kelvin - 273.15,
        "fahrenheit": (kelvin - 273.15) * 9 / 5 + 32,
        "kelvin": kelvin,
    }[to_unit]
    return {"result": round(out, 2)}
