"""The "Backup & Restore" storage: device backup and restore by copying files.

A client of the backup engine and nothing else: it never reads a data owner's
files itself.  The tree and its behaviour are the backup servers' toolkit's
(:mod:`engine.serverkit`, shared with every other backup server); this package
shows it as an MTP storage.  The storage looks like this::

    Backup/                     listing it prepares a full base backup
      <device>-<stamp>.mbak     the whole backup (pax tar, exact size)
      <device>-<stamp>.snapshot what the next incremental needs
      owners/<name>-<SID>.mbak  one data owner each (partial backups)
    Incremental/                drop a .snapshot (or an older .mbak) here;
      <device>-<stamp>.mbak     the increment against it then appears
      <device>-<stamp>.snapshot
    Restore/                    drop a .mbak here to restore it
      status.txt                what the last restore did, in words

The engine holds the device in backup mode from the moment a backup is
prepared until the host is done: CloseSession, ResetDevice, an unplug and an
idle timeout all bring it back to Normal, so a device is never left stuck in
backup mode.  A host cut off in the middle of an archive is the one bounded
exception: the backup stays prepared for ``resume_window`` seconds, so the
host's next session gets the same archive and reads the rest with
GetPartialObject64 from where it stopped (``Restore/status.txt`` says so).

Configured as::

    [providers.backup_restore]
    socket = "/run/backup-engine/engine.sock"
    idle_timeout = 300          # seconds without a read before leaving backup mode
    resume_window = 300         # seconds a cut-off download can be resumed (0: off)
    description = "Backup & Restore"
    space_path = "/"            # free space reported, and checked before a restore
    recipients = ["age1..."]    # serve backups encrypted (<name>.mbak.age) to these keys
    recipients_file = "/etc/backup/recipients.txt"   # or: one age1... per line
    identity_file = "/etc/backup/key.txt"   # restore .mbak.age (mode 0600, root's)

With recipients, every archive (full, per owner, increments) is served as
``<name>.mbak.age``, the age encryption of the archive, with its exact size
up front; the plaintext never touches the disk.  ``.snapshot`` files stay
plain: they list file names, sizes and digests, not file content, and the
host sends them back for an increment.  Without ``identity_file`` an
encrypted archive sent into ``Restore/`` is refused with the reason in
``status.txt``; a wrong key or an altered byte is refused too, and nothing
changes.
"""

from .storage import MTP_CODES, BackupRestoreProvider, BackupRestoreStorage, mtp_code

__all__ = ["MTP_CODES", "BackupRestoreProvider", "BackupRestoreStorage", "mtp_code"]
