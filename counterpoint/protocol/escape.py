"""Neutralising untrusted text before it enters a model's context.

A tool's result, a user's message and a model's own earlier output are data. Written into a
context verbatim, they could close their own interrupt (``[END]``), pose as another call's result
(``[INTR] c2 [HEAD] ...``), open a call, or end the turn and forge another message with a chat
template's control tokens (``<|im_end|>``). These functions are the one place where that is
prevented; every backend renders injected text through them.

- CML markers become ``[ END ]``, ``[ INTR ]``...: still readable, never a marker (the parser
  matches markers exactly).
- Control tokens: every ``<|`` becomes ``< |`` (ChatML, Llama 3, Phi and most templates spell
  theirs ``<|...|>``), and each string in ``special_tokens`` (a backend passes its tokenizer's)
  gets a space after its first character.
- Lone surrogates (what ``os.listdir`` returns for a file name that is not UTF-8) become U+FFFD,
  so the text can always be encoded, stored and sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["neutralise", "neutralise_control"]

_MARKER = re.compile(r"\[(CALL|HEAD|END|INTR|TRAP)\]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def neutralise_control(text: str, special_tokens: Iterable[str] = ()) -> str:
    """``text`` with control tokens broken up and lone surrogates replaced (markers kept).

    For message contents: a user may write ``[CALL]`` in a question, but no message may end its
    own turn or start another.
    """
    text = _SURROGATE.sub("\ufffd", text)
    text = text.replace("<|", "< |")
    for token in sorted({t for t in special_tokens if len(t) > 1}, key=len, reverse=True):
        if token in text:
            text = text.replace(token, f"{token[0]} {token[1:]}")
    return text


def neutralise(text: str, special_tokens: Iterable[str] = ()) -> str:
    """``text`` made safe to inject into a CML context: no marker, no control token."""
    return _MARKER.sub(r"[ \1 ]", neutralise_control(text, special_tokens))
