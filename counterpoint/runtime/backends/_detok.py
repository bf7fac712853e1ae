"""Incremental detokenization: turn a stream of token ids into text pieces that concatenate right.

Decoding tokens one by one is wrong in two ways: byte-level BPE tokens may carry only part of a
multi-byte UTF-8 character, and SentencePiece tokenizers drop a word's leading space when a token is
decoded alone. The standard fix (as in vLLM and TGI) is to decode a short window of preceding ids
together with the new ones and emit only the text that grew, holding back a trailing replacement
character until the rest of the character arrives.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

__all__ = ["IncrementalDetokenizer"]

_SEED_TOKENS = 6
_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Decode ids one at a time into text pieces whose concatenation is the decoded text."""

    def __init__(self, tokenizer: Any, context: Sequence[int] = ()) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self.reseed(context)

    def reseed(self, context: Sequence[int]) -> None:
        """Start a new run after ``context`` (the ids already in the model's context).

        The last few context ids are kept only so the first new piece gets its leading space right.
        """
        self._ids = list(context[-_SEED_TOKENS:])
        self._prefix = 0
        self._read = len(self._ids)

    def fork(self) -> IncrementalDetokenizer:
        """An independent copy in the same state (for a look-ahead that may be thrown away)."""
        twin = copy.copy(self)
        twin._ids = list(self._ids)
        return twin

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self._tokenizer.decode(
            list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        return text

    def push(self, token_id: int) -> str:
        """Add one id; return the text it completes ("" while a character is still partial)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith(_REPLACEMENT):
            piece = after[len(before) :]
            self._prefix = self._read
            self._read = len(self._ids)
            if self._prefix > 4 * _SEED_TOKENS:  # keep the window short
                drop = self._prefix - _SEED_TOKENS
                del self._ids[:drop]
                self._prefix -= drop
                self._read -= drop
            return piece
        return ""
