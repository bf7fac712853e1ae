"""Calendar: events, reminders, availability and holidays."""

from __future__ import annotations

from typing import Any

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import email, full_name, ints, listof, pick
from counterpoint.tools import tool

DOMAIN = Domain("calendar")
_EVENT_ID = lambda rng: f"EV{rng.randint(1000, 9999)}"  # noqa: E731


@DOMAIN.register(
    asks=[
        'Schedule "{title}" on {date} at {time}.',
        'Create a calendar event called "{title}" for {date} at {time}, '
        "{duration_minutes} minutes.",
        'Put "{title}" in my calendar on {date} at {time} with {attendees}.',
        'Add a meeting "{title}" on {date} at {time}.',
    ],
    say='"{title}" is on your calendar on {date} at {time} (event {event_id}).',
    values={"duration_minutes": pick(15, 30, 45, 90, 120), "attendees": listof(email, 1, 3)},
)
@tool(estimated_latency=0.35)
def create_event(
    title: str, date: str, time: str, duration_minutes: int = 60, attendees: list[str] | None = None
) -> dict[str, Any]:
    """Create an event in the user's calendar.

    Args:
        title: The event's title.
        date: The date, as YYYY-MM-DD.
        time: The start time, as HH:MM.
        duration_minutes: How long it lasts.
        attendees: Email addresses to invite.
    """
    f = Fake("create_event", title, date, time)
    return {
        "event_id": f.code("EV", 4),
        "title": title,
        "date": date,
        "time": time,
        "duration_minutes": duration_minutes,
    }


@DOMAIN.register(
    asks=[
        "What's on my calendar on {date}?",
        "List my events for {date}.",
        "Do I have anything scheduled on {date}?",
    ],
    say="You have {count} events on {date}: {events}.",
)
@tool(estimated_latency=0.2)
def list_events(date: str) -> dict[str, Any]:
    """List the events in the user's calendar on a date.

    Args:
        date: The date, as YYYY-MM-DD.
    """
    f = Fake("list_events", date)
    events = f.sample(
        ("standup", "dentist", "lunch with Sam", "budget review", "gym", "1:1"), f.int(1, 3)
    )
    return {"date": date, "count": len(events), "events": events}


@DOMAIN.register(
    asks=[
        'Find the event called "{title}" in my calendar.',
        'When is "{title}"?',
        'Look up my "{title}" meeting.',
    ],
    say='"{title}" is event {event_id} on {date} at {time}.',
)
@tool(estimated_latency=0.25)
def find_event(title: str) -> dict[str, Any]:
    """Find an event in the user's calendar by its title.

    Args:
        title: The event's title, or part of it.
    """
    f = Fake("find_event", title)
    return {
        "title": title,
        "event_id": f.code("EV", 4),
        "date": f"2026-{f.int(1, 12):02d}-{f.int(1, 28):02d}",
        "time": f"{f.int(8, 18):02d}:{f.pick(('00', '30'))}",
    }


@DOMAIN.register(
    asks=["Cancel event {event_id}.", "Delete {event_id} from my calendar."],
    then=["then cancel it", "and then delete it from my calendar"],
    say="Event {event_id} is cancelled.",
    links={"event_id": "find_event.event_id"},
    values={"event_id": _EVENT_ID},
)
@tool(estimated_latency=0.3)
def cancel_event(event_id: str, notify_attendees: bool = True) -> dict[str, Any]:
    """Cancel an event in the user's calendar.

    Args:
        event_id: The event's id.
        notify_attendees: Whether to email the attendees.
    """
    return {"event_id": event_id, "cancelled": True, "notified": notify_attendees}


@DOMAIN.register(
    asks=[
        "Move event {event_id} to {new_date} at {new_time}.",
        "Reschedule {event_id} for {new_date}, {new_time}.",
    ],
    then=[
        "then move it to {new_date} at {new_time}",
        "and reschedule it for {new_date} at {new_time}",
    ],
    say="Event {event_id} now starts on {new_date} at {new_time}.",
    links={"event_id": "find_event.event_id"},
    values={
        "event_id": _EVENT_ID,
        "new_date": pick("2026-06-03", "2026-07-19", "2026-09-08", "2026-11-24", "2027-01-12"),
        "new_time": pick("09:00", "10:30", "14:15", "16:45"),
    },
)
@tool(estimated_latency=0.4)
def reschedule_event(event_id: str, new_date: str, new_time: str) -> dict[str, Any]:
    """Move an event to a new date and time.

    Args:
        event_id: The event's id.
        new_date: The new date, as YYYY-MM-DD.
        new_time: The new start time, as HH:MM.
    """
    return {"event_id": event_id, "new_date": new_date, "new_time": new_time, "moved": True}


