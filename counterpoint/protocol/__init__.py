"""CML, the protocol: the incremental parser, call-body syntax, interrupt formatting, the
neutraliser for injected text, and the system prompt that teaches it."""

from counterpoint.protocol.callsyntax import CallSyntaxError, ParsedCall, parse_call
from counterpoint.protocol.cml import (
    MARKERS,
    TRAP,
    CallBlock,
    CMLParser,
    MarkupError,
    ParseEvent,
    TextPiece,
    TrapMarker,
    format_call,
    format_interrupt,
    format_interrupts,
)
from counterpoint.protocol.escape import neutralise, neutralise_control
from counterpoint.protocol.prompt import USER_ID, build_system_prompt, describe_tools

__all__ = [
    "MARKERS",
    "TRAP",
    "USER_ID",
    "CMLParser",
    "CallBlock",
    "CallSyntaxError",
    "MarkupError",
    "ParseEvent",
    "ParsedCall",
    "TextPiece",
    "TrapMarker",
    "build_system_prompt",
    "describe_tools",
    "format_call",
    "format_interrupt",
    "format_interrupts",
    "neutralise",
    "neutralise_control",
    "parse_call",
]
