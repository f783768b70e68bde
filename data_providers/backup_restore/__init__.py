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
backup mode.

Configured as::

    [providers.backup_restore]
    socket = "/run/backup-engine/engine.sock"
    idle_timeout = 300          # seconds without a read before leaving backup mode
    description = "Backup & Restore"
    space_path = "/"            # free space reported, and checked before a restore
"""

from .storage import MTP_CODES, BackupRestoreProvider, BackupRestoreStorage, mtp_code

__all__ = ["MTP_CODES", "BackupRestoreProvider", "BackupRestoreStorage", "mtp_code"]
