"""The one exception the age format raises for bad input."""

from __future__ import annotations


class AgeError(Exception):
    """An age file, key or recipient that cannot be used; the message says why.

    Messages never quote key material, so they are safe to print and log.
    """

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else "age error"


class NoMatchingIdentity(AgeError):
    """None of the given identities opens any recipient stanza: a wrong key, not a bad file."""
