"""Geography: coordinates, countries, time zones, distances and places."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import CITIES, floats
from counterpoint.tools import tool

DOMAIN = Domain("geography")
_LAT = floats(-60, 70, 2)
_LON = floats(-170, 170, 2)


@DOMAIN.register(
    asks=[
        "What are the coordinates of {city}?",
        "Find the latitude and longitude of {city}.",
        "Geocode {city} for me.",
        "Where exactly is {city}? I need its coordinates.",
    ],
    say="{city} is at latitude {latitude}, longitude {longitude}.",
)
@tool(estimated_latency=0.2)
def geocode_city(city: str) -> dict[str, Any]:
    """Find the coordinates of a city.

    Args:
        city: The city's name.
    """
    f = Fake("geocode_city", city)
    return {"city": city, "latitude": f.num(-55, 65, 2), "longitude": f.num(-160, 160, 2)}


@DOMAIN.register(
    asks=[
        "Tell me about {country}: its capital and population.",
        "What is the capital of {country} and how many people live there?",
        "Look up basic facts about {country}.",
    ],
    say="The capital of {country} is {capital}; it has about {population_millions} million "
    "people and uses {currency_code}.",
)
@tool(estimated_latency=0.25)
def get_country_info(country: str) -> dict[str, Any]:
    """Get the capital, population and currency of a country.

    Args:
        country: The country's name.
    """
    f = Fake("get_country_info", country)
    return {
        "country": country,
        "capital": f.pick(CITIES),
        "population_millions": f.num(0.5, 140),
        "currency_code": f.pick(("EUR", "USD", "XOF", "JPY", "NOK", "PEN", "INR")),
    }


@DOMAIN.register(
    asks=[
        "What time zone is {city} in?",
        "What's the UTC offset of {city}?",
        "Which time zone does {city} use?",
    ],
    say="{city} uses {timezone} (UTC{utc_offset}).",
)
@tool(estimated_latency=0.05)
def get_timezone(city: str) -> dict[str, Any]:
    """Get the time zone of a city.

    Args:
        city: The city.
    """
    offset = Fake("get_timezone", city).int(-10, 12)
    return {
        "city": city,
        "timezone": f"Zone/{city.replace(' ', '_')}",
        "utc_offset": f"{offset:+d}",
    }


@DOMAIN.register(
    asks=[
        "How far is {origin} from {destination}?",
        "What's the distance between {origin} and {destination} in {unit}?",
        "How many {unit} is it from {origin} to {destination}?",
    ],
    say="{origin} and {destination} are {distance} {unit} apart.",
)
@tool(estimated_latency=0.15)
def distance_between_cities(
    origin: str, destination: str, unit: Literal["km", "miles"] = "km"
) -> dict[str, Any]:
    """Compute the straight-line distance between two cities.

    Args:
        origin: The first city.
        destination: The second city.
        unit: The unit of the distance.
    """
    km = Fake("distance_between_cities", *sorted((origin, destination))).int(40, 15000)
    distance = km if unit == "km" else round(km * 0.621371)
    return {"origin": origin, "destination": destination, "distance": distance, "unit": unit}


@DOMAIN.register(
    asks=[
        "What is the elevation at latitude {latitude}, longitude {longitude}?",
        "How high above sea level is the point {latitude}, {longitude}?",
    ],
    then=["then tell me the elevation there", "and then look up its elevation"],
    say="The elevation at {latitude}, {longitude} is {elevation_m} m.",
    links={"latitude": "geocode_city.latitude", "longitude": "geocode_city.longitude"},
    values={"latitude": _LAT, "longitude": _LON},
)
@tool(estimated_latency=0.3)
def get_elevation(latitude: float, longitude: float) -> dict[str, Any]:
    """Get the elevation above sea level of a point.

    Args:
        latitude: Latitude in degrees.
        longitude: Longitude in degrees.
    """
    elevation = Fake("get_elevation", latitude, longitude).int(0, 3400)
    return {"latitude": latitude, "longitude": longitude, "elevation_m": elevation}


@DOMAIN.register(
    asks=[
        "Which countries border {country}?",
        "List the neighbours of {country}.",
        "What countries share a border with {country}?",
    ],
    say="{country} borders {neighbours}.",
)
@tool(estimated_latency=0.1)
def list_neighbouring_countries(country: str) -> dict[str, Any]:
    """List the countries that share a border with a country.

    Args:
        country: The country.
    """
    f = Fake("list_neighbouring_countries", country)
    names = ("Austria", "Laos", "Bolivia", "Mali", "Sudan", "Finland", "Hungary", "Paraguay")
    return {"country": country, "neighbours": f.sample(names, f.int(1, 4))}


@DOMAIN.register(
    asks=[
        "Find a {category} within {radius_km} km of {latitude}, {longitude}.",
        "Is there a {category} near latitude {latitude}, longitude {longitude}?",
    ],
    then=[
        "then find a {category} near there",
        "and then look for a {category} within {radius_km} km of it",
    ],
    say="The nearest {category} is {place}, {distance_km} km away.",
    links={"latitude": "geocode_city.latitude", "longitude": "geocode_city.longitude"},
    values={"latitude": _LAT, "longitude": _LON, "radius_km": floats(0.5, 9.5, 1)},
)
@tool(estimated_latency=0.5)
def find_nearby_places(
    latitude: float,
    longitude: float,
    category: Literal["museum", "park", "restaurant", "hospital"],
    radius_km: float = 2.0,
) -> dict[str, Any]:
    """Find the nearest place of a kind around a point.

    Args:
        latitude: Latitude in degrees.
        longitude: Longitude in degrees.
        category: What kind of place.
        radius_km: Search radius in kilometres.
    """
    f = Fake("find_nearby_places", latitude, longitude, category)
    place = f"{f.pick(('Central', 'Old Town', 'Riverside', 'North', 'Harbour'))} {category.title()}"
    return {"category": category, "place": place, "distance_km": f.num(0.1, radius_km, 1)}


@DOMAIN.register(
    asks=[
        "What's the population of {city}?",
        "How many people live in {city}?",
    ],
    say="{city} has a population of {population}.",
)
@tool(estimated_latency=0.12)
def get_city_population(city: str) -> dict[str, Any]:
    """Get the population of a city.

    Args:
        city: The city.
    """
    return {"city": city, "population": Fake("get_city_population", city).int(80_000, 9_000_000)}


@DOMAIN.register(
    asks=[
        "What address is at latitude {latitude}, longitude {longitude}?",
        "Reverse geocode the point {latitude}, {longitude}.",
    ],
    say="The point {latitude}, {longitude} is {address} in {city}.",
    values={"latitude": _LAT, "longitude": _LON},
)
@tool(estimated_latency=0.22)
def reverse_geocode(latitude: float, longitude: float) -> dict[str, Any]:
    """Find the address at a pair of coordinates.

    Args:
        latitude: Latitude in degrees.
        longitude: Longitude in degrees.
    """
    f = Fake("reverse_geocode", latitude, longitude)
    address = f"{f.int(1, 240)} {f.pick(('Station', 'Market', 'Lake', 'Hill', 'Garden'))} Road"
    return {
        "latitude": latitude,
        "longitude": longitude,
        "address": address,
        "city": f.pick(CITIES),
    }
