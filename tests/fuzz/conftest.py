"""The fuzz session's summary: inputs run per target (``make fuzz`` prints it)."""

from __future__ import annotations

import pytest

from .budget import HUNT, RAN


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RAN:
        return
    mode = f"hunt, FUZZ_EXAMPLES={HUNT}" if HUNT else "fixed-seed smoke run"
    terminalreporter.write_sep("=", f"fuzz inputs per target ({mode})")
    for target, n in sorted(RAN.items()):
        terminalreporter.write_line(f"{target:<40} {n:>8}")