@DOMAIN.register(
    asks=[
        "When is {person} free on {date}?",
        "Check {person}'s availability on {date}.",
        "Does {person} have any free time on {date}?",
    ],
    say="{person} is free on {date} at {free_slots}.",
)
@tool(estimated_latency=0.5)
def check_availability(person: str, date: str) -> dict[str, Any]:
    """Find the free slots in a colleague's calendar on a date.

    Args:
        person: The colleague's full name.
        date: The date, as YYYY-MM-DD.
    """
    f = Fake("check_availability", person, date)
    slots = sorted(f.sample(("09:00", "10:30", "11:00", "13:30", "15:00", "16:30"), f.int(1, 3)))
    return {"person": person, "date": date, "free_slots": slots}


@DOMAIN.register(
    asks=[
        "Remind me to {message} on {date} at {time}.",
        "Set a reminder for {date} at {time}: {message}.",
        "At {time} on {date}, remind me to {message}.",
    ],
    say="I'll remind you to {message} on {date} at {time} (reminder {reminder_id}).",
    values={
        "message": pick(
            "call the bank",
            "water the plants",
            "renew the passport",
            "pay the electricity bill",
            "book the vet",
            "send the report",
        )
    },
)
@tool(estimated_latency=0.1)
def set_reminder(message: str, date: str, time: str) -> dict[str, Any]:
    """Set a reminder for the user.

    Args:
        message: What to remind the user of.
        date: The date, as YYYY-MM-DD.
        time: The time, as HH:MM.
    """
    return {
        "reminder_id": Fake("set_reminder", message, date, time).code("RM", 5),
        "message": message,
        "date": date,
        "time": time,
    }


@DOMAIN.register(
    asks=[
        "What public holidays does {country} have in {year}?",
        "How many public holidays are there in {country} in {year}?",
    ],
    say="{country} has {count} public holidays in {year}; the first is {first_holiday}.",
    values={"year": ints(2025, 2028)},
)
@tool(estimated_latency=0.3)
def get_public_holidays(country: str, year: int) -> dict[str, Any]:
    """List the public holidays of a country in a year.

    Args:
        country: The country.
        year: The year.
    """
    f = Fake("get_public_holidays", country, year)
    return {
        "country": country,
        "year": year,
        "count": f.int(8, 16),
        "first_holiday": f"{year}-01-0{f.int(1, 6)}",
    }


@DOMAIN.register(
    asks=["Invite {email} to event {event_id}.", "Add {email} as a guest to {event_id}."],
    then=["then invite {email} to it", "and add {email} as a guest"],
    say="{email} is invited to event {event_id}.",
    links={"event_id": "find_event.event_id"},
    values={"event_id": _EVENT_ID},
)
@tool(estimated_latency=0.3)
def add_attendee(event_id: str, email: str) -> dict[str, Any]:
    """Invite someone to an event.

    Args:
        event_id: The event's id.
        email: The guest's email address.
    """
    return {"event_id": event_id, "email": email, "invited": True}


@DOMAIN.register(
    asks=[
        "How many working days are there between {start_date} and {end_date} in {country}?",
        "Count the business days from {start_date} to {end_date} in {country}.",
    ],
    say="There are {working_days} working days in {country} from {start_date} to {end_date}.",
    values={
        "start_date": pick("2026-01-05", "2026-03-02", "2026-05-11", "2026-08-03"),
        "end_date": pick("2026-09-30", "2026-10-16", "2026-12-18"),
    },
)
@tool(estimated_latency=0.06)
def count_working_days(start_date: str, end_date: str, country: str) -> dict[str, Any]:
    """Count the working days between two dates in a country.

    Args:
        start_date: The first day, as YYYY-MM-DD.
        end_date: The last day, as YYYY-MM-DD.
        country: The country whose holidays to skip.
    """
    days = Fake("count_working_days", start_date, end_date, country).int(80, 190)
    return {
        "start_date": start_date,
        "end_date": end_date,
        "country": country,
        "working_days": days,
    }


_ = (full_name, ints)
