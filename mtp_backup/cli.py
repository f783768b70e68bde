"""``mtp-backup``: one-command backup, incremental backup and restore from a PC.

It speaks plain MTP to the storage whose description is "Backup & Restore",
doing exactly what a person would do in a file manager: copy ``Backup/*.mbak``
out, drop a ``.snapshot`` into ``Incremental/`` and copy the increment out,
drop a ``.mbak`` into ``Restore/`` and read ``Restore/status.txt``.  An
age-encrypted backup (``x.mbak.age``, what a device configured with
recipients serves) is copied as it is, checked as it arrives with
``--identity KEYFILE`` (without a key it is copied unchecked, and said so),
and verified and restored with ``--identity KEYFILE``, decrypted as it is
read.  Before the first byte of a backup the PC's free space in DIR is
checked against the archives' exact sizes.  A copy cut off (cable, sleep,
Ctrl-C) stays in ``<name>.<size>.part`` and the next run continues it from
its length with GetPartialObject64 while the device still holds that backup,
checking the whole file.  So it
works against any device running this responder, and a backup it takes is the
same file a user could have dragged out by hand.

This module is the command line only; each command's work is in its own
module: :mod:`~mtp_backup.backup`, :mod:`~mtp_backup.restore`,
:mod:`~mtp_backup.verify` (archives checked offline and as they arrive),
:mod:`~mtp_backup.encrypted` (``.mbak.age``: keys and decryption),
:mod:`~mtp_backup.chain` (``chain.json``, the order a directory's backups
restore in), :mod:`~mtp_backup.device` (the MTP session),
:mod:`~mtp_backup.space` (free space in DIR before a backup) and
:mod:`~mtp_backup.progress`.

Exit codes: 0 done; 1 device or transfer error (also not enough free space
in DIR for the backup); 2 usage (also an encrypted
backup without ``--identity``, or with keys none of which opens it); 3 the
device refused the restore (the reason from ``Restore/status.txt`` is
printed); 4 an archive failed verification (for a ``.mbak.age`` also a
damaged, truncated or extended encrypted file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .backup import take_backup
from .device import list_devices
from .encrypted import load_identities
from .errors import EXIT_FAILED, EXIT_OK, ToolError
from .restore import restore
from .verify import verify_target


def cmd_devices(args: argparse.Namespace) -> int:
    return list_devices(args.timeout)


def cmd_backup(args: argparse.Namespace) -> int:
    take_backup(
        args.dir,
        incremental=args.incremental,
        owners=args.owner or [],
        selector=args.device,
        timeout_s=args.timeout,
        identities=load_identities(args.identity or []),
    )
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    restore(
        args.file,
        verify=not args.no_verify,
        selector=args.device,
        timeout_s=args.timeout,
        identities=load_identities(args.identity or []),
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    return verify_target(args.file, load_identities(args.identity or []))


def add_identity_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "-i",
        "--identity",
        type=Path,
        action="append",
        metavar="KEYFILE",
        help="age key file (as age-keygen writes) to decrypt .mbak.age backups; may repeat",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtp-backup",
        description="Back up and restore a device over MTP (its 'Backup & Restore' storage).",
    )
    parser.add_argument("--device", help="USB address BUS:ADDR or serial number of the device")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for one USB transfer; preparing a backup and "
        "applying a restore happen inside one (default 300)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("devices", help="list MTP devices and their storages")
    backup_cmd = sub.add_parser(
        "backup",
        help="copy a backup of the device into DIR (an interrupted copy is continued)",
    )
    backup_cmd.add_argument("dir", type=Path, metavar="DIR")
    backup_cmd.add_argument(
        "--incremental",
        action="store_true",
        help="an increment against the newest backup in DIR's chain",
    )
    backup_cmd.add_argument(
        "--owner", nargs="+", metavar="SID", help="only these data owners (hex SIDs)"
    )
    add_identity_option(backup_cmd)
    restore_cmd = sub.add_parser(
        "restore",
        help="restore a .mbak (or an encrypted .mbak.age), or every backup of DIR's chain in order",
    )
    restore_cmd.add_argument("file", type=Path, metavar="FILE")
    restore_cmd.add_argument("--no-verify", action="store_true", help="send without checking first")
    add_identity_option(restore_cmd)
    verify_cmd = sub.add_parser("verify", help="check an archive (or DIR's chain) offline")
    verify_cmd.add_argument("file", type=Path, metavar="FILE")
    add_identity_option(verify_cmd)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "devices": cmd_devices,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "verify": cmd_verify,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ToolError as exc:
        print(f"mtp-backup: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mtp-backup: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # USB and MTP errors: say what failed, not a traceback
        print(f"mtp-backup: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
