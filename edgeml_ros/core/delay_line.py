"""A delay line: calls run a given time after they were queued, in due order, on one thread.

The base station's emulated round trip holds every reply and probe echo. A thread per held
message (threading.Timer) started sixteen threads for each probe train, and starting a thread
waits until it runs, on two cores the whole simulated system shares. Offloads waited out their
deadline in bursts of 7-40 then, and not in runs of one or two policies with this line
(docs/system.md, "The base station's held replies"). One thread that sleeps until the next call
is due holds any number of messages for the cost of one.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class DelayLine:
    """Runs queued calls at their due time, in due order (queueing order among equals).

    A call that raises is handed to `on_error` and the line goes on.
    """

    def __init__(self, on_error: Callable[[Exception], object], name: str = "delay-line") -> None:
        self._on_error = on_error
        self._name = name
        self._due: list[tuple[float, int, Callable[..., object], tuple]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    def call_later(self, delay_s: float, call: Callable[..., object], *args: object) -> None:
        """Run `call(*args)` `delay_s` from now on the line's thread."""
        if delay_s < 0:
            raise ValueError(f"delay_s must not be negative, got {delay_s}")
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + delay_s, next(self._order), call, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def pending(self) -> int:
        """Calls queued and not yet finished."""
        with self._changed:
            return len(self._due) + self._running

    def drain(self) -> None:
        """Wait until every queued call has run, each at its time."""
        with self._changed:
            self._changed.wait_for(lambda: not self._due and not self._running)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._running = False
                self._changed.notify_all()
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, call, args = heapq.heappop(self._due)
                self._running = True
            try:
                call(*args)
            except Exception as error:  # the line serves every later call
                self._on_error(error)
