"""The toolkit's failures as OBEX response codes: one table, every answer.

OBEX has no code for "insufficient storage" or "not an archive" of its own,
so the choices are:

* NO_SPACE is Request Entity Too Large: the object is too large for the room
  the device has (OBEX's Database Full speaks of phone books).
* BAD_DATA is Unsupported Media Type: what was sent is not an archive this
  device can restore (corrupt, hostile, naming an owner it does not have).
* BAD_NAME is Bad Request: the request's Name cannot be used (reserved,
  taken, not one file name); Forbidden stays for what the layout forbids.
"""

from __future__ import annotations

from engine.serverkit import ErrorKind, ServerError
from obex_backup_server.core.codes import ResponseCode

OBEX_CODES: dict[ErrorKind, ResponseCode] = {
    ErrorKind.NOT_FOUND: ResponseCode.NOT_FOUND,
    ErrorKind.DENIED: ResponseCode.FORBIDDEN,
    ErrorKind.BAD_NAME: ResponseCode.BAD_REQUEST,
    ErrorKind.NO_SPACE: ResponseCode.REQUEST_ENTITY_TOO_LARGE,
    ErrorKind.BAD_DATA: ResponseCode.UNSUPPORTED_MEDIA_TYPE,
    ErrorKind.INCOMPLETE: ResponseCode.SERVICE_UNAVAILABLE,
    ErrorKind.BUSY: ResponseCode.SERVICE_UNAVAILABLE,
    ErrorKind.UNAVAILABLE: ResponseCode.SERVICE_UNAVAILABLE,
    ErrorKind.FAILED: ResponseCode.INTERNAL_SERVER_ERROR,
}


def obex_code(error: ServerError) -> ResponseCode:
    """The answer the client gets for ``error``."""
    return OBEX_CODES[error.kind]
