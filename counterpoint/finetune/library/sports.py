"""Sports: scores, standings, players, fixtures, tickets and venues."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import ints, pick, time_of_day
from counterpoint.tools import tool

DOMAIN = Domain("sports")
_TEAMS = (
    "Riverside Rovers",
    "Northport United",
    "Valley Hawks",
    "Coastal Kings",
    "Iron Bears",
    "Lakeside FC",
    "Mountain Lions",
    "Harbor City",
    "Redwood Athletic",
    "Eastgate Stars",
)
_PLAYERS = (
    "Mateo Quispe",
    "Aiko Sato",
    "Kofi Mensah",
    "Lena Fischer",
    "Omar Haddad",
    "Freya Larsen",
    "Ivan Petrov",
    "Priya Nair",
    "Luca Rossi",
    "Zoe Dubois",
)
_TEAM = pick(*_TEAMS)


@DOMAIN.register(
    asks=["What was the score of the {team} game on {date}?", "Did {team} win on {date}?"],
    say="On {date} {team} played {opponent} and the score was {score}.",
    values={"team": _TEAM},
)
@tool(estimated_latency=0.3)
def get_match_score(team: str, date: str) -> dict[str, Any]:
    """Get the final score of a team's match on a date.

    Args:
        team: The team.
        date: The match date, as YYYY-MM-DD.
    """
    f = Fake("get_match_score", team, date)
    if f.chance(0.3):
        return {"team": team, "date": date, "error": "no match on that date"}
    return {
        "team": team,
        "date": date,
        "opponent": f.pick(_TEAMS),
        "score": f"{f.int(0, 5)}-{f.int(0, 5)}",
    }


@DOMAIN.register(
    asks=[
        "Who leads the {league} standings?",
        "Show me the {league} table.",
        "Who's top of the {league}?",
    ],
    say="{leader} lead the {league} with {points} points.",
)
@tool(estimated_latency=0.4)
def get_league_standings(
    league: Literal["premier", "laliga", "bundesliga", "nba", "nfl"],
) -> dict[str, Any]:
    """Get the current standings of a league.

    Args:
        league: The league.
    """
    f = Fake("get_league_standings", league)
    return {"league": league, "leader": f.pick(_TEAMS), "points": f.int(20, 90)}


@DOMAIN.register(
    asks=["What are {player}'s stats for the {season} season?", "How did {player} do in {season}?"],
    say="In {season} {player} played {games} games and scored {points}.",
    values={"player": pick(*_PLAYERS), "season": ints(2015, 2025)},
)
@tool(estimated_latency=0.45)
def get_player_stats(player: str, season: int) -> dict[str, Any]:
    """Get a player's statistics for a season.

    Args:
        player: The player's full name.
        season: The season's starting year.
    """
    f = Fake("get_player_stats", player, season)
    if f.chance(0.3):
        return {"player": player, "season": season, "error": "no statistics for that season"}
    return {"player": player, "season": season, "games": f.int(5, 82), "points": f.int(0, 900)}


@DOMAIN.register(
    asks=["Who plays for {team}?", "Show me the {team} roster.", "List the players of {team}."],
    say="{team} has {size} players; the captain is {captain}.",
    values={"team": _TEAM},
)
@tool(estimated_latency=0.35)
def get_team_roster(team: str) -> dict[str, Any]:
    """Get a team's roster.

    Args:
        team: The team.
    """
    f = Fake("get_team_roster", team)
    return {"team": team, "size": f.int(18, 30), "captain": f.pick(_PLAYERS)}


@DOMAIN.register(
    asks=["When is {team}'s next match?", "Who do {team} play next?"],
    say="{team} play {opponent} next, on {date} at {venue} (match {match_id}).",
    values={"team": _TEAM},
)
@tool(estimated_latency=0.3)
def get_next_fixture(team: str) -> dict[str, Any]:
    """Get a team's next scheduled match.

    Args:
        team: The team.
    """
    f = Fake("get_next_fixture", team)
    return {
        "team": team,
        "opponent": f.pick(_TEAMS),
        "match_id": f.code("M", 5),
        "date": f"2026-{f.int(1, 12):02d}-{f.int(1, 28):02d}",
        "venue": f"{f.pick(('North', 'Central', 'Bay'))} Stadium",
    }


@DOMAIN.register(
    asks=[
        "Buy {quantity} tickets for match {match_id}.",
        "Get me {quantity} seats for {match_id}.",
    ],
    then=["then buy {quantity} tickets for it", "and get me {quantity} seats"],
    say="{quantity} tickets for match {match_id} are booked ({ticket_ref}).",
    links={"match_id": "get_next_fixture.match_id"},
    values={"match_id": lambda rng: f"M{rng.randint(10000, 99999)}", "quantity": ints(1, 5)},
)
@tool(estimated_latency=0.9)
def buy_match_tickets(match_id: str, quantity: int = 1) -> dict[str, Any]:
    """Buy tickets for a match.

    Args:
        match_id: The match's id.
        quantity: How many tickets.
    """
    return {
        "match_id": match_id,
        "quantity": quantity,
        "ticket_ref": Fake("buy_match_tickets", match_id, quantity).code("T", 6),
    }


@DOMAIN.register(
    asks=["Where can I play {sport} in {city}?", "Find a {sport} venue in {city}."],
    say="{venue_name} ({venue_id}) in {city} has {sport} facilities.",
)
@tool(estimated_latency=0.5)
def find_sports_venue(
    city: str, sport: Literal["tennis", "football", "swimming", "climbing"]
) -> dict[str, Any]:
    """Find a venue for a sport in a city.

    Args:
        city: The city.
        sport: The sport.
    """
    f = Fake("find_sports_venue", city, sport)
    name = f"{f.pick(('Parkside', 'Summit', 'Lakeview', 'Metro'))} {sport.title()} Centre"
    return {"city": city, "sport": sport, "venue_id": f.code("V", 4), "venue_name": name}


@DOMAIN.register(
    asks=[
        "Book venue {venue_id} on {date} at {time}.",
        "Reserve a slot at {venue_id}, {date} {time}.",
    ],
    then=["then book it on {date} at {time}", "and reserve a slot there on {date} at {time}"],
    say="Venue {venue_id} is booked on {date} at {time} ({booking_id}).",
    links={"venue_id": "find_sports_venue.venue_id"},
    values={"venue_id": lambda rng: f"V{rng.randint(1000, 9999)}", "time": time_of_day},
)
@tool(estimated_latency=0.7)
def book_venue_slot(venue_id: str, date: str, time: str) -> dict[str, Any]:
    """Book a slot at a sports venue.

    Args:
        venue_id: The venue's id.
        date: The date, as YYYY-MM-DD.
        time: The start time, as HH:MM.
    """
    return {
        "venue_id": venue_id,
        "date": date,
        "time": time,
        "booking_id": Fake("book_venue_slot", venue_id, date, time).code("B", 5),
    }


@DOMAIN.register(
    asks=["Who won the {event} in {year}?", "Give me the {year} {event} results."],
    say="The {year} {event} was won by {winner} in {winning_time}.",
    values={
        "event": pick("city marathon", "coastal triathlon", "alpine ski race", "river regatta"),
        "year": ints(2005, 2025),
    },
)
@tool(estimated_latency=0.4)
def get_race_results(event: str, year: int) -> dict[str, Any]:
    """Get the winner of a race.

    Args:
        event: The race.
        year: The year it was held.
    """
    f = Fake("get_race_results", event, year)
    return {
        "event": event,
        "year": year,
        "winner": f.pick(_PLAYERS),
        "winning_time": f"{f.int(1, 3)}:{f.int(10, 59)}:{f.int(10, 59)}",
    }
