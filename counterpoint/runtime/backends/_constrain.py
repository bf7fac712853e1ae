"""Grammar-constrained call blocks on the local backend (llguidance as a CPU logits processor).

Outside call blocks the model writes freely. The moment it has written ``[CALL]`` (seen in the
decoded text, as :class:`~counterpoint.runtime.backends._sampling.BanTable` sees banned strings),
:class:`CallConstraint` takes over until the block's ``[END]``:

1. it writes the id itself: `` c3 [HEAD]`` with the first ``c<N>`` this generation has not used;
2. it hands the body to an ``llguidance.LLMatcher`` on the grammar of
   :mod:`counterpoint.runtime.backends._grammar` (function names, argument names, typed literal
   values), which masks every token that would leave the grammar;
3. where the grammar allows exactly one continuation (the id and ``[HEAD]``, the rest of a
   function name once its prefix is unique, ``=``, ``, next=``, ``) [END]``) it returns those
   *forced* tokens so that the decoder appends them in one prefill chunk (jump-forward) instead
   of one forward pass each.

So that a block always starts on a token boundary, a token that would complete ``[CALL]`` and
write more after it (``](``) is masked while the model writes freely. ``tool_choice="required"``
(or a function name) forces ``[CALL]`` as the first thing written (with that function's grammar);
``"none"`` bans ``[CALL`` altogether (the decoder adds it to the banned strings).

:class:`Grammars` is the per-model part: the llguidance tokenizer (built once, ~1 s) and one
compiled matcher per grammar, keyed on the tools' schemas; each block works on a copy.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import torch

from counterpoint.runtime.backends._grammar import CallGrammar

__all__ = ["CALL_OPEN", "CallConstraint", "ConstraintWarning", "Grammars", "MarkerBoundary"]

CALL_OPEN = "[CALL]"
_HEAD = " [HEAD]"
_MATCHERS = 64  # compiled grammars kept per model (least recently used dropped past it)


class ConstraintWarning(UserWarning):
    """The constraint could not go on (a grammar error): the rest of the block is unconstrained."""


class MarkerBoundary:
    """Token ids that would complete ``marker`` and write more after it, given the text so far.

    Masking them while the model writes freely makes every marker end on a token boundary, so a
    grammar can take over right after it.
    """

    def __init__(self, marker: str, texts: Sequence[str]) -> None:
        self.marker = marker
        always = [i for i, t in enumerate(texts) if marker in t and not t.endswith(marker)]
        self._always = torch.tensor(always, dtype=torch.long)
        self._after: list[tuple[str, torch.Tensor]] = []
        for k in range(1, len(marker)):
            head, rest = marker[:k], marker[k:]
            ids = [i for i, t in enumerate(texts) if t.startswith(rest) and len(t) > len(rest)]
            if ids:
                self._after.append((head, torch.tensor(ids, dtype=torch.long)))

    def banned_ids(self, written: str) -> torch.Tensor:
        """Ids that must not come next after ``written``."""
        parts = [self._always]
        parts.extend(ids for head, ids in self._after if written.endswith(head))
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class Grammars:
    """Per model: the llguidance tokenizer and a compiled matcher per grammar (worker thread).

    The last 64 grammars used stay compiled (an eval builds one per case's toolset).
    """

    def __init__(self, tokenizer: Any, vocab_size: int, texts: Callable[[], Sequence[str]]) -> None:
        self._hf_tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._texts = texts
        self._lock = threading.Lock()
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._matchers: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._boundary: MarkerBoundary | None = None
        self.compiled = 0
        """How many grammars were compiled (one per distinct toolset)."""
        self.compile_s: dict[str, float] = {}
        """Seconds each grammar (by key) took to compile."""

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def tokenizer(self) -> llguidance.LLTokenizer:
        """The llguidance tokenizer (``tokenizer`` may be one already, else a HF fast one)."""
        with self._lock:
            if self._tokenizer is None and isinstance(self._hf_tokenizer, llguidance.LLTokenizer):
                self._tokenizer = self._hf_tokenizer
            if self._tokenizer is None:
                self._tokenizer = llguidance.hf.from_tokenizer(
                    self._hf_tokenizer, n_vocab=self._vocab_size
                )
            return self._tokenizer

    def boundary(self) -> MarkerBoundary:
        with self._lock:
            if self._boundary is None:
                self._boundary = MarkerBoundary(CALL_OPEN, self._texts())
            return self._boundary

    def matcher(self, grammar: CallGrammar) -> llguidance.LLMatcher:
        """A fresh matcher at the start of ``grammar`` (a copy of the one compiled for it)."""
        tokenizer = self.tokenizer()
        with self._lock:
            template = self._matchers.get(grammar.key)
            if template is None:
                began = time.perf_counter()
                lark = llguidance.LLMatcher.grammar_from_lark(grammar.lark)
                template = llguidance.LLMatcher(tokenizer, lark, log_level=0)
                if template.is_error():
                    raise ValueError(f"the call grammar does not compile: {template.get_error()}")
                self._matchers[grammar.key] = template
                self.compiled += 1
                self.compile_s[grammar.key] = time.perf_counter() - began
                while len(self._matchers) > _MATCHERS:
                    dropped, _ = self._matchers.popitem(last=False)
                    self.compile_s.pop(dropped, None)
            else:
                self._matchers.move_to_end(grammar.key)
            return template.deep_copy()


class CallConstraint:
    """One generation's call-block constraint: forced tokens, masks, and where it stands.

    The decoder asks :meth:`forced` before each token (tokens that must come next; the constraint
    has already moved past them), :meth:`allowed` for the grammar's mask inside a block, and
    :meth:`banned` for ids masked outside one; it reports every token it *sampled* with
    :meth:`observe`. Runs in the model's worker thread.
    """

    def __init__(
        self,
        grammars: Grammars,
        encode: Callable[[str], list[int]],
        grammar: CallGrammar | None,
        *,
        first: CallGrammar | None = None,
        require: str | None = None,
    ) -> None:
        """``grammar`` constrains bodies (``None``: ids are written, bodies are free);
        ``require`` is ``"required"`` or a function name to force the first call (``first`` is
        then its grammar, else ``grammar``)."""
        self._grammars = grammars
        self._encode = encode
        self._grammar = grammar
        self._first = first or grammar
        self._require = require
        self._state = "open" if require is not None else "free"
        self._matcher: llguidance.LLMatcher | None = None
        self._next_id = 1
        self._calls = 0
        self.mask_s: list[float] = []
        """Seconds each grammar mask took (computing it and turning it into a tensor)."""
        self.forced_tokens = 0
        """Tokens the constraint forced (ids, markers, names, punctuation)."""

    @property
    def in_block(self) -> bool:
        """True while the constraint holds the body of a call block."""
        return self._state == "body"

    @property
    def calls(self) -> int:
        """Call blocks opened so far."""
        return self._calls

    @property
    def writing_freely(self) -> bool:
        """True outside a call block (the model chooses what comes next)."""
        return self._state == "free"

    def fork(self) -> CallConstraint:
        """An independent copy in the same state (for a look-ahead that may be thrown away)."""
        twin = copy.copy(self)
        twin._matcher = self._matcher.deep_copy() if self._matcher is not None else None
        twin.mask_s = list(self.mask_s)
        return twin

    def prepare(self) -> None:
        """Compile what the blocks will need now (the prompt's prefill), not mid-generation."""
        for grammar in (self._grammar, self._first):
            if grammar is not None:
                self._grammars.matcher(grammar)
        if self._grammar is not None:
            self._grammars.boundary()

    def forced(self) -> list[int]:
        """The tokens that must come next (empty when the model chooses)."""
        if self._state == "open":
            return self._open_block()
        if self._state == "body" and self._matcher is not None:
            ff = list(self._matcher.compute_ff_tokens())
            if ff and not self._matcher.consume_tokens(ff):
                self._give_up()
                return []
            self._after_consume()
            self.forced_tokens += len(ff)
            return ff
        return []

    def allowed(self) -> torch.Tensor | None:
        """Inside a block, which ids the grammar allows next (bool, vocabulary-sized)."""
        if self._state != "body" or self._matcher is None:
            return None
        began = time.perf_counter()
        bits = self._matcher.compute_bitmask()
        if self._matcher.is_error():
            self._give_up()
            return None
        mask = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), bitorder="little")
        allowed = torch.from_numpy(mask[: self._grammars.vocab_size].astype(np.bool_))
        self.mask_s.append(time.perf_counter() - began)
        return allowed

    def banned(self, written: str) -> torch.Tensor | None:
        """Outside a block: ids that would write past ``[CALL]`` in the same token."""
        if self._state != "free" or self._grammar is None:
            return None
        return self._grammars.boundary().banned_ids(written)

    def observe(self, token_id: int, written: str) -> None:
        """The decoder sampled ``token_id``; ``written`` is the text so far (it included)."""
        if self._state == "body" and self._matcher is not None:
            if not self._matcher.consume_token(token_id):
                self._give_up()
                return
            self._after_consume()
        elif self._state == "free" and self._grammar is not None and written.endswith(CALL_OPEN):
            self._state = "open"

    def abandon(self) -> None:
        """The context changed under the block (text was appended): stop constraining it."""
        if self._state == "body":
            self._matcher = None
        if self._state in ("body", "open") and (self._require is None or self._calls):
            self._state = "free"

    # -- internals ----------------------------------------------------------------------------

    def _open_block(self) -> list[int]:
        first_call = self._calls == 0 and self._require is not None
        grammar = self._first if first_call else self._grammar
        call_id = f"c{self._next_id}"
        self._next_id += 1
        self._calls += 1
        text = (CALL_OPEN if first_call else "") + f" {call_id}{_HEAD}"
        if grammar is None and first_call and self._require not in (None, "required"):
            text += f" {self._require}("  # a named call without a grammar: write its name
        ids = self._encode(text)
        self.forced_tokens += len(ids)
        if grammar is None:
            self._state = "free"
            return ids
        self._matcher = self._grammars.matcher(grammar)
        self._state = "body"
        return ids + self.forced()

    def _after_consume(self) -> None:
        matcher = self._matcher
        if matcher is None:
            return
        if matcher.is_error():
            self._give_up()
        elif matcher.is_stopped():
            self._matcher = None
            self._state = "free"

    def _give_up(self) -> None:
        error = self._matcher.get_error() if self._matcher is not None else ""
        warnings.warn(
            f"constrained decoding stopped inside a call block ({error or 'no allowed token'}); "
            "the rest of the block is unconstrained",
            ConstraintWarning,
            stacklevel=2,
        )
        self._matcher = None
        self._state = "free"
