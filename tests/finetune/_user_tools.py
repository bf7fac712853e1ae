"""A small user toolset for the ``--tools`` tests (imported as tests.finetune._user_tools)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypedDict

from counterpoint.tools import Toolset, tool


class Shipment(TypedDict):
    tracking_id: str
    status: str
    days_left: int


@tool(estimated_latency=0.4)
def track_shipment(tracking_id: str, carrier: Literal["dhl", "ups", "fedex"] = "dhl") -> Shipment:
    """Track a parcel shipment.

    Args:
        tracking_id: The tracking number.
        carrier: The carrier.
    """
    raise RuntimeError("the data generator must not run a user's tool by default")


@tool(estimated_latency=0.2)
def reserve_table(
    restaurant: str,
    guests: Annotated[int, Field(ge=1, le=12)],
    vegetarian: bool = False,
    tags: list[str] | None = None,
) -> dict[str, str]:
    """Reserve a table at a restaurant.

    Args:
        restaurant: The restaurant's name.
        guests: How many people.
        vegetarian: Whether a vegetarian menu is wanted.
        tags: Extra wishes.
    """
    raise RuntimeError("never run")


@tool
def convert_price(amount: float, currency: Literal["EUR", "USD", "JPY"]) -> float:
    """Convert a price to another currency."""
    raise RuntimeError("never run")


toolset = Toolset(track_shipment, reserve_table, convert_price)
empty = Toolset()
