"""How ``mtp-backup`` fails: one exception type, and the exit code each failure maps to."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
"""A device or transfer error."""
EXIT_USAGE = 2
EXIT_REFUSED = 3
"""The device refused the restore; the reason from ``Restore/status.txt`` is printed."""
EXIT_CORRUPT = 4
"""An archive failed verification."""


class ToolError(Exception):
    """A failure with a message for the user and the exit code it maps to."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
