"""Engine errors: one exception hierarchy, each class with a fixed numeric code.

Clients on the other side of the socket only ever see ``(code, message)``; the
codes are fixed (engine/README.md, Wire protocol), so a backup server maps them
onto whatever its own protocol reports (MTP response codes, exit statuses) with
one table.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    NONE = 0
    NOT_FOUND = -1
    GENERAL = -2
    CANCEL = -3
    NOT_SUPPORTED = -5
    ARGUMENT = -6
    OVERFLOW = -9
    UNDERFLOW = -10
    ALREADY_EXISTS = -11
    PATH_NOT_FOUND = -12
    IN_USE = -14
    NOT_READY = -18
    CORRUPT = -20
    ACCESS_DENIED = -21
    TIMED_OUT = -33
    DISK_FULL = -26


class EngineError(Exception):
    """Base of every error the engine reports; ``code`` survives the wire."""

    code: ErrorCode = ErrorCode.GENERAL

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.name.lower().replace("_", " "))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFoundError(EngineError):
    code = ErrorCode.NOT_FOUND


class GeneralError(EngineError):
    code = ErrorCode.GENERAL


class CancelledError(EngineError):
    code = ErrorCode.CANCEL


class NotSupportedError(EngineError):
    code = ErrorCode.NOT_SUPPORTED


class ArgumentError(EngineError):
    code = ErrorCode.ARGUMENT


class OverflowEngineError(EngineError):
    code = ErrorCode.OVERFLOW


class UnderflowError(EngineError):
    code = ErrorCode.UNDERFLOW


class AlreadyExistsError(EngineError):
    code = ErrorCode.ALREADY_EXISTS


class PathNotFoundError(EngineError):
    code = ErrorCode.PATH_NOT_FOUND


class InUseError(EngineError):
    code = ErrorCode.IN_USE


class NotReadyError(EngineError):
    code = ErrorCode.NOT_READY


class CorruptError(EngineError):
    code = ErrorCode.CORRUPT


class AccessDeniedError(EngineError):
    code = ErrorCode.ACCESS_DENIED


class TimedOutError(EngineError):
    code = ErrorCode.TIMED_OUT


class DiskFullError(EngineError):
    code = ErrorCode.DISK_FULL


_BY_CODE: dict[int, type[EngineError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        GeneralError,
        CancelledError,
        NotSupportedError,
        ArgumentError,
        OverflowEngineError,
        UnderflowError,
        AlreadyExistsError,
        PathNotFoundError,
        InUseError,
        NotReadyError,
        CorruptError,
        AccessDeniedError,
        TimedOutError,
        DiskFullError,
    )
}


def error_from_code(code: int, message: str) -> EngineError:
    """Rebuild the right exception class from a code received over the wire."""
    cls = _BY_CODE.get(code, GeneralError)
    err = cls(message)
    if cls is GeneralError and code != ErrorCode.GENERAL:
        err.code = ErrorCode.GENERAL
    return err
