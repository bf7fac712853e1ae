"""The three modes as small strategy objects: what to do when a call is written, and when a turn
ends. They share the protocol, so comparing them isolates scheduling (DESIGN.md, "The protocol").

- :class:`SyncMode`: stop at each call, run it, inject its result, continue.
- :class:`ParallelMode`: collect the calls of a turn, run them together when the turn ends (end
  of stream or a trap), inject every result at once (OpenAI parallel calls, LLMCompiler).
- :class:`AsyncMode`: dispatch each call the moment it is written, keep generating, inject each
  result at the next safe point (AsyncLM).

A strategy drives the session through the small :class:`Driver` protocol the session implements.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Protocol

from counterpoint.core.calls import Call

__all__ = [
    "MODES",
    "AsyncMode",
    "Driver",
    "Mode",
    "ModeStrategy",
    "ParallelMode",
    "PendingPolicy",
    "SyncMode",
    "TurnEnd",
    "WaitReason",
    "strategy_for",
]

Mode = Literal["sync", "parallel", "async"]
PendingPolicy = Literal["wait", "cancel"]
TurnEnd = Literal["trap", "eos"]
WaitReason = Literal["trap", "eos", "turn_end", "sync_call"]
MODES: tuple[Mode, ...] = ("sync", "parallel", "async")


class Driver(Protocol):
    """What a mode may ask of the session running it."""

    pending_policy: PendingPolicy

    def submit(self, call: Call) -> None:
        """Start ``call`` now (its result is queued when it finishes)."""
        ...

    async def wait(self, *, reason: WaitReason, everything: bool) -> None:
        """Wait for one result (or every one when ``everything``), then inject what is ready."""
        ...

    def has_pending(self) -> bool:
        """Whether submitted calls have results still to come."""
        ...

    def has_ready(self) -> bool:
        """Whether results or user messages are queued for injection."""
        ...

    async def inject_ready(self) -> None:
        """Inject everything queued now."""
        ...

    async def cancel_pending(self) -> None:
        """Cancel every call still running."""
        ...


class ModeStrategy:
    """The default behaviour: every call starts at once; a turn end waits for what is pending."""

    name: ClassVar[Mode]
    native_calls: ClassVar[bool] = True
    """Whether a chat server's native tool calls can serve this mode (they cannot take results
    injected while the model is still writing)."""

    async def on_call(self, driver: Driver, call: Call) -> None:
        """The model finished writing ``call`` (and it passed the session's limits)."""
        driver.submit(call)

    async def on_turn_end(self, driver: Driver, reason: TurnEnd) -> bool:
        """The model ended a turn (a trap, or end of stream). Return False when the run is over."""
        if driver.has_pending():
            if reason == "eos" and driver.pending_policy == "cancel":
                await driver.cancel_pending()
                return False
            await driver.wait(reason=reason, everything=False)
            return True
        if driver.has_ready():
            await driver.inject_ready()
            return True
        return False


class AsyncMode(ModeStrategy):
    """AsyncLM: dispatch at once, keep generating, inject at the next safe point."""

    name: ClassVar[Mode] = "async"
    native_calls: ClassVar[bool] = False


class SyncMode(ModeStrategy):
    """Stop at each call, run it, inject its result, continue."""

    name: ClassVar[Mode] = "sync"

    async def on_call(self, driver: Driver, call: Call) -> None:
        driver.submit(call)
        await driver.wait(reason="sync_call", everything=True)


class ParallelMode(ModeStrategy):
    """Collect a turn's calls; run them together at the turn's end."""

    name: ClassVar[Mode] = "parallel"

    def __init__(self) -> None:
        self._held: list[Call] = []

    async def on_call(self, driver: Driver, call: Call) -> None:
        self._held.append(call)

    async def on_turn_end(self, driver: Driver, reason: TurnEnd) -> bool:
        if self._held:
            calls, self._held = self._held, []
            for call in calls:
                driver.submit(call)
            await driver.wait(reason="turn_end", everything=True)
            return True
        return await super().on_turn_end(driver, reason)


_STRATEGIES: dict[str, type[ModeStrategy]] = {
    "sync": SyncMode,
    "parallel": ParallelMode,
    "async": AsyncMode,
}


def strategy_for(mode: str) -> ModeStrategy:
    """A fresh strategy for ``mode`` (one per session: a strategy may hold a turn's calls)."""
    cls = _STRATEGIES.get(mode)
    if cls is None:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    return cls()
