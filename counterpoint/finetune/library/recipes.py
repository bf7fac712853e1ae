"""Recipes: search, ingredients, nutrition, scaling, pairing and meal plans."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import floats, ints, pick
from counterpoint.tools import tool

DOMAIN = Domain("recipes")
_INGREDIENTS = (
    "chickpeas",
    "salmon",
    "mushrooms",
    "lentils",
    "tofu",
    "spinach",
    "sweet potato",
    "eggplant",
    "chicken thighs",
    "quinoa",
    "zucchini",
    "shrimp",
)
_DISHES = (
    "mushroom risotto",
    "lamb tagine",
    "pad thai",
    "ratatouille",
    "paella",
    "shakshuka",
    "lasagne",
    "ramen",
)
_RECIPE = lambda rng: f"RC{rng.randint(1000, 9999)}"  # noqa: E731
Diet = Literal["any", "vegetarian", "vegan", "gluten_free"]


@DOMAIN.register(
    asks=[
        "Find a recipe with {ingredient}.",
        "What can I cook with {ingredient} in under {max_minutes} minutes?",
        "Suggest a {diet} recipe using {ingredient}.",
    ],
    say="Try {recipe_name} ({recipe_id}), ready in {minutes} minutes.",
    values={"ingredient": pick(*_INGREDIENTS), "max_minutes": ints(15, 90)},
)
@tool(estimated_latency=0.55)
def search_recipes(
    ingredient: str, max_minutes: int | None = None, diet: Diet = "any"
) -> dict[str, Any]:
    """Search recipes by main ingredient.

    Args:
        ingredient: The main ingredient.
        max_minutes: The longest total cooking time.
        diet: A dietary restriction.
    """
    f = Fake("search_recipes", ingredient, max_minutes, diet)
    style = f.pick(("Smoky", "Lemon", "Garlic", "Spiced", "Creamy"))
    name = f"{style} {ingredient} {f.pick(('stew', 'bowl', 'curry', 'salad'))}"
    return {
        "recipe_id": f.code("RC", 4),
        "recipe_name": name,
        "minutes": f.int(10, max_minutes or 75),
    }


@DOMAIN.register(
    asks=["Show me recipe {recipe_id}.", "What do I need for recipe {recipe_id}?"],
    then=["then show me the full recipe", "and tell me what ingredients it needs"],
    say="Recipe {recipe_id} needs {ingredients} and has {steps} steps.",
    links={"recipe_id": "search_recipes.recipe_id"},
    values={"recipe_id": _RECIPE},
)
@tool(estimated_latency=0.3)
def get_recipe(recipe_id: str) -> dict[str, Any]:
    """Get a recipe's ingredients and steps.

    Args:
        recipe_id: The recipe's id.
    """
    f = Fake("get_recipe", recipe_id)
    return {
        "recipe_id": recipe_id,
        "ingredients": f.sample(
            ("onion", "garlic", "olive oil", "rice", "tomato", "cumin", "lemon", "parsley"),
            f.int(3, 5),
        ),
        "steps": f.int(3, 9),
    }


@DOMAIN.register(
    asks=[
        "How many calories are in {grams} g of {food}?",
        "Nutrition facts for {grams} grams of {food}?",
    ],
    say="{grams} g of {food} has {calories} kcal and {protein_g} g of protein.",
    values={"food": pick(*_INGREDIENTS), "grams": ints(30, 500)},
)
@tool(estimated_latency=0.2)
def get_nutrition_facts(food: str, grams: float = 100) -> dict[str, Any]:
    """Get the calories and protein of a food portion.

    Args:
        food: The food.
        grams: The portion in grams.
    """
    f = Fake("get_nutrition_facts", food)
    return {
        "food": food,
        "grams": grams,
        "calories": round(f.num(20, 400) * grams / 100),
        "protein_g": round(f.num(0.5, 25) * grams / 100, 1),
    }


@DOMAIN.register(
    asks=[
        "Scale recipe {recipe_id} to {servings} servings.",
        "Adjust {recipe_id} for {servings} people.",
    ],
    then=["then scale it to {servings} servings", "and adjust it for {servings} people"],
    say="Recipe {recipe_id} scaled to {servings} servings: multiply everything by {factor}.",
    links={"recipe_id": "search_recipes.recipe_id"},
    values={"recipe_id": _RECIPE, "servings": ints(1, 12)},
)
@tool(estimated_latency=0.1)
def scale_recipe(recipe_id: str, servings: int) -> dict[str, Any]:
    """Scale a recipe to a number of servings.

    Args:
        recipe_id: The recipe's id.
        servings: How many servings.
    """
    base = Fake("servings", recipe_id).pick((2, 4, 6))
    return {"recipe_id": recipe_id, "servings": servings, "factor": round(servings / base, 2)}


@DOMAIN.register(
    asks=["What wine goes with {dish}?", "Suggest a wine pairing for {dish}."],
    say="With {dish}, try a {wine}.",
    values={"dish": pick(*_DISHES)},
)
@tool(estimated_latency=0.25)
def suggest_wine_pairing(dish: str) -> dict[str, Any]:
    """Suggest a wine to serve with a dish.

    Args:
        dish: The dish.
    """
    wine = Fake("suggest_wine_pairing", dish).pick(("Pinot Noir", "Riesling", "Rioja", "Chablis"))
    return {"dish": dish, "wine": wine}


@DOMAIN.register(
    asks=["What can I use instead of {ingredient}?", "Suggest a substitute for {ingredient}."],
    say="Instead of {ingredient} you can use {substitute}.",
    values={"ingredient": pick("butter", "eggs", "buttermilk", "cream", "honey", "soy sauce")},
)
@tool(estimated_latency=0.1)
def find_substitute(ingredient: str) -> dict[str, Any]:
    """Suggest a substitute for an ingredient.

    Args:
        ingredient: The ingredient to replace.
    """
    sub = Fake("find_substitute", ingredient).pick(("olive oil", "yogurt", "applesauce", "tamari"))
    return {"ingredient": ingredient, "substitute": sub}


@DOMAIN.register(
    asks=["Plan {days} days of {diet} meals.", "Make me a {days}-day meal plan, {diet}."],
    say="Your {days}-day {diet} plan starts with {first_dinner} and averages "
    "{calories} kcal a day.",
    values={"days": ints(2, 7)},
)
@tool(estimated_latency=0.9)
def plan_meals(days: int, diet: Diet = "any") -> dict[str, Any]:
    """Plan meals for a number of days.

    Args:
        days: How many days.
        diet: A dietary restriction.
    """
    f = Fake("plan_meals", days, diet)
    return {
        "days": days,
        "diet": diet,
        "first_dinner": f.pick(_DISHES),
        "calories": f.int(1600, 2600),
    }


@DOMAIN.register(
    asks=[
        "How long does {dish} take on the {method}?",
        "Cooking time for {dish} using a {method}?",
    ],
    say="{dish} takes about {minutes} minutes on the {method}.",
    values={"dish": pick(*_DISHES)},
)
@tool(estimated_latency=0.05)
def estimate_cooking_time(
    dish: str, method: Literal["oven", "stovetop", "grill", "slow_cooker"]
) -> dict[str, Any]:
    """Estimate how long a dish takes with a cooking method.

    Args:
        dish: The dish.
        method: How it is cooked.
    """
    return {
        "dish": dish,
        "method": method,
        "minutes": Fake("estimate_cooking_time", dish, method).int(15, 360),
    }


@DOMAIN.register(
    asks=["Make a shopping list for recipe {recipe_id}.", "What should I buy for {recipe_id}?"],
    then=["then make me a shopping list for it", "and build a shopping list"],
    say="For {recipe_id} buy {items} (about {estimated_cost}).",
    links={"recipe_id": "search_recipes.recipe_id"},
    values={"recipe_id": _RECIPE},
)
@tool(estimated_latency=0.4)
def build_shopping_list(recipe_id: str, servings: int = 4) -> dict[str, Any]:
    """Build a shopping list for a recipe.

    Args:
        recipe_id: The recipe's id.
        servings: How many servings to shop for.
    """
    f = Fake("build_shopping_list", recipe_id, servings)
    return {
        "recipe_id": recipe_id,
        "items": f.sample(("leeks", "feta", "limes", "basil", "rice"), 3),
        "estimated_cost": f.num(6, 45, 2),
    }


_ = floats
