"""Rendering a run's events to the terminal as they happen (`counterpoint run`, the demo)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallProgress,
    CallStarted,
    Done,
    InterruptInjected,
    TokenEvent,
    TrapEvent,
)

__all__ = ["EventPrinter"]


class EventPrinter:
    """Prints tokens as a stream and calls, interrupts and traps as marked lines."""

    def __init__(self, console: Console, *, show_markup: bool = True) -> None:
        self.console = console
        self.show_markup = show_markup
        self._at_line_start = True

    def _line(self, text: Text) -> None:
        if not self._at_line_start:
            self.console.print()
        self.console.print(text)
        self._at_line_start = True

    def __call__(self, event: BaseEvent) -> None:
        if isinstance(event, TokenEvent):
            self.console.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
            self._at_line_start = event.text.endswith("\n")
        elif isinstance(event, CallStarted):
            args = ", ".join(f"{k}={v!r}" for k, v in event.arguments.items())
            self._line(
                Text(f"  ▶ {event.t:6.2f}s  call {event.call_id} {event.name}({args})", "cyan")
            )
        elif isinstance(event, CallProgress):
            self._line(Text(f"  … {event.t:6.2f}s  {event.call_id}: {event.message}", "dim"))
        elif isinstance(event, CallFinished):
            mark, style = ("✓", "green") if event.ok else ("✗", "red")
            self._line(
                Text(
                    f"  {mark} {event.t:6.2f}s  {event.call_id} {event.name} finished in "
                    f"{event.duration_s * 1000:.0f} ms: {event.result[:80]}",
                    style,
                )
            )
        elif isinstance(event, InterruptInjected):
            ids = ", ".join(event.call_ids)
            self._line(
                Text(
                    f"  ⇢ {event.t:6.2f}s  interrupt [{ids}] injected ({event.tokens} tokens)",
                    "magenta",
                )
            )
        elif isinstance(event, TrapEvent) and event.phase == "enter":
            pending = ", ".join(event.pending)
            self._line(
                Text(f"  ⏸ {event.t:6.2f}s  waiting ({event.reason}) for {pending}", "yellow")
            )
        elif isinstance(event, Done):
            u = event.usage
            self._line(
                Text(
                    f"\n■ {event.status} in {event.t:.2f}s — {u.output_tokens} tokens out, "
                    f"{u.input_tokens} in, {u.calls} calls, {u.interrupts} interrupts",
                    "bold",
                )
            )
            if event.error:
                self._line(Text(f"  error: {event.error}", "red"))
