"""Music: songs, artists, playlists, charts and concerts."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import CITIES, COUNTRIES, ints, listof, pick
from counterpoint.tools import tool

DOMAIN = Domain("music")
_ARTISTS = (
    "The Lanterns",
    "Mira Vale",
    "Kofi & the Tides",
    "Neon Harbor",
    "Sol Alvarez",
    "Paper Moons",
    "Ilse Brandt",
    "Static Orchard",
    "Juno Park",
    "The Velvet Owls",
)
_TITLES = (
    "Silver Rain",
    "Northern Lights",
    "Paper Boats",
    "Golden Hour",
    "Midnight Train",
    "Salt and Honey",
    "Glass Garden",
    "Wild Orchid",
    "Low Tide",
    "Echo Park",
)
Genre = Literal["pop", "rock", "jazz", "hiphop", "classical"]


@DOMAIN.register(
    asks=[
        "Find songs by {artist}.",
        "Search for {artist}'s songs.",
        "What are {artist}'s top tracks?",
    ],
    say='The top song by {artist} is "{title}" ({song_id}).',
    values={"artist": pick(*_ARTISTS)},
)
@tool(estimated_latency=0.4)
def search_songs(artist: str, limit: int = 5) -> dict[str, Any]:
    """Search the catalogue for an artist's songs.

    Args:
        artist: The artist or band.
        limit: How many songs to return.
    """
    f = Fake("search_songs", artist)
    return {
        "artist": artist,
        "song_id": f.code("SG", 5),
        "title": f.pick(_TITLES),
        "results": min(limit, f.int(3, 12)),
    }


@DOMAIN.register(
    asks=["Play song {song_id}.", "Play {song_id} at volume {volume}."],
    then=["then play it", "and then play it at volume {volume}"],
    say="Now playing {song_id} at volume {volume}.",
    links={"song_id": "search_songs.song_id"},
    values={"song_id": lambda rng: f"SG{rng.randint(10000, 99999)}", "volume": ints(10, 90)},
)
@tool(estimated_latency=0.15)
def play_song(song_id: str, volume: int = 50) -> dict[str, Any]:
    """Play a song on the user's speaker.

    Args:
        song_id: The song's id.
        volume: The volume, 0-100.
    """
    return {"song_id": song_id, "volume": volume, "playing": True}


@DOMAIN.register(
    asks=["Tell me about {artist}.", "What genre is {artist} and where are they from?"],
    say="{artist} play {genre}, come from {country} and have released {albums} albums.",
    values={"artist": pick(*_ARTISTS)},
)
@tool(estimated_latency=0.3)
def get_artist_info(artist: str) -> dict[str, Any]:
    """Get an artist's genre, country and discography size.

    Args:
        artist: The artist or band.
    """
    f = Fake("get_artist_info", artist)
    return {
        "artist": artist,
        "genre": f.pick(("indie pop", "jazz", "folk", "electronic", "soul")),
        "country": f.pick(COUNTRIES),
        "albums": f.int(1, 14),
    }


@DOMAIN.register(
    asks=[
        'Make a playlist called "{name}" with {song_titles}.',
        'Create the playlist "{name}" containing {song_titles}.',
    ],
    say='Playlist "{name}" ({playlist_id}) has {count} songs.',
    values={
        "name": pick("Road Trip", "Focus", "Sunday Morning", "Workout", "Rainy Day"),
        "song_titles": listof(_TITLES, 2, 4),
    },
)
@tool(estimated_latency=0.35)
def create_playlist(name: str, song_titles: list[str]) -> dict[str, Any]:
    """Create a playlist from song titles.

    Args:
        name: The playlist's name.
        song_titles: The songs to put in it.
    """
    return {
        "name": name,
        "playlist_id": Fake("create_playlist", name).code("PL", 5),
        "count": len(song_titles),
    }


@DOMAIN.register(
    asks=[
        'Get the lyrics of "{title}" by {artist}.',
        'What are the words to {artist}\'s "{title}"?',
    ],
    say='"{title}" by {artist} starts: "{first_line}".',
    values={"title": pick(*_TITLES), "artist": pick(*_ARTISTS)},
)
@tool(estimated_latency=0.5)
def get_lyrics(title: str, artist: str) -> dict[str, Any]:
    """Get the lyrics of a song.

    Args:
        title: The song's title.
        artist: The artist.
    """
    f = Fake("get_lyrics", title, artist)
    if f.chance(0.3):
        return {"title": title, "artist": artist, "error": "no lyrics found for this song"}
    line = f.pick(("we ran along the river", "the city sleeps tonight", "hold the light for me"))
    return {"title": title, "artist": artist, "first_line": line}


@DOMAIN.register(
    asks=["Is {artist} playing in {city} soon?", "Find {artist} concerts in {city}."],
    say="{artist} play {venue} in {city} on {date} (concert {concert_id}).",
    values={"artist": pick(*_ARTISTS)},
)
@tool(estimated_latency=0.6)
def find_concerts(artist: str, city: str) -> dict[str, Any]:
    """Find an artist's upcoming concerts in a city.

    Args:
        artist: The artist or band.
        city: The city.
    """
    f = Fake("find_concerts", artist, city)
    return {
        "artist": artist,
        "city": city,
        "concert_id": f.code("CN", 5),
        "venue": f"{f.pick(('Arena', 'Hall', 'Dome', 'Club'))} {f.pick(CITIES)}",
        "date": f"2026-{f.int(1, 12):02d}-{f.int(1, 28):02d}",
    }


@DOMAIN.register(
    asks=[
        "Buy {quantity} tickets for concert {concert_id}.",
        "Get me {quantity} seats at {concert_id}.",
    ],
    then=["then buy {quantity} tickets", "and get me {quantity} tickets for it"],
    say="{quantity} tickets for {concert_id} are booked, order {order_id}.",
    links={"concert_id": "find_concerts.concert_id"},
    values={"concert_id": lambda rng: f"CN{rng.randint(10000, 99999)}", "quantity": ints(1, 6)},
)
@tool(estimated_latency=1.0)
def buy_concert_tickets(concert_id: str, quantity: int) -> dict[str, Any]:
    """Buy tickets for a concert.

    Args:
        concert_id: The concert's id.
        quantity: How many tickets.
    """
    return {
        "concert_id": concert_id,
        "quantity": quantity,
        "order_id": Fake("buy_concert_tickets", concert_id, quantity).code("TK", 6),
    }


@DOMAIN.register(
    asks=["What are the top {genre} songs in {country}?", "Show the {genre} chart for {country}."],
    say='The number one {genre} song in {country} is "{top_song}" by {top_artist}.',
)
@tool(estimated_latency=0.45)
def get_top_charts(country: str, genre: Genre = "pop") -> dict[str, Any]:
    """Get the top of a country's music chart.

    Args:
        country: The country.
        genre: The genre.
    """
    f = Fake("get_top_charts", country, genre)
    return {
        "country": country,
        "genre": genre,
        "top_song": f.pick(_TITLES),
        "top_artist": f.pick(_ARTISTS),
    }


@DOMAIN.register(
    asks=['What\'s the tempo of "{title}"?', 'How many beats per minute is "{title}"?'],
    say='"{title}" runs at {bpm} BPM in {key}.',
    values={"title": pick(*_TITLES)},
)
@tool(estimated_latency=0.2)
def get_song_tempo(title: str) -> dict[str, Any]:
    """Get the tempo and key of a song.

    Args:
        title: The song's title.
    """
    f = Fake("get_song_tempo", title)
    return {"title": title, "bpm": f.int(60, 180), "key": f.pick(("C major", "A minor", "E minor"))}
