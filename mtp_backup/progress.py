"""Transfer progress: a tqdm bar on a terminal, and one summary line in any case.

The bar goes to stderr and only when that is a terminal: in a log or a pipe it
would be noise.  The summary (bytes, time, speed) goes to stdout every time,
because it is the record of what a run moved.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm

BAR_OPTIONS: dict[str, Any] = {
    "unit": "B",
    "unit_scale": True,
    "unit_divisor": 1000,  # MB as in the summary line
    "dynamic_ncols": True,
    "leave": False,  # the summary line replaces the bar
}
"""How every ``mtp-backup`` transfer shows on a terminal."""


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class Progress:
    """One transfer: :meth:`update` with the bytes done so far, then :meth:`finish`.

    The USB initiator reports running totals; tqdm counts steps, so the
    difference is passed on.  Used as a context manager, a transfer that fails
    still clears its bar off the terminal.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        summary: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        redraw_every: float = 0.1,
        start: int = 0,
    ) -> None:
        """``clock`` times the summary line; the bar redraws at most every ``redraw_every`` s.

        ``start``: bytes already there (a resumed download): the bar begins
        there, and the summary's speed counts only what this run moved.
        """
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.summary = summary if summary is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.started = clock()
        self.done = self.start = start
        self.bar = tqdm(
            total=total or None,  # 0: size unknown, a counter without a bar
            initial=start,
            desc=label,
            file=self.stream,
            disable=not self.tty,
            mininterval=redraw_every,
            **BAR_OPTIONS,
        )

    def update(self, done: int) -> None:
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        """Clear the bar (it may be called again)."""
        self.bar.close()

    def finish(self, what: str = "") -> str:
        """Clear the bar and print the summary line; returns it."""
        self.close()
        elapsed = max(self.clock() - self.started, 1e-6)
        moved = self.done - self.start
        resumed = f", resumed at {self.start} bytes" if self.start else ""
        text = (
            f"{self.label}: {human_bytes(self.done)} ({self.done} bytes{resumed}) in "
            f"{elapsed:.1f} s, {moved / elapsed / 1e6:.2f} MB/s" + (f" {what}" if what else "")
        )
        print(text, file=self.summary, flush=True)
        return text

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
