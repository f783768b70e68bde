"""Utility APIs for writing a backup server: one tree, one set of semantics.

Every backup server in front of the engine (the MTP data provider, an OBEX
server) shows the same virtual tree — Backup/, Incremental/, Restore/ — with
the same behaviour: listing Backup/ prepares a backup, a snapshot dropped into
Incremental/ makes the increment appear, an archive dropped into Restore/ is
restored, and the device goes back to Normal mode when the peer is done or
gone.  The toolkit knows nothing of any transport: each one maps
:class:`BackupServer`'s calls onto its operations and each
:class:`ErrorKind` onto its own response codes.  engine/README.md, "Backup
servers' toolkit", is the full contract.  With age recipients in its
:class:`ServerConfig` the server serves every archive encrypted
(``.mbak.age``), and with identities it restores encrypted archives
(:mod:`.encryption`).  With a ``resume_window`` a peer gone in the middle of
a download finds the same archive in its next session and reads the rest
(:mod:`.resume`).
"""

from .encryption import KeyFileError, parse_recipients, read_identity_file, read_recipients_file
from .errors import ErrorKind, ServerError, kind_of
from .server import BackupServer, Listener, ServerConfig
from .status import RestoreStatus
from .tree import (
    ARCHIVE_KEYS,
    BACKUP,
    FOLDERS,
    INCREMENTAL,
    OWNERS,
    RESTORE,
    ROOT,
    STATUS,
    Entry,
    EntryKind,
)
from .uploads import Upload

__all__ = [
    "ARCHIVE_KEYS",
    "BACKUP",
    "FOLDERS",
    "INCREMENTAL",
    "OWNERS",
    "RESTORE",
    "ROOT",
    "STATUS",
    "BackupServer",
    "Entry",
    "EntryKind",
    "ErrorKind",
    "KeyFileError",
    "Listener",
    "RestoreStatus",
    "ServerConfig",
    "ServerError",
    "Upload",
    "kind_of",
    "parse_recipients",
    "read_identity_file",
    "read_recipients_file",
]
