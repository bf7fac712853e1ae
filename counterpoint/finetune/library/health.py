"""Health: BMI, doctors, appointments, medication, workouts and pharmacies."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import LAST_NAMES, floats, ints, listof, pick, time_of_day
from counterpoint.tools import tool

DOMAIN = Domain("health")
_MEDS = (
    "ibuprofen",
    "paracetamol",
    "amoxicillin",
    "cetirizine",
    "omeprazole",
    "metformin",
    "loratadine",
    "aspirin",
)
Specialty = Literal["cardiology", "dermatology", "pediatrics", "neurology", "general"]


@DOMAIN.register(
    asks=[
        "What's the BMI of someone who weighs {weight_kg} kg and is {height_cm} cm tall?",
        "Calculate my BMI: {weight_kg} kg, {height_cm} cm.",
    ],
    say="A BMI of {bmi} ({category}) for {weight_kg} kg at {height_cm} cm.",
    values={"weight_kg": floats(40, 130, 1), "height_cm": ints(145, 205)},
)
@tool(estimated_latency=0.005)
def calculate_bmi(weight_kg: float, height_cm: float) -> dict[str, Any]:
    """Compute the body-mass index.

    Args:
        weight_kg: Body weight in kilograms.
        height_cm: Height in centimetres.
    """
    bmi = round(weight_kg / (height_cm / 100) ** 2, 1)
    category = "underweight" if bmi < 18.5 else "normal" if bmi < 25 else "overweight"
    return {"bmi": bmi, "category": category}


@DOMAIN.register(
    asks=["Find a {specialty} doctor in {city}.", "I need a {specialty} specialist in {city}."],
    say="Dr. {doctor_name} ({doctor_id}) practises {specialty} in {city}.",
)
@tool(estimated_latency=0.5)
def find_doctor(specialty: Specialty, city: str) -> dict[str, Any]:
    """Find a doctor of a specialty in a city.

    Args:
        specialty: The medical specialty.
        city: The city.
    """
    f = Fake("find_doctor", specialty, city)
    return {
        "specialty": specialty,
        "city": city,
        "doctor_id": f.code("DR", 4),
        "doctor_name": f.pick(LAST_NAMES),
    }


@DOMAIN.register(
    asks=[
        "Book an appointment with {doctor_id} on {date} at {time}.",
        "Schedule me with doctor {doctor_id}, {date} at {time}.",
    ],
    then=[
        "then book an appointment on {date} at {time}",
        "and schedule a visit on {date} at {time}",
    ],
    say="Your appointment with {doctor_id} is on {date} at {time} ({appointment_id}).",
    links={"doctor_id": "find_doctor.doctor_id"},
    values={"doctor_id": lambda rng: f"DR{rng.randint(1000, 9999)}", "time": time_of_day},
)
@tool(estimated_latency=0.8)
def book_appointment(doctor_id: str, date: str, time: str) -> dict[str, Any]:
    """Book a doctor's appointment.

    Args:
        doctor_id: The doctor's id.
        date: The date, as YYYY-MM-DD.
        time: The time, as HH:MM.
    """
    return {
        "doctor_id": doctor_id,
        "date": date,
        "time": time,
        "appointment_id": Fake("book_appointment", doctor_id, date, time).code("AP", 5),
    }


@DOMAIN.register(
    asks=[
        "What's the usual dose of {medication}?",
        "Tell me about {medication}: dosage and side effects.",
    ],
    say="{medication}: usual adult dose {dosage}; common side effects: {side_effects}.",
    values={"medication": pick(*_MEDS)},
)
@tool(estimated_latency=0.3)
def get_medication_info(medication: str) -> dict[str, Any]:
    """Get the usual dosage and side effects of a medication.

    Args:
        medication: The medication's generic name.
    """
    f = Fake("get_medication_info", medication)
    return {
        "medication": medication,
        "dosage": f"{f.pick((200, 250, 400, 500))} mg",
        "side_effects": f.sample(("nausea", "headache", "drowsiness", "rash"), 2),
    }


@DOMAIN.register(
    asks=["Can I take {medications} together?", "Check for interactions between {medications}."],
    say="Interaction risk for {medications}: {risk}.",
    values={"medications": listof(_MEDS, 2, 3)},
)
@tool(estimated_latency=0.4)
def check_drug_interactions(medications: list[str]) -> dict[str, Any]:
    """Check a list of medications for interactions.

    Args:
        medications: The medications' generic names.
    """
    risk = Fake("check_drug_interactions", sorted(medications)).pick(("none", "minor", "moderate"))
    return {"medications": medications, "risk": risk}


@DOMAIN.register(
    asks=[
        "Log {minutes} minutes of {activity} on {date}.",
        "I did {activity} for {minutes} minutes on {date}; record it.",
    ],
    say="Logged {minutes} minutes of {activity} on {date}: about {calories} kcal.",
    values={"minutes": ints(10, 120)},
)
@tool(estimated_latency=0.15)
def log_workout(
    activity: Literal["running", "cycling", "swimming", "yoga"], minutes: int, date: str
) -> dict[str, Any]:
    """Record a workout in the user's health log.

    Args:
        activity: The kind of workout.
        minutes: How long it lasted.
        date: The date, as YYYY-MM-DD.
    """
    per_minute = {"running": 11, "cycling": 8, "swimming": 9, "yoga": 4}[activity]
    return {
        "activity": activity,
        "minutes": minutes,
        "date": date,
        "calories": per_minute * minutes,
    }


@DOMAIN.register(
    asks=[
        "How many calories does a {age}-year-old {sex} of {weight_kg} kg and {height_cm} cm need "
        "with {activity_level} activity?",
        "Daily calorie needs: {sex}, age {age}, {weight_kg} kg, {height_cm} cm, "
        "{activity_level} activity.",
    ],
    say="About {calories} kcal a day.",
    values={"age": ints(18, 80), "weight_kg": floats(45, 120, 1), "height_cm": ints(150, 200)},
)
@tool(estimated_latency=0.005)
def daily_calorie_needs(
    age: int,
    weight_kg: float,
    height_cm: float,
    sex: Literal["female", "male"],
    activity_level: Literal["low", "moderate", "high"] = "moderate",
) -> dict[str, Any]:
    """Estimate daily calorie needs (Mifflin-St Jeor).

    Args:
        age: Age in years.
        weight_kg: Weight in kilograms.
        height_cm: Height in centimetres.
        sex: Sex, for the formula.
        activity_level: How active the person is.
    """
    base = 10 * weight_kg + 6.25 * height_cm - 5 * age + (5 if sex == "male" else -161)
    factor = {"low": 1.2, "moderate": 1.55, "high": 1.9}[activity_level]
    return {"calories": round(base * factor)}


@DOMAIN.register(
    asks=[
        "How did {person} sleep over the last {days} nights?",
        "Summarise {person}'s sleep for {days} days.",
    ],
    say="Over {days} nights {person} slept {average_hours} hours on average.",
)
@tool(estimated_latency=0.35)
def get_sleep_summary(person: str, days: int = 7) -> dict[str, Any]:
    """Summarise a person's tracked sleep.

    Args:
        person: The person's full name.
        days: How many nights back.
    """
    return {
        "person": person,
        "days": days,
        "average_hours": Fake("get_sleep_summary", person, days).num(4.5, 9),
    }


@DOMAIN.register(
    asks=[
        "Find a pharmacy in {city}.",
        ("Is there a pharmacy open right now in {city}?", {"open_now": True}),
    ],
    say="{pharmacy} in {city} is at {address}.",
)
@tool(estimated_latency=0.3)
def find_pharmacy(city: str, open_now: bool = False) -> dict[str, Any]:
    """Find a pharmacy in a city.

    Args:
        city: The city.
        open_now: Only pharmacies open now.
    """
    f = Fake("find_pharmacy", city, open_now)
    return {
        "city": city,
        "pharmacy": f"{f.pick(('Green Cross', 'Vita', 'Central'))} Pharmacy",
        "address": f"{f.int(1, 200)} {f.pick(('Main', 'Oak', 'Bridge'))} Street",
    }
