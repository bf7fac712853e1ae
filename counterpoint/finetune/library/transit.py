"""Transit: trains, buses, bikes, traffic, parking and taxis."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import floats, ints, pick
from counterpoint.tools import tool

DOMAIN = Domain("transit")


@DOMAIN.register(
    asks=[
        "When are the trains from {origin} to {destination} on {date}?",
        "Find a train from {origin} to {destination} on {date}.",
        "Is there a {travel_class} train {origin} to {destination} on {date}?",
    ],
    say="Train {train_id} leaves {origin} at {departure} on {date} and reaches "
    "{destination} at {arrival}.",
)
@tool(estimated_latency=0.55)
def get_train_times(
    origin: str, destination: str, date: str, travel_class: Literal["first", "second"] = "second"
) -> dict[str, Any]:
    """Find trains between two cities on a date.

    Args:
        origin: The departure city.
        destination: The arrival city.
        date: The date, as YYYY-MM-DD.
        travel_class: The class of travel.
    """
    f = Fake("get_train_times", origin, destination, date)
    dep = f.int(5, 20)
    return {
        "train_id": f.code("TR", 4),
        "origin": origin,
        "destination": destination,
        "date": date,
        "departure": f"{dep:02d}:{f.pick(('04', '32', '47'))}",
        "arrival": f"{dep + f.int(1, 3):02d}:{f.pick(('11', '26', '58'))}",
    }


@DOMAIN.register(
    asks=[
        "Buy a train ticket on {train_id} for {passenger}.",
        "Book {passenger} on train {train_id}.",
    ],
    then=["then buy a ticket for {passenger}", "and book {passenger} on it"],
    say="{passenger} has a ticket on {train_id}, seat {seat}.",
    links={"train_id": "get_train_times.train_id"},
    values={"train_id": lambda rng: f"TR{rng.randint(1000, 9999)}"},
)
@tool(estimated_latency=0.8)
def buy_train_ticket(train_id: str, passenger: str) -> dict[str, Any]:
    """Buy a ticket for a train.

    Args:
        train_id: The train's id.
        passenger: The passenger's full name.
    """
    f = Fake("buy_train_ticket", train_id, passenger)
    return {"train_id": train_id, "passenger": passenger, "seat": f"{f.int(1, 12)}{f.pick('ABCD')}"}


@DOMAIN.register(
    asks=[
        "When does bus {route} next leave in {city}?",
        "Next departure of the {route} bus in {city}?",
    ],
    say="The next {route} bus in {city} leaves in {minutes} minutes from {stop}.",
    values={"route": pick("12", "7A", "42", "N3", "101", "18X")},
)
@tool(estimated_latency=0.2)
def get_next_bus(route: str, city: str) -> dict[str, Any]:
    """Get the next departure of a bus route.

    Args:
        route: The route number, e.g. "42".
        city: The city.
    """
    f = Fake("get_next_bus", route, city)
    return {
        "route": route,
        "city": city,
        "minutes": f.int(1, 25),
        "stop": f"{f.pick(('Central', 'Market', 'Park'))} stop",
    }


@DOMAIN.register(
    asks=[
        "Are there bikes at the {station} station in {city}?",
        "How many shared bikes are free at {station}, {city}?",
    ],
    say="{station} in {city} has {bikes} bikes and {docks} free docks.",
    values={"station": pick("Central", "University", "Harbour", "Museum", "Stadium")},
)
@tool(estimated_latency=0.15)
def get_bike_availability(station: str, city: str) -> dict[str, Any]:
    """Count the shared bikes at a docking station.

    Args:
        station: The station's name.
        city: The city.
    """
    f = Fake("get_bike_availability", station, city)
    return {"station": station, "city": city, "bikes": f.int(0, 30), "docks": f.int(0, 20)}


@DOMAIN.register(
    asks=["How's the traffic on {road} in {city}?", "Is {road} in {city} jammed right now?"],
    say="{road} in {city}: {level} traffic, {delay_minutes} minutes of delay.",
    values={
        "road": pick("the ring road", "Main Street", "the A1", "the harbour bridge", "Route 9")
    },
)
@tool(estimated_latency=0.35)
def get_traffic(road: str, city: str) -> dict[str, Any]:
    """Get the live traffic on a road.

    Args:
        road: The road.
        city: The city.
    """
    f = Fake("get_traffic", road, city)
    return {
        "road": road,
        "city": city,
        "level": f.pick(("light", "moderate", "heavy")),
        "delay_minutes": f.int(0, 45),
    }


@DOMAIN.register(
    asks=[
        "Find parking in {city} for {hours} hours.",
        "Where can I park in {city} for {hours} hours?",
    ],
    say="{garage} in {city} costs {price} for {hours} hours.",
    values={"hours": ints(1, 10)},
)
@tool(estimated_latency=0.3)
def find_parking(city: str, hours: int = 2) -> dict[str, Any]:
    """Find a parking garage and its price.

    Args:
        city: The city.
        hours: How long to park.
    """
    f = Fake("find_parking", city, hours)
    return {
        "city": city,
        "hours": hours,
        "garage": f"{f.pick(('Plaza', 'Station', 'Riverside'))} Garage",
        "price": round(f.num(1, 4.5) * hours, 2),
    }


@DOMAIN.register(
    asks=[
        "How much is a {distance_km} km taxi ride in {city}?",
        "Estimate a taxi fare in {city} for {distance_km} km.",
    ],
    say="A {distance_km} km taxi in {city} costs about {fare}.",
    values={"distance_km": floats(1, 60, 1)},
)
@tool(estimated_latency=0.05)
def estimate_taxi_fare(city: str, distance_km: float, night: bool = False) -> dict[str, Any]:
    """Estimate the fare of a taxi ride.

    Args:
        city: The city.
        distance_km: The distance in kilometres.
        night: Apply the night rate.
    """
    per_km = Fake("taxi", city).num(0.8, 3.2, 2) * (1.3 if night else 1)
    return {"city": city, "fare": round(3.5 + per_km * distance_km, 2)}


@DOMAIN.register(
    asks=[
        "Plan a route from {origin} to {destination} by {mode}.",
        "How do I get from {origin} to {destination} by {mode}?",
    ],
    say="By {mode}, {origin} to {destination} takes {minutes} minutes with {changes} changes.",
)
@tool(estimated_latency=0.65)
def plan_journey(
    origin: str, destination: str, mode: Literal["train", "bus", "car", "bike"] = "train"
) -> dict[str, Any]:
    """Plan a journey between two places.

    Args:
        origin: Where to start.
        destination: Where to go.
        mode: How to travel.
    """
    f = Fake("plan_journey", origin, destination, mode)
    return {
        "origin": origin,
        "destination": destination,
        "mode": mode,
        "minutes": f.int(15, 600),
        "changes": 0 if mode in ("car", "bike") else f.int(0, 3),
    }


_ = ints
