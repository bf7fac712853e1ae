"""Shopping: products, carts, orders, stock, coupons and shipping."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import COUNTRIES, email, floats, ints, listof, pick
from counterpoint.tools import tool

DOMAIN = Domain("shopping")
_QUERIES = (
    "wireless earbuds",
    "running shoes",
    "espresso machine",
    "desk lamp",
    "yoga mat",
    "rain jacket",
    "mechanical keyboard",
    "backpack",
    "water bottle",
    "air fryer",
    "phone charger",
    "office chair",
)
_ORDER = lambda rng: f"ORD-{rng.randint(100000, 999999)}"  # noqa: E731
_PRODUCT = lambda rng: f"P{rng.randint(10000, 99999)}"  # noqa: E731


@DOMAIN.register(
    asks=[
        "Search the shop for {query}.",
        "Find {query} under {max_price}.",
        "Show me the best rated {query}.",
        ("What are the cheapest {query} you can find?", {"sort_by": "price"}),
        ("Find the highest rated {query} under {max_price}.", {"sort_by": "rating"}),
    ],
    say="Top result for {query}: {product_name} ({product_id}) at {price}.",
    values={"query": pick(*_QUERIES), "max_price": ints(20, 400)},
)
@tool(estimated_latency=0.6)
def search_products(
    query: str,
    max_price: float | None = None,
    sort_by: Literal["price", "rating", "relevance"] = "relevance",
) -> dict[str, Any]:
    """Search the shop's catalogue.

    Args:
        query: What to look for.
        max_price: The highest price to show.
        sort_by: How to order the results.
    """
    f = Fake("search_products", query, max_price, sort_by)
    brand = f.pick(("Nimbus", "Kestrel", "Orbit", "Vanta", "Lumo", "Tessel"))
    return {
        "product_id": f.code("P", 5),
        "product_name": f"{brand} {query}",
        "price": f.num(8, max_price or 350, 2),
        "query": query,
    }


@DOMAIN.register(
    asks=["Tell me more about product {product_id}.", "Get the details of {product_id}."],
    then=["then show me its details", "and then tell me its rating and stock"],
    say="Product {product_id} is rated {rating}/5 with {stock} in stock.",
    links={"product_id": "search_products.product_id"},
    values={"product_id": _PRODUCT},
)
@tool(estimated_latency=0.25)
def get_product_details(product_id: str) -> dict[str, Any]:
    """Get a product's rating, stock and description.

    Args:
        product_id: The product's id.
    """
    f = Fake("get_product_details", product_id)
    return {"product_id": product_id, "rating": f.num(2.5, 5.0), "stock": f.int(0, 250)}


@DOMAIN.register(
    asks=["Add {quantity} of {product_id} to my cart.", "Put product {product_id} in the cart."],
    then=["then add {quantity} of it to my cart", "and put it in my cart"],
    say="Added {quantity} x {product_id} to cart {cart_id}.",
    links={"product_id": "search_products.product_id"},
    values={"product_id": _PRODUCT, "quantity": ints(1, 6)},
)
@tool(estimated_latency=0.2)
def add_to_cart(product_id: str, quantity: int = 1) -> dict[str, Any]:
    """Add a product to the shopping cart.

    Args:
        product_id: The product's id.
        quantity: How many.
    """
    return {
        "product_id": product_id,
        "quantity": quantity,
        "cart_id": Fake("cart", product_id).code("CART", 4),
    }


@DOMAIN.register(
    asks=[
        "Where is my order {order_id}?",
        "Track order {order_id}.",
        "When will {order_id} arrive?",
    ],
    say="Order {order_id} is {status} and should arrive on {eta}.",
    values={"order_id": _ORDER},
)
@tool(estimated_latency=0.4)
def track_order(order_id: str) -> dict[str, Any]:
    """Track a shop order.

    Args:
        order_id: The order's id, e.g. "ORD-123456".
    """
    f = Fake("track_order", order_id)
    if f.chance(0.3):
        return {"order_id": order_id, "error": "no order with this id"}
    return {
        "order_id": order_id,
        "status": f.pick(("shipped", "processing", "out for delivery")),
        "eta": f"2026-{f.int(1, 12):02d}-{f.int(1, 28):02d}",
    }


@DOMAIN.register(
    asks=[
        "Show the last {limit} orders for {customer_email}.",
        "What has {customer_email} ordered recently?",
    ],
    say="{customer_email} placed {count} recent orders; the latest is {latest_order}.",
    values={"customer_email": email},
)
@tool(estimated_latency=0.5)
def get_order_history(customer_email: str, limit: int = 5) -> dict[str, Any]:
    """List a customer's recent orders.

    Args:
        customer_email: The customer's email address.
        limit: How many orders to show.
    """
    f = Fake("get_order_history", customer_email)
    return {
        "customer_email": customer_email,
        "count": min(limit, f.int(1, 9)),
        "latest_order": f"ORD-{f.int(100000, 999999)}",
    }


@DOMAIN.register(
    asks=["Apply coupon {code} to cart {cart_id}.", "Use the code {code} on my cart {cart_id}."],
    say="Coupon {code} on {cart_id}: {discount_percent}% off.",
    values={
        "code": pick("SPRING10", "WELCOME5", "FREESHIP", "VIP20", "BLACKFRIDAY"),
        "cart_id": lambda rng: f"CART{rng.randint(1000, 9999)}",
    },
)
@tool(estimated_latency=0.15)
def apply_coupon(cart_id: str, code: str) -> dict[str, Any]:
    """Apply a discount code to a cart.

    Args:
        cart_id: The cart's id.
        code: The coupon code.
    """
    return {
        "cart_id": cart_id,
        "code": code,
        "discount_percent": Fake("apply_coupon", code).pick((5, 10, 15, 20)),
    }


@DOMAIN.register(
    asks=[
        "Is there a {product_name} in stock in {city}?",
        "Check whether the {city} store has {product_name}.",
    ],
    say="The {city} store has {units} units of {product_name}.",
    values={"product_name": pick(*_QUERIES)},
)
@tool(estimated_latency=0.45)
def check_store_stock(product_name: str, city: str) -> dict[str, Any]:
    """Check a physical store's stock of a product.

    Args:
        product_name: The product.
        city: The store's city.
    """
    return {
        "product_name": product_name,
        "city": city,
        "units": Fake("check_store_stock", product_name, city).int(0, 40),
    }


@DOMAIN.register(
    asks=[
        "Compare prices for {product_name} at {stores}.",
        "Which of {stores} sells {product_name} cheapest?",
    ],
    say="{product_name} is cheapest at {cheapest_store} for {price}.",
    values={
        "product_name": pick(*_QUERIES),
        "stores": listof(("MegaMart", "ShopRite", "Corner Co", "BuyMore", "Zest"), 2, 4),
    },
)
@tool(estimated_latency=0.75)
def compare_prices(product_name: str, stores: list[str]) -> dict[str, Any]:
    """Compare a product's price across stores.

    Args:
        product_name: The product.
        stores: The stores to compare.
    """
    f = Fake("compare_prices", product_name, stores)
    return {
        "product_name": product_name,
        "cheapest_store": f.pick(stores),
        "price": f.num(5, 300, 2),
    }


@DOMAIN.register(
    asks=[
        "Return order {order_id}, reason: {reason}.",
        "I want to send back {order_id} because it's {reason}.",
    ],
    say="Return {return_id} for {order_id} is accepted.",
    values={"order_id": _ORDER},
)
@tool(estimated_latency=0.55)
def return_item(
    order_id: str, reason: Literal["damaged", "wrong_size", "not_needed", "late"]
) -> dict[str, Any]:
    """Start the return of an order.

    Args:
        order_id: The order's id.
        reason: Why it is returned.
    """
    return {
        "order_id": order_id,
        "reason": reason,
        "return_id": Fake("return_item", order_id).code("RT", 5),
    }


@DOMAIN.register(
    asks=[
        "How much does it cost to ship {weight_kg} kg to {destination_country}?",
        ("What's express shipping for {weight_kg} kg to {destination_country}?", {"express": True}),
    ],
    say="Shipping {weight_kg} kg to {destination_country} costs {cost} and takes {days} days.",
    values={"destination_country": pick(*COUNTRIES), "weight_kg": floats(0.2, 30, 1)},
)
@tool(estimated_latency=0.3)
def estimate_shipping(
    destination_country: str, weight_kg: float, express: bool = False
) -> dict[str, Any]:
    """Estimate the cost and time of shipping a parcel.

    Args:
        destination_country: Where it goes.
        weight_kg: The parcel's weight in kilograms.
        express: Use express delivery.
    """
    f = Fake("estimate_shipping", destination_country, weight_kg, express)
    return {
        "cost": round(f.num(4, 20) + weight_kg * (3 if express else 1.2), 2),
        "days": f.int(1, 3) if express else f.int(4, 12),
    }
