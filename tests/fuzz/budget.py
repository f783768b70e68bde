"""How many inputs each fuzz target runs, and the count of what actually ran.

In the normal test run every target runs a small, fixed-seed budget
(``derandomize=True``): the same inputs each time, a few seconds per target, so
``make unit`` stays fast and cannot flicker.  ``make fuzz`` sets
``FUZZ_EXAMPLES`` and the targets draw that many fresh random inputs each.
Every target counts the inputs it ran; the session's summary prints them.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])

HUNT = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
"""Inputs per target in a hunt (``make fuzz``); 0 means the fixed-seed smoke run."""

RAN: Counter[str] = Counter()
"""Inputs run per target in this session, shrinking included."""


def budget(smoke: int, *, weight: float = 1.0) -> settings:
    """Hypothesis settings for one target.

    ``smoke`` is the fixed-seed budget of the normal run; ``weight`` scales the
    hunt's budget for targets whose inputs are much dearer than a parser call
    (a responder started per input).
    """
    common: dict[str, Any] = {
        "deadline": None,
        "database": None,
        "suppress_health_check": list(HealthCheck),
        "print_blob": True,
    }
    if HUNT:
        return settings(max_examples=max(1, int(HUNT * weight)), **common)
    return settings(max_examples=smoke, derandomize=True, **common)


def counted(target: str) -> Callable[[F], F]:
    """Count every input ``target`` runs (put it under ``@given``)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            RAN[target] += 1
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
