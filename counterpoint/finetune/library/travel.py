"""Travel: flights, hotels, cars, airports, visas and advisories."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import COUNTRIES, ints, pick
from counterpoint.tools import tool

DOMAIN = Domain("travel")
_AIRLINES = ("SkyLark", "Aurora Air", "BlueFin", "Condor Lines", "Meridian", "Polar Wings")
_FLIGHT_NO = lambda rng: f"{rng.choice(('SK', 'AU', 'BF', 'CL', 'MR'))}{rng.randint(100, 9999)}"  # noqa: E731


@DOMAIN.register(
    asks=[
        "Find me a flight from {origin} to {destination} on {date}.",
        "Are there flights from {origin} to {destination} on {date}?",
        "Search {cabin} flights from {origin} to {destination} on {date}.",
        "I need a {cabin} seat from {origin} to {destination} on {date}, "
        "at most {max_stops} stops.",
        "Look for the cheapest flight {origin} to {destination} on {date}.",
    ],
    say="The best flight from {origin} to {destination} on {date} is {airline} {flight_id} at "
    "{departure}, for {price} EUR.",
    values={"max_stops": ints(0, 2)},
)
@tool(estimated_latency=0.9)
def search_flights(
    origin: str,
    destination: str,
    date: str,
    cabin: Literal["economy", "premium", "business"] = "economy",
    max_stops: int = 1,
) -> dict[str, Any]:
    """Search flights between two cities on a date.

    Args:
        origin: The departure city.
        destination: The arrival city.
        date: The travel date, as YYYY-MM-DD.
        cabin: The cabin class.
        max_stops: The most stops allowed.
    """
    f = Fake("search_flights", origin, destination, date, cabin, max_stops)
    base = {"economy": 1, "premium": 1.8, "business": 3.5}[cabin]
    return {
        "flight_id": f.code("FL", 5),
        "airline": f.pick(_AIRLINES),
        "origin": origin,
        "destination": destination,
        "date": date,
        "departure": f"{f.int(6, 22):02d}:{f.pick(('05', '20', '35', '50'))}",
        "price": round(f.num(60, 700) * base, 2),
    }


@DOMAIN.register(
    asks=[
        "Book flight {flight_id} for {passenger}.",
        "Reserve a {seat_preference} seat on flight {flight_id} for {passenger}.",
        "Please book {flight_id} in the name of {passenger}.",
    ],
    then=[
        "then book it for {passenger}",
        "and book that flight for {passenger}, {seat_preference} seat",
        "then reserve it in the name of {passenger}",
    ],
    say="{passenger} is booked on {flight_id}; the booking reference is {booking_ref}.",
    links={"flight_id": "search_flights.flight_id"},
    values={"flight_id": lambda rng: f"FL{rng.randint(10000, 99999)}"},
)
@tool(estimated_latency=1.2)
def book_flight(
    flight_id: str, passenger: str, seat_preference: Literal["window", "aisle", "any"] = "any"
) -> dict[str, Any]:
    """Book a seat on a flight.

    Args:
        flight_id: The flight's id from a search.
        passenger: The passenger's full name.
        seat_preference: Where to sit.
    """
    f = Fake("book_flight", flight_id, passenger, seat_preference)
    return {
        "flight_id": flight_id,
        "passenger": passenger,
        "booking_ref": f.code(n=6),
        "status": "confirmed",
    }


@DOMAIN.register(
    asks=["Show me booking {booking_ref}.", "What are the details of booking {booking_ref}?"],
    then=["then show me the booking", "and then give me the booking details"],
    say="Booking {booking_ref}: seat {seat}, terminal {terminal}, boarding at {boarding_time}.",
    links={"booking_ref": "book_flight.booking_ref"},
    values={
        "booking_ref": lambda rng: "".join(
            rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)
        )
    },
)
@tool(estimated_latency=0.25)
def get_booking(booking_ref: str) -> dict[str, Any]:
    """Get the details of a flight booking.

    Args:
        booking_ref: The six-character booking reference.
    """
    f = Fake("get_booking", booking_ref)
    return {
        "booking_ref": booking_ref,
        "seat": f"{f.int(1, 40)}{f.pick('ABCDEF')}",
        "terminal": f.int(1, 5),
        "boarding_time": f"{f.int(6, 22):02d}:{f.pick(('00', '15', '30', '45'))}",
    }


@DOMAIN.register(
    asks=[
        "Is flight {flight_number} on time?",
        "What's the status of flight {flight_number}?",
        "Has {flight_number} been delayed?",
    ],
    say="Flight {flight_number} is {status}, gate {gate}, delayed {delay_minutes} minutes.",
    values={"flight_number": _FLIGHT_NO},
)
@tool(estimated_latency=0.3)
def get_flight_status(flight_number: str) -> dict[str, Any]:
    """Get the live status of a flight.

    Args:
        flight_number: The flight number, e.g. "SK1234".
    """
    f = Fake("get_flight_status", flight_number)
    if f.chance(0.3):
        return {"flight_number": flight_number, "error": "unknown flight number"}
    delay = f.pick((0, 0, 0, 15, 40, 90))
    return {
        "flight_number": flight_number,
        "status": "on time" if delay == 0 else "delayed",
        "gate": f"{f.pick('ABCDE')}{f.int(1, 40)}",
        "delay_minutes": delay,
    }


@DOMAIN.register(
    asks=[
        "Find a hotel in {city} from {check_in} to {check_out}.",
        "Search hotels in {city} for {guests} guests, {check_in} to {check_out}.",
        "I need a room in {city} between {check_in} and {check_out}, under {max_price} a night.",
        "Where can I stay in {city} from {check_in} until {check_out}?",
    ],
    say="{hotel_name} in {city} has a room from {check_in} to {check_out} at "
    "{price_per_night} a night.",
    values={"guests": ints(1, 5), "max_price": ints(60, 400)},
)
@tool(estimated_latency=0.85)
def search_hotels(
    city: str, check_in: str, check_out: str, guests: int = 2, max_price: float | None = None
) -> dict[str, Any]:
    """Search hotels with a free room in a city.

    Args:
        city: The city.
        check_in: The arrival date, as YYYY-MM-DD.
        check_out: The departure date, as YYYY-MM-DD.
        guests: How many guests.
        max_price: The most to pay per night.
    """
    f = Fake("search_hotels", city, check_in, check_out, guests, max_price)
    price = f.num(45, max_price if max_price else 380, 2)
    name = f"Hotel {f.pick(('Miramar', 'Central', 'Aurora', 'Linden', 'Solstice', 'Harbour'))}"
    return {
        "hotel_id": f.code("HT", 5),
        "hotel_name": name,
        "city": city,
        "check_in": check_in,
        "check_out": check_out,
        "price_per_night": price,
    }


@DOMAIN.register(
    asks=[
        "Book hotel {hotel_id} for {guest_name} from {check_in} to {check_out}.",
        "Reserve a room at {hotel_id} from {check_in} to {check_out} for {guest_name}.",
    ],
    then=["then book it for {guest_name}", "and reserve that hotel for {guest_name}"],
    say="{guest_name} is booked at {hotel_id} from {check_in} to {check_out}, "
    "confirmation {confirmation}.",
    links={
        "hotel_id": "search_hotels.hotel_id",
        "check_in": "search_hotels.check_in",
        "check_out": "search_hotels.check_out",
    },
    values={"hotel_id": lambda rng: f"HT{rng.randint(10000, 99999)}"},
)
@tool(estimated_latency=1.1)
def book_hotel(hotel_id: str, guest_name: str, check_in: str, check_out: str) -> dict[str, Any]:
    """Book a hotel room.

    Args:
        hotel_id: The hotel's id from a search.
        guest_name: The guest's full name.
        check_in: The arrival date.
        check_out: The departure date.
    """
    f = Fake("book_hotel", hotel_id, guest_name, check_in, check_out)
    return {
        "hotel_id": hotel_id,
        "guest_name": guest_name,
        "check_in": check_in,
        "check_out": check_out,
        "confirmation": f.code("H-", 6),
    }


@DOMAIN.register(
    asks=[
        "Do citizens of {nationality} need a visa for {destination_country}?",
        "Visa rules for a {nationality} passport holder visiting {destination_country}?",
        "Can someone from {nationality} travel to {destination_country} without a visa?",
    ],
    say="Travellers from {nationality} to {destination_country}: visa required: "
    "{visa_required}, stays up to {max_stay_days} days.",
    values={"nationality": pick(*COUNTRIES), "destination_country": pick(*COUNTRIES)},
)
@tool(estimated_latency=0.4)
def get_visa_requirements(nationality: str, destination_country: str) -> dict[str, Any]:
    """Get the visa rules for a nationality visiting a country.

    Args:
        nationality: The traveller's country of citizenship.
        destination_country: The country to visit.
    """
    f = Fake("get_visa_requirements", nationality, destination_country)
    return {
        "nationality": nationality,
        "destination_country": destination_country,
        "visa_required": f.chance(0.4),
        "max_stay_days": f.pick((30, 60, 90, 180)),
    }


@DOMAIN.register(
    asks=[
        "Rent a car in {city} from {pickup_date} to {return_date}.",
        "I need a {car_class} rental car in {city}, {pickup_date} to {return_date}.",
        "Book a {car_class} car in {city} picking up {pickup_date}, returning {return_date}.",
    ],
    say="Your {car_class} car in {city} is reserved ({reservation_id}), {total_price} in total.",
    values={
        "pickup_date": lambda rng: f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 14):02d}",
        "return_date": lambda rng: f"2026-{rng.randint(1, 12):02d}-{rng.randint(15, 28):02d}",
    },
)
@tool(estimated_latency=0.95)
def rent_car(
    city: str,
    pickup_date: str,
    return_date: str,
    car_class: Literal["compact", "suv", "van", "electric"] = "compact",
) -> dict[str, Any]:
    """Reserve a rental car.

    Args:
        city: Where to pick it up.
        pickup_date: The pick-up date.
        return_date: The return date.
        car_class: The kind of car.
    """
    f = Fake("rent_car", city, pickup_date, return_date, car_class)
    return {
        "city": city,
        "car_class": car_class,
        "reservation_id": f.code("CR", 6),
        "total_price": f.num(90, 900, 2),
    }


@DOMAIN.register(
    asks=[
        "How much baggage can I take on {airline} in {cabin}?",
        "What's the {cabin} luggage allowance with {airline}?",
    ],
    say="{airline} allows {checked_kg} kg checked and {cabin_kg} kg cabin baggage in {cabin}.",
    values={"airline": pick(*_AIRLINES)},
)
@tool(estimated_latency=0.1)
def get_baggage_allowance(
    airline: str, cabin: Literal["economy", "premium", "business"] = "economy"
) -> dict[str, Any]:
    """Get an airline's baggage allowance for a cabin class.

    Args:
        airline: The airline's name.
        cabin: The cabin class.
    """
    f = Fake("get_baggage_allowance", airline, cabin)
    return {
        "airline": airline,
        "cabin": cabin,
        "checked_kg": f.pick((0, 20, 23, 32)),
        "cabin_kg": f.pick((7, 8, 10, 12)),
    }


@DOMAIN.register(
    asks=[
        "What's the main airport of {city}?",
        "Which airport serves {city}?",
        "Give me the airport code for {city}.",
    ],
    say="{city} is served by {airport_name} ({airport_code}).",
)
@tool(estimated_latency=0.08)
def find_airport(city: str) -> dict[str, Any]:
    """Find the main airport of a city.

    Args:
        city: The city.
    """
    f = Fake("find_airport", city)
    code = (city[:2] + f.code(n=1)).upper()
    return {"city": city, "airport_code": code, "airport_name": f"{city} International"}


@DOMAIN.register(
    asks=[
        "Are there delays at airport {airport_code}?",
        "How bad are the delays at {airport_code} today?",
    ],
    then=["then check the delays there", "and then tell me how delayed it is today"],
    say="At {airport_code} departures are {average_delay_minutes} minutes late on average, "
    "with {cancellations} cancellations.",
    links={"airport_code": "find_airport.airport_code"},
    values={"airport_code": pick("LIS", "OSL", "NBO", "KIX", "YYZ", "LIM", "CAI", "GDN", "AKL")},
)
@tool(estimated_latency=0.45)
def get_airport_delays(airport_code: str) -> dict[str, Any]:
    """Get today's delays at an airport.

    Args:
        airport_code: The three-letter airport code.
    """
    f = Fake("get_airport_delays", airport_code)
    return {
        "airport_code": airport_code,
        "average_delay_minutes": f.int(0, 75),
        "cancellations": f.int(0, 14),
    }


@DOMAIN.register(
    asks=[
        "Is it safe to travel to {country} right now?",
        "What's the travel advisory for {country}?",
        "Any travel warnings for {country}?",
    ],
    say="The advisory for {country} is level {level}: {summary}.",
)
@tool(estimated_latency=0.5)
def get_travel_advisory(country: str) -> dict[str, Any]:
    """Get the official travel advisory of a country.

    Args:
        country: The country.
    """
    f = Fake("get_travel_advisory", country)
    level = f.int(1, 4)
    summary = (
        "exercise normal caution",
        "exercise increased caution",
        "reconsider travel",
        "do not travel",
    )[level - 1]
    return {"country": country, "level": level, "summary": summary}
