"""Whose fault a protocol violation is, and what the server answers it with.

As in h11: :class:`LocalProtocolError` when our side tried to send something
OBEX does not allow now, :class:`RemoteProtocolError` when the peer did.  Each
carries the response code a server answers the violation with, so a hostile
packet becomes an ordinary OBEX error response and never a traceback.
"""

from __future__ import annotations

from .codes import ResponseCode


class ProtocolError(Exception):
    """Something OBEX does not allow."""

    def __init__(self, message: str, response: ResponseCode = ResponseCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class LocalProtocolError(ProtocolError):
    """We tried to send something OBEX does not allow now."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something OBEX does not allow (or that cannot be parsed)."""
