"""Progress of long work: a tqdm bar for people, events for hosts and plugins.

The bar is silent with ``quiet`` or when stderr is not a terminal; events reach
``on_progress`` hooks and host callbacks either way.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from engine.errors import Cancelled


@attrs.frozen
class ProgressEvent:
    """One step of a task. ``total`` is None when unknown; ``done`` marks the end."""

    task: str
    current: int
    total: int | None = None
    message: str = ""
    done: bool = False


Emit = Callable[[ProgressEvent], None]


class CancelToken:
    """Lets a host stop long work: ``cancel()`` from any thread, or a ``deadline`` in seconds
    from now. Work checks it at every progress step and stops with :class:`engine.errors.Cancelled`."""

    def __init__(self, deadline: float | None = None) -> None:
        self._event = threading.Event()
        self._until = None if deadline is None else time.monotonic() + deadline

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._until is not None and time.monotonic() >= self._until)

    def check(self, task: str = "") -> None:
        if self.cancelled:
            why = "deadline passed" if not self._event.is_set() else "cancelled"
            raise Cancelled(f"{task or 'work'} stopped: {why}")


_TOKEN: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar("engine_cancel", default=None)


@contextlib.contextmanager
def cancellation(token: CancelToken) -> Iterator[CancelToken]:
    """Within this block (this thread or task), long work stops at its next step once ``token`` is cancelled."""
    reset = _TOKEN.set(token)
    try:
        yield token
    finally:
        _TOKEN.reset(reset)


class Progress:
    """A progress bar that also emits :class:`ProgressEvent` on each update."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        quiet: bool = False,
        emit: Emit | None = None,
    ) -> None:
        from tqdm.auto import tqdm

        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.task = desc
        self.total = total
        self.current = 0
        self._emit = emit
        self._closed = False
        self._bar = tqdm(
            total=total, desc=desc, disable=quiet or not sys.stderr.isatty(), leave=False, dynamic_ncols=True
        )

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this Progress was created without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def update(self, n: int = 1, message: str = "") -> None:
        token = _TOKEN.get()
        if token is not None:
            token.check(self.task)
        self.current += n
        self._bar.update(n)
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._send(ProgressEvent(self.task, self.current, self.total, message))

    def set_postfix(self, **values: Any) -> None:
        self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """Close the bar and emit the final ``done`` event (once)."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        self._send(ProgressEvent(self.task, self.current, self.total, done=True))

    def _send(self, event: ProgressEvent) -> None:
        if self._emit is not None:
            self._emit(event)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
