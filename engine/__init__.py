"""The device's backup engine: data owners, base and incremental backup, restore.

It knows nothing of MTP; backup servers (the MTP data provider, the ``backup-engine``
command line) are clients of it over a Unix socket, see :mod:`engine.client`.
"""

__version__ = "0.1.0"
