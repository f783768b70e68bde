"""The device's backup engine: data owners, base and incremental backup, restore.

It knows nothing of MTP; backup servers (the MTP data provider, the ``backup-engine``
command line) are clients of it over a Unix socket, see :mod:`engine.client`.
"""

from importlib import metadata

try:
    # One distribution ships the engine and the responder: one version, in pyproject.toml.
    __version__ = metadata.version("mtp-responder")
except metadata.PackageNotFoundError:  # a source tree run without installing it
    __version__ = "0+unknown"
