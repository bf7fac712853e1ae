"""Messaging: email, SMS, contacts, chats and channels."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import email, full_name, ints, listof, pick, time_of_day
from counterpoint.tools import tool

DOMAIN = Domain("messaging")
_SUBJECTS = (
    "Quarterly numbers",
    "Dinner on Friday",
    "Project update",
    "Your invoice",
    "Trip plans",
    "Welcome aboard",
)
_BODIES = (
    "I'll be ten minutes late",
    "The draft is ready for review",
    "Can we move our call",
    "Thanks for your help today",
    "The package arrived",
    "See you at the station",
)
_PHONE = lambda rng: f"+{rng.randint(1, 49)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"  # noqa: E731
_CHANNELS = pick("#general", "#ops", "#design", "#random", "#release")


@DOMAIN.register(
    asks=[
        'Email {to} with the subject "{subject}" saying "{body}".',
        'Send an email to {to}: subject "{subject}", body "{body}".',
        'Write to {to} about "{subject}": "{body}".',
    ],
    then=[
        'then email them with the subject "{subject}" saying "{body}"',
        'and send them an email, subject "{subject}", saying "{body}"',
    ],
    say='Your email "{subject}" to {to} is sent ({message_id}).',
    links={"to": "find_contact.email"},
    values={"to": email, "subject": pick(*_SUBJECTS), "body": pick(*_BODIES)},
)
@tool(estimated_latency=0.6)
def send_email(to: str, subject: str, body: str) -> dict[str, Any]:
    """Send an email.

    Args:
        to: The recipient's email address.
        subject: The subject line.
        body: The message text.
    """
    return {
        "to": to,
        "subject": subject,
        "message_id": Fake("send_email", to, subject).code("MSG", 6),
    }


@DOMAIN.register(
    asks=['Text {phone_number}: "{message}".', 'Send an SMS to {phone_number} saying "{message}".'],
    then=['then text them "{message}"', 'and send them an SMS saying "{message}"'],
    say="Your text to {phone_number} was delivered.",
    links={"phone_number": "find_contact.phone"},
    values={"phone_number": _PHONE, "message": pick(*_BODIES)},
)
@tool(estimated_latency=0.4)
def send_sms(phone_number: str, message: str) -> dict[str, Any]:
    """Send a text message to a phone number.

    Args:
        phone_number: The phone number with country code.
        message: The text.
    """
    return {"phone_number": phone_number, "delivered": True}


@DOMAIN.register(
    asks=[
        "Look up {name} in my contacts.",
        "What's {name}'s email and phone number?",
        "Find the contact {name}.",
    ],
    say="{name}: {email}, {phone} (contact {contact_id}).",
    values={"name": full_name},
)
@tool(estimated_latency=0.2)
def find_contact(name: str) -> dict[str, Any]:
    """Find a person in the user's contacts.

    Args:
        name: The person's name.
    """
    f = Fake("find_contact", name)
    user = name.lower().replace(" ", ".")
    return {
        "name": name,
        "contact_id": f.code("CT", 4),
        "email": f"{user}@example.com",
        "phone": f"+{f.int(1, 49)} {f.int(100, 999)} {f.int(1000, 9999)}",
    }


@DOMAIN.register(
    asks=[
        'Send contact {contact_id} the chat message "{text}".',
        'Message {contact_id}: "{text}".',
    ],
    then=['then message them "{text}"', 'and send them the chat message "{text}"'],
    say="Message sent to {contact_id}.",
    links={"contact_id": "find_contact.contact_id"},
    values={"contact_id": lambda rng: f"CT{rng.randint(1000, 9999)}", "text": pick(*_BODIES)},
)
@tool(estimated_latency=0.3)
def send_chat_message(contact_id: str, text: str) -> dict[str, Any]:
    """Send a chat message to a contact.

    Args:
        contact_id: The contact's id.
        text: The message.
    """
    return {"contact_id": contact_id, "sent": True}


@DOMAIN.register(
    asks=[
        "Check my {folder}.",
        ("Do I have unread mail in my {folder}?", {"unread_only": True}),
        "Show the latest {limit} messages in my {folder}.",
    ],
    say="Your {folder} has {count} messages; the newest is from {latest_sender}.",
)
@tool(estimated_latency=0.5)
def read_mailbox(
    folder: Literal["inbox", "archive", "spam"] = "inbox",
    unread_only: bool = False,
    limit: int = 10,
) -> dict[str, Any]:
    """Read the latest messages of a mailbox folder.

    Args:
        folder: The folder.
        unread_only: Only unread messages.
        limit: How many messages.
    """
    f = Fake("read_mailbox", folder, unread_only, limit)
    return {
        "folder": folder,
        "count": min(limit, f.int(0, 30)),
        "latest_sender": f"{f.pick(('ana', 'tomas', 'support'))}@example.com",
    }


@DOMAIN.register(
    asks=[
        'Create a group chat "{name}" with {members}.',
        'Start a group called "{name}" for {members}.',
    ],
    say='Group "{name}" ({group_id}) has {size} members.',
    values={
        "name": pick("Book club", "Weekend hike", "Launch team", "Family"),
        "members": listof(full_name, 2, 4),
    },
)
@tool(estimated_latency=0.35)
def create_group_chat(name: str, members: list[str]) -> dict[str, Any]:
    """Create a group chat.

    Args:
        name: The group's name.
        members: The members' names.
    """
    return {
        "name": name,
        "group_id": Fake("create_group_chat", name).code("GR", 4),
        "size": len(members) + 1,
    }


@DOMAIN.register(
    asks=[
        'Schedule an email to {to} for {send_date} at {send_time}, subject "{subject}".',
        'On {send_date} at {send_time}, email {to} with subject "{subject}".',
    ],
    say="Your email to {to} will go out on {send_date} at {send_time}.",
    values={
        "to": email,
        "subject": pick(*_SUBJECTS),
        "send_date": pick("2026-04-02", "2026-06-15", "2026-10-01"),
        "send_time": time_of_day,
    },
)
@tool(estimated_latency=0.3)
def schedule_email(to: str, subject: str, send_date: str, send_time: str) -> dict[str, Any]:
    """Schedule an email to be sent later.

    Args:
        to: The recipient's email address.
        subject: The subject line.
        send_date: When to send it, as YYYY-MM-DD.
        send_time: The time to send it, as HH:MM.
    """
    return {"to": to, "send_date": send_date, "send_time": send_time, "scheduled": True}


@DOMAIN.register(
    asks=["How many unread messages are in {channel}?", "Any new messages in {channel}?"],
    say="{channel} has {unread} unread messages.",
    values={"channel": _CHANNELS},
)
@tool(estimated_latency=0.1)
def get_unread_count(channel: str) -> dict[str, Any]:
    """Count the unread messages of a chat channel.

    Args:
        channel: The channel, e.g. "#general".
    """
    return {"channel": channel, "unread": Fake("get_unread_count", channel).int(0, 140)}


@DOMAIN.register(
    asks=['Post "{text}" in {channel}.', 'Write "{text}" to the {channel} channel.'],
    say="Posted to {channel}.",
    values={"channel": _CHANNELS, "text": pick(*_BODIES)},
)
@tool(estimated_latency=0.25)
def post_to_channel(channel: str, text: str) -> dict[str, Any]:
    """Post a message to a chat channel.

    Args:
        channel: The channel.
        text: The message.
    """
    return {"channel": channel, "posted": True}


_ = ints
