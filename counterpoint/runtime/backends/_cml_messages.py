"""The messages a CML backend renders: the protocol and the tools in the system message.

Backends that speak CML (local transformers models, raw completions on an HTTP server) call
:func:`cml_messages` before applying their chat template, so the agent hands over its own
instructions and the tools as data and each backend decides how the model learns about them.
Every message's control tokens are neutralised on the way (no message can end its own turn).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from counterpoint.core.calls import ToolSpec
from counterpoint.protocol.escape import neutralise_control
from counterpoint.protocol.prompt import build_system_prompt
from counterpoint.runtime.backends.base import Message

__all__ = ["cml_messages"]


def cml_messages(
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    special_tokens: Iterable[str] = (),
) -> list[Message]:
    """``messages`` ready for a CML chat template.

    With tools, the first system message gets the protocol and the tool list after its own text
    (a system message is added when there is none). Every content has its control tokens
    neutralised with :func:`~counterpoint.protocol.escape.neutralise_control`.
    """
    specials = tuple(special_tokens)
    out = [Message(role=m.role, content=neutralise_control(m.content, specials)) for m in messages]
    if tools:
        if out and out[0].role == "system":
            out[0] = Message(role="system", content=build_system_prompt(out[0].content, tools))
        else:
            out.insert(0, Message(role="system", content=build_system_prompt("", tools)))
    return out
