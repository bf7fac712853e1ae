"""Token selection for the local backend: greedy / temperature / top-p sampling and banned strings.

A banned string must never appear in the generated text, even when it would be written across
several tokens (``[`` then ``INTR`` then ``]``). :class:`BanTable` precomputes, from the surface
text of every vocabulary entry, which tokens contain a banned string outright and which tokens
start with each proper suffix of it; at every step :meth:`BanTable.banned_ids` looks at the end of
the text written so far and returns the ids that would complete a banned string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "BanTable",
    "Choice",
    "choose",
    "masked_scores",
    "stop_hit",
    "vocabulary_texts",
]

_NUCLEUS_K = 256


@dataclass(frozen=True)
class Choice:
    """The picked token id and its log-probability under the (masked) model distribution."""

    token_id: int
    logprob: float


def masked_scores(
    logits: torch.Tensor,
    *,
    banned: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """``logits`` as float with ``banned`` ids and those ``allowed`` (a bool mask) leaves out
    set to ``-inf``; where the two leave nothing, ``allowed`` alone applies."""
    scores = logits.float()
    if allowed is not None:
        scores = scores.masked_fill(~allowed[: scores.numel()], float("-inf"))
    if banned is not None and banned.numel():
        masked = scores.index_fill(0, banned, float("-inf"))
        if allowed is None or bool(torch.isfinite(masked).any()):
            scores = masked
    return scores


def choose(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    banned: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
) -> Choice:
    """Pick the next token from a 1-D logits vector.

    ``temperature == 0`` is greedy (argmax). Otherwise the logits are divided by the temperature,
    restricted to the smallest set of most likely tokens whose probability reaches ``top_p``, and
    sampled with ``generator``. ``banned`` ids are never picked; with ``allowed`` (a bool mask
    over the vocabulary, a grammar's) only allowed ids are. Where the two leave nothing, the
    grammar wins: ``allowed`` alone applies.
    """
    scores = masked_scores(logits, banned=banned, allowed=allowed)
    if temperature <= 0.0:
        token_id = int(torch.argmax(scores))
        logprob = float(torch.log_softmax(scores, dim=-1)[token_id])
        return Choice(token_id, logprob)
    probs = torch.softmax(scores / temperature, dim=-1)
    if top_p < 1.0:
        return _nucleus(probs, top_p, generator)
    token_id = int(torch.multinomial(probs, 1, generator=generator))
    return Choice(token_id, float(torch.log(probs[token_id])))


def _nucleus(probs: torch.Tensor, top_p: float, generator: torch.Generator | None) -> Choice:
    """Sample from the smallest set of most likely tokens whose probability reaches ``top_p``.

    The nucleus is almost always small, so it is searched among the top ``_NUCLEUS_K`` tokens
    (cheap) and the full sort is only the fallback when their mass falls short of ``top_p``.
    """
    k = min(_NUCLEUS_K, probs.numel())
    top_probs, order = torch.topk(probs, k)
    if float(top_probs.sum()) < top_p and k < probs.numel():
        top_probs, order = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(top_probs, dim=-1)
    # Keep a token if the mass before it is still below top_p (the first one always stays).
    keep = (cumulative - top_probs) < top_p
    kept = torch.where(keep, top_probs, torch.zeros_like(top_probs))
    picked = int(torch.multinomial(kept, 1, generator=generator))
    token_id = int(order[picked])
    return Choice(token_id, float(torch.log(kept[picked] / kept.sum())))


def vocabulary_texts(tokenizer: Any, vocab_size: int) -> list[str]:
    """The surface text of every token id as it reads after other text (leading spaces kept).

    Each id is decoded after an anchor token and the anchor's own text is removed, which keeps the
    leading space that SentencePiece tokenizers drop when a token is decoded alone.
    """
    anchor_ids: list[int] = tokenizer.encode("a", add_special_tokens=False)
    anchor_text: str = tokenizer.batch_decode([anchor_ids], skip_special_tokens=False)[0]
    rows = [[*anchor_ids, i] for i in range(vocab_size)]
    decoded: list[str] = tokenizer.batch_decode(
        rows, skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    return [text[len(anchor_text) :] if text.startswith(anchor_text) else text for text in decoded]


class BanTable:
    """Which token ids would write a banned string, given the text already written."""

    def __init__(self, banned: Sequence[str], texts: Sequence[str]) -> None:
        self.banned = tuple(b for b in banned if b)
        self.window = max((len(b) for b in self.banned), default=1)
        always: set[int] = set()
        # (banned string, written prefix) -> ids whose text starts with the rest of the string.
        self._completions: list[tuple[str, torch.Tensor]] = []
        for b in self.banned:
            always.update(i for i, t in enumerate(texts) if b in t)
            for k in range(1, len(b)):
                head, rest = b[:k], b[k:]
                ids = [i for i, t in enumerate(texts) if t.startswith(rest)]
                if ids:
                    self._completions.append((head, torch.tensor(ids, dtype=torch.long)))
        self._always = torch.tensor(sorted(always), dtype=torch.long)

    def banned_ids(self, written: str) -> torch.Tensor:
        """Ids that must not come next after ``written`` (only its last characters matter)."""
        parts = [self._always]
        parts.extend(ids for head, ids in self._completions if written.endswith(head))
        if len(parts) == 1:
            return self._always
        return torch.cat(parts)


def stop_hit(stops: Sequence[str], before: str, piece: str) -> bool:
    """True if appending ``piece`` to ``before`` completes one of ``stops`` inside ``piece``."""
    if not piece:
        return False
    for stop in stops:
        if not stop:
            continue
        window = before[-(len(stop) - 1) :] if len(stop) > 1 else ""
        joined = window + piece
        if stop in joined:
            return True
    return False
