"""Weather: current conditions, forecasts, air quality and alerts."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import floats, ints, pick
from counterpoint.tools import tool

DOMAIN = Domain("weather")
_SKY = ("sunny", "cloudy", "light rain", "overcast", "windy", "foggy", "snowing", "clear")


@DOMAIN.register(
    asks=[
        "What's the weather like in {city} right now?",
        "How warm is it in {city} at the moment?",
        "Tell me the current weather in {city}.",
        "What is the temperature in {city} in {unit}?",
        "Check the weather in {city} for me, in {unit} please.",
    ],
    say="It is {temperature} degrees {unit} and {conditions} in {city}.",
)
@tool(estimated_latency=0.3)
def get_current_weather(
    city: str, unit: Literal["celsius", "fahrenheit"] = "celsius"
) -> dict[str, Any]:
    """Get the current weather in a city.

    Args:
        city: The city, e.g. "Lisbon".
        unit: The temperature unit.
    """
    f = Fake("get_current_weather", city)
    temp = f.num(-8, 36)
    if unit == "fahrenheit":
        temp = round(temp * 9 / 5 + 32, 1)
    return {"city": city, "temperature": temp, "unit": unit, "conditions": f.pick(_SKY)}


@DOMAIN.register(
    asks=[
        "What's the forecast for {city} over the next {days} days?",
        "Give me a {days}-day forecast for {city}.",
        "Will it rain in {city} in the coming days?",
        "How will the weather be in {city} this week?",
    ],
    say="Over the next {days} days {city} will see highs of {high} and lows of {low}, "
    "mostly {outlook}.",
)
@tool(estimated_latency=0.45)
def get_forecast(city: str, days: int = 3) -> dict[str, Any]:
    """Get the daily weather forecast for a city.

    Args:
        city: The city to forecast.
        days: How many days ahead (1-10).
    """
    f = Fake("get_forecast", city, days)
    low = f.num(-5, 18)
    return {
        "city": city,
        "days": days,
        "high": round(low + f.num(3, 12), 1),
        "low": low,
        "outlook": f.pick(_SKY),
    }


@DOMAIN.register(
    asks=[
        "How is the air quality in {city} today?",
        "Is the air in {city} safe to breathe right now?",
        "What's the AQI in {city}?",
    ],
    say="The air quality index in {city} is {aqi} ({category}).",
)
@tool(estimated_latency=0.25)
def get_air_quality(city: str) -> dict[str, Any]:
    """Get the air quality index of a city.

    Args:
        city: The city to check.
    """
    f = Fake("get_air_quality", city)
    aqi = f.int(8, 180)
    category = "good" if aqi < 50 else "moderate" if aqi < 100 else "unhealthy"
    return {"city": city, "aqi": aqi, "category": category}


@DOMAIN.register(
    asks=[
        "What's the UV index in {city} today?",
        "Do I need sunscreen in {city}? Check the UV index.",
        "How strong is the sun in {city} right now?",
    ],
    say="The UV index in {city} is {uv_index}, which is {risk} risk.",
)
@tool(estimated_latency=0.15)
def get_uv_index(city: str) -> dict[str, Any]:
    """Get today's UV index for a city.

    Args:
        city: The city to check.
    """
    uv = Fake("get_uv_index", city).int(0, 11)
    return {
        "city": city,
        "uv_index": uv,
        "risk": "low" if uv < 3 else "moderate" if uv < 6 else "high",
    }


@DOMAIN.register(
    asks=[
        "When does the sun rise and set in {city} on {date}?",
        "What time is sunset in {city} on {date}?",
        "Give me sunrise and sunset times for {city} on {date}.",
    ],
    say="On {date} the sun rises at {sunrise} and sets at {sunset} in {city}.",
)
@tool(estimated_latency=0.08)
def get_sunrise_sunset(city: str, date: str) -> dict[str, Any]:
    """Get the sunrise and sunset times of a city on a date.

    Args:
        city: The city.
        date: The date, as YYYY-MM-DD.
    """
    f = Fake("get_sunrise_sunset", city, date)
    return {
        "city": city,
        "date": date,
        "sunrise": f"0{f.int(5, 7)}:{f.int(10, 59)}",
        "sunset": f"{f.int(17, 20)}:{f.int(10, 59)}",
    }


@DOMAIN.register(
    asks=[
        "Are there any weather alerts for {region}?",
        "Check for {severity} weather warnings in {region}.",
        "Is there a storm warning in {region}? Only {severity} alerts or worse.",
    ],
    say="There are {count} active weather alerts for {region}: {alerts}.",
    values={
        "region": pick(
            "Bavaria",
            "Tuscany",
            "Quebec",
            "Patagonia",
            "Kansas",
            "Kerala",
            "Andalusia",
            "Hokkaido",
            "Queensland",
            "Brittany",
        )
    },
)
@tool(estimated_latency=0.35)
def get_weather_alerts(
    region: str, severity: Literal["minor", "moderate", "severe"] = "moderate"
) -> dict[str, Any]:
    """List the active weather alerts of a region.

    Args:
        region: The region or state, e.g. "Bavaria".
        severity: The lowest severity to include.
    """
    f = Fake("get_weather_alerts", region, severity)
    alerts = f.sample(
        ("heavy rain", "high wind", "heat wave", "frost", "thunderstorms", "flooding"), f.int(1, 3)
    )
    return {"region": region, "count": len(alerts), "alerts": alerts}


@DOMAIN.register(
    asks=[
        "How much rain fell in {city} in month {month} of {year}?",
        "What was the total rainfall in {city} for month {month}, {year}?",
    ],
    say="In month {month} of {year}, {city} had {total_mm} mm of rain over "
    "{rainy_days} rainy days.",
    values={"month": ints(1, 12), "year": ints(2000, 2025)},
)
@tool(estimated_latency=0.6)
def get_rainfall_history(city: str, month: int, year: int) -> dict[str, Any]:
    """Get the recorded rainfall of a city for one month.

    Args:
        city: The city.
        month: The month number (1-12).
        year: The year.
    """
    f = Fake("get_rainfall_history", city, month, year)
    return {
        "city": city,
        "month": month,
        "year": year,
        "total_mm": f.num(2, 260),
        "rainy_days": f.int(1, 22),
    }


@DOMAIN.register(
    asks=[
        "What's the pollen count in {city} today?",
        "How bad is the {pollen_type} pollen in {city}?",
        "Check the {pollen_type} pollen level in {city}.",
    ],
    say="The {pollen_type} pollen level in {city} is {level}.",
)
@tool(estimated_latency=0.2)
def get_pollen_count(
    city: str, pollen_type: Literal["grass", "tree", "weed"] = "grass"
) -> dict[str, Any]:
    """Get today's pollen level in a city.

    Args:
        city: The city.
        pollen_type: The kind of pollen.
    """
    level = Fake("get_pollen_count", city, pollen_type).pick(("low", "medium", "high", "very high"))
    return {"city": city, "pollen_type": pollen_type, "level": level}


@DOMAIN.register(
    asks=[
        "What's the forecast at latitude {latitude}, longitude {longitude} for the next "
        "{hours} hours?",
        "Give me the weather at coordinates {latitude}, {longitude}.",
    ],
    then=[
        "then get the weather forecast there for the next {hours} hours",
        "and then check the forecast at that spot",
    ],
    say="At {latitude}, {longitude} expect {temperature} degrees and {conditions} over "
    "the next {hours} hours.",
    links={"latitude": "geocode_city.latitude", "longitude": "geocode_city.longitude"},
    values={
        "latitude": floats(-60, 70, 2),
        "longitude": floats(-170, 170, 2),
        "hours": ints(6, 72),
    },
)
@tool(estimated_latency=0.4)
def get_forecast_by_coordinates(
    latitude: float, longitude: float, hours: int = 24
) -> dict[str, Any]:
    """Get the weather forecast at a pair of coordinates.

    Args:
        latitude: Latitude in degrees.
        longitude: Longitude in degrees.
        hours: How many hours ahead.
    """
    f = Fake("get_forecast_by_coordinates", latitude, longitude, hours)
    return {
        "latitude": latitude,
        "longitude": longitude,
        "hours": hours,
        "temperature": f.num(-10, 35),
        "conditions": f.pick(_SKY),
    }
