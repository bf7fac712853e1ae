"""Real estate: listings, viewings, valuations, mortgages and neighbourhoods."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import (
    CITIES,
    LANGUAGES,
    full_name,
    ints,
    listof,
    pick,
    time_of_day,
)
from counterpoint.tools import tool

DOMAIN = Domain("real_estate")
_LISTING = lambda rng: f"LS{rng.randint(10000, 99999)}"  # noqa: E731
_HOODS = pick(
    "Old Town", "Riverside", "Harbour District", "Hillcrest", "Green Park", "Market Quarter"
)


@DOMAIN.register(
    asks=[
        "Find {bedrooms}-bedroom homes for {listing_type} in {city}.",
        "Search {listing_type} listings in {city} with {bedrooms} bedrooms under {max_price}.",
        "Show me places for {listing_type} in {city}, {bedrooms} bedrooms.",
    ],
    say="Listing {listing_id}: {address}, {city}, for {price}.",
    values={"bedrooms": ints(1, 5), "max_price": ints(800, 900000)},
)
@tool(estimated_latency=0.7)
def search_listings(
    city: str,
    bedrooms: int,
    listing_type: Literal["rent", "sale"] = "sale",
    max_price: float | None = None,
) -> dict[str, Any]:
    """Search property listings in a city.

    Args:
        city: The city.
        bedrooms: How many bedrooms.
        listing_type: For rent or for sale.
        max_price: The highest price (monthly rent or sale price).
    """
    f = Fake("search_listings", city, bedrooms, listing_type, max_price)
    top = max_price or (3000 if listing_type == "rent" else 800000)
    return {
        "listing_id": f.code("LS", 5),
        "city": city,
        "address": f"{f.int(1, 300)} {f.pick(('Elm', 'Quay', 'Castle', 'Orchard'))} Street",
        "price": f.num(top * 0.4, top, 0),
    }


@DOMAIN.register(
    asks=["Tell me more about listing {listing_id}.", "What are the details of {listing_id}?"],
    then=["then show me its details", "and tell me more about it"],
    say="Listing {listing_id} is {size_sqm} m², built in {year_built}, "
    "energy class {energy_class}.",
    links={"listing_id": "search_listings.listing_id"},
    values={"listing_id": _LISTING},
)
@tool(estimated_latency=0.3)
def get_listing_details(listing_id: str) -> dict[str, Any]:
    """Get the details of a property listing.

    Args:
        listing_id: The listing's id.
    """
    f = Fake("get_listing_details", listing_id)
    return {
        "listing_id": listing_id,
        "size_sqm": f.int(28, 260),
        "year_built": f.int(1890, 2024),
        "energy_class": f.pick("ABCDE"),
    }


@DOMAIN.register(
    asks=[
        "Book a viewing of {listing_id} on {date} at {time} for {name}.",
        "Arrange for {name} to see {listing_id} on {date} at {time}.",
    ],
    then=[
        "then book a viewing on {date} at {time} for {name}",
        "and arrange a visit for {name} on {date} at {time}",
    ],
    say="{name} will view {listing_id} on {date} at {time} ({viewing_id}).",
    links={"listing_id": "search_listings.listing_id"},
    values={"listing_id": _LISTING, "time": time_of_day, "name": full_name},
)
@tool(estimated_latency=0.6)
def schedule_viewing(listing_id: str, date: str, time: str, name: str) -> dict[str, Any]:
    """Book a viewing of a property.

    Args:
        listing_id: The listing's id.
        date: The date, as YYYY-MM-DD.
        time: The time, as HH:MM.
        name: Who will visit.
    """
    return {
        "listing_id": listing_id,
        "date": date,
        "time": time,
        "name": name,
        "viewing_id": Fake("schedule_viewing", listing_id, date, time).code("VW", 5),
    }


@DOMAIN.register(
    asks=[
        "What's a {size_sqm} m² home with {bedrooms} bedrooms in {city} worth?",
        "Estimate the value of a {bedrooms}-bedroom, {size_sqm} m² flat in {city}.",
    ],
    say="A {size_sqm} m² home with {bedrooms} bedrooms in {city} is worth about {estimate}.",
    values={"size_sqm": ints(30, 250), "bedrooms": ints(1, 5)},
)
@tool(estimated_latency=0.8)
def estimate_property_value(city: str, size_sqm: float, bedrooms: int) -> dict[str, Any]:
    """Estimate a property's market value.

    Args:
        city: The city.
        size_sqm: The floor area in square metres.
        bedrooms: How many bedrooms.
    """
    per_sqm = Fake("price_per_sqm", city).int(1500, 12000)
    return {"city": city, "estimate": round(per_sqm * size_sqm + 8000 * bedrooms)}


@DOMAIN.register(
    asks=[
        "What's the mortgage on a {price} home with {down_payment} down over {years} years "
        "at {rate_percent}%?",
        "Monthly payment for a {years}-year mortgage: price {price}, deposit {down_payment}, "
        "rate {rate_percent}%?",
    ],
    say="A {price} home with {down_payment} down over {years} years at {rate_percent}% costs "
    "{monthly_payment} a month.",
    values={
        "price": ints(90000, 1500000),
        "down_payment": ints(5000, 80000),
        "years": ints(10, 35),
        "rate_percent": pick(2.5, 3.1, 3.75, 4.2, 5.05, 6.4),
    },
)
@tool(estimated_latency=0.01)
def calculate_mortgage(
    price: float, down_payment: float, years: int, rate_percent: float
) -> dict[str, Any]:
    """Compute the monthly payment of a mortgage.

    Args:
        price: The purchase price.
        down_payment: The deposit paid up front.
        years: The term in years.
        rate_percent: The yearly interest rate in percent.
    """
    principal, r, n = max(price - down_payment, 0), rate_percent / 1200, years * 12
    monthly = principal / n if r == 0 else principal * r / (1 - (1 + r) ** -n)
    return {"monthly_payment": round(monthly, 2)}


@DOMAIN.register(
    asks=[
        "What's {neighbourhood} in {city} like?",
        "Give me stats on the {neighbourhood} area of {city}.",
    ],
    say="{neighbourhood}, {city}: safety score {safety_score}/10, {schools} schools, "
    "median rent {median_rent}.",
    values={"neighbourhood": _HOODS},
)
@tool(estimated_latency=0.5)
def get_neighbourhood_stats(neighbourhood: str, city: str) -> dict[str, Any]:
    """Get statistics about a neighbourhood.

    Args:
        neighbourhood: The neighbourhood's name.
        city: The city.
    """
    f = Fake("get_neighbourhood_stats", neighbourhood, city)
    return {
        "neighbourhood": neighbourhood,
        "city": city,
        "safety_score": f.num(4, 9.8),
        "schools": f.int(1, 14),
        "median_rent": f.int(500, 3200),
    }


@DOMAIN.register(
    asks=[
        "Compare rents for {bedrooms}-bedroom flats in {cities}.",
        "Where is a {bedrooms}-bedroom place cheapest to rent: {cities}?",
    ],
    say="For {bedrooms} bedrooms, {cheapest} is cheapest and {priciest} the most expensive.",
    values={"cities": listof(CITIES, 2, 4), "bedrooms": ints(1, 4)},
)
@tool(estimated_latency=0.9)
def compare_rents(cities: list[str], bedrooms: int = 2) -> dict[str, Any]:
    """Compare typical rents across cities.

    Args:
        cities: The cities.
        bedrooms: How many bedrooms.
    """
    ranked = sorted(cities, key=lambda c: Fake("rent", c, bedrooms).int(300, 4000))
    return {"bedrooms": bedrooms, "cheapest": ranked[0], "priciest": ranked[-1]}


@DOMAIN.register(
    asks=[
        "What's the property tax in {city} on a home assessed at {assessed_value}?",
        "How much property tax for {assessed_value} in {city}?",
    ],
    say="Property tax in {city} on {assessed_value} is {tax} a year ({rate_percent}%).",
    values={"assessed_value": ints(50000, 2000000)},
)
@tool(estimated_latency=0.2)
def get_property_tax(city: str, assessed_value: float) -> dict[str, Any]:
    """Compute the yearly property tax of a home.

    Args:
        city: The city.
        assessed_value: The assessed value of the property.
    """
    rate = Fake("get_property_tax", city).num(0.2, 2.2, 2)
    return {"city": city, "rate_percent": rate, "tax": round(assessed_value * rate / 100, 2)}


@DOMAIN.register(
    asks=[
        "Find an estate agent in {city} who speaks {language}.",
        "I need a {language}-speaking realtor in {city}.",
    ],
    say="{agent_name} ({agency}) in {city} speaks {language}.",
    values={"language": pick(*LANGUAGES)},
)
@tool(estimated_latency=0.4)
def find_estate_agent(city: str, language: str = "English") -> dict[str, Any]:
    """Find an estate agent in a city.

    Args:
        city: The city.
        language: A language the agent speaks.
    """
    f = Fake("find_estate_agent", city, language)
    return {
        "city": city,
        "language": language,
        "agent_name": f"{f.pick(('Ines', 'Marek', 'Sade'))} {f.pick(('Costa', 'Varga', 'Banda'))}",
        "agency": f"{f.pick(('Keystone', 'Harbour', 'Oak'))} Homes",
    }
