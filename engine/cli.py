"""``backup-engine``: run the engine, and back up / restore without MTP.

The command line is the engine's own end-to-end proof: ``backup`` writes exactly
the archive the MTP data provider serves, ``restore`` feeds one back through the
same staged, verified path.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import trio
from tqdm import tqdm

from .client import SyncEngineClient
from .daemon.config import ConfigError, EngineConfig
from .errors import EngineError
from .types import format_sid, parse_sid


def _progress(args: argparse.Namespace, total: int, label: str) -> tqdm:
    """The transfer bar of ``backup`` and ``restore``: tqdm on stderr, left on screen at the end.

    Shown when stderr is a terminal or ``--progress`` asks for it, never with
    ``--quiet``: stdout carries the results, which scripts read.
    """
    return tqdm(
        total=total,
        desc=label,
        file=sys.stderr,
        disable=not _progress_enabled(args),
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        mininterval=0.1,
        dynamic_ncols=True,
    )


def _config(args: argparse.Namespace) -> EngineConfig:
    path = args.config or os.environ.get("BACKUP_ENGINE_CONFIG")
    cfg = EngineConfig.load(Path(path) if path else None)
    if args.socket:
        cfg.socket_path = Path(args.socket)
    return cfg


def _progress_enabled(args: argparse.Namespace) -> bool:
    if args.quiet:
        return False
    return bool(args.progress) or sys.stderr.isatty()


def cmd_serve(args: argparse.Namespace) -> int:
    from .daemon.server import run_server

    cfg = _config(args)
    trio.run(run_server, cfg)
    return 0


def cmd_owners(args: argparse.Namespace) -> int:
    with SyncEngineClient(_config(args).socket_path) as c:
        for o in c.list_data_owners():
            kinds = []
            if o.common & 0x01:
                kinds.append("active")
            if o.common & 0x02:
                kinds.append("passive")
            if o.passive & 0x01:
                kinds.append("public")
            line = (
                f"{format_sid(o.sid)}  {o.name:<24} {'+'.join(kinds) or '-':<22} "
                f"common=0x{int(o.common):02x} passive=0x{int(o.passive):02x} "
                f"active=0x{int(o.active):02x} drives={''.join(o.drives)}"
            )
            if o.disabled is not None:
                line += f"  disabled: {_one_line(o.disabled)}"
            print(line)
    return 0


def _one_line(text: str) -> str:
    """Text from a registration file, made safe for one line of a listing."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def cmd_status(args: argparse.Namespace) -> int:
    with SyncEngineClient(_config(args).socket_path, role="observer") as c:
        m = c.mode_info()
        print(
            f"mode={m.mode.name} inc={m.inc.name} value=0x{m.value:x} drives={','.join(m.drives)}"
        )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    out = Path(args.output)
    sids = [parse_sid(s) for s in args.owner] if args.owner else None
    prev = Path(args.incremental) if args.incremental else None
    with SyncEngineClient(_config(args).socket_path) as c:
        try:
            prep = c.prepare_backup(sids, prev)
            full = prep.archive("full")
            snap = prep.archive("snapshot")
            for sid, why in prep.skipped:
                print(f"warning: owner {format_sid(sid)} skipped ({why})", file=sys.stderr)
            tmp = out.with_name(out.name + ".part")
            with _progress(args, full.size, "backup") as bar, open(tmp, "wb") as f:
                n = c.read_archive_to(full.name, f, progress=bar.update)
            if n != full.size:
                raise EngineError(f"archive ended after {n} of {full.size} bytes")
            os.replace(tmp, out)
            snap_out = out.with_suffix(".snapshot")
            with open(snap_out, "wb") as f:
                c.read_archive_to(snap.name, f)
        finally:
            c.set_normal()
    print(f"{out}: {full.size} bytes ({prep.mode}), snapshot {snap_out}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    src = Path(args.input)
    sids = [parse_sid(s) for s in args.owner] if args.owner else None
    with (
        SyncEngineClient(_config(args).socket_path) as c,
        open(src, "rb") as f,
        _progress(args, src.stat().st_size, "restore") as bar,
    ):
        res = c.restore_archive_from(f, sids, progress=bar.update)
    for o in res.owners:
        state = "ok" if o.code == 0 else f"FAILED ({o.code}: {o.reason})"
        print(f"{format_sid(o.sid)}: {state}")
    if not res.ok:
        print(f"restore failed ({res.code}): {res.reason}", file=sys.stderr)
        return 1
    print(f"restored {src}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backup-engine", description=__doc__)
    p.add_argument("--config", help="engine config (TOML); default $BACKUP_ENGINE_CONFIG")
    p.add_argument("--socket", help="engine socket path (overrides the config)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="progress bar even if not a terminal")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="run the engine").set_defaults(fn=cmd_serve)
    sub.add_parser("owners", help="list data owners").set_defaults(fn=cmd_owners)
    sub.add_parser("status", help="show the BUR mode").set_defaults(fn=cmd_status)
    b = sub.add_parser("backup", help="write a backup archive (.mbak) and its .snapshot")
    b.add_argument("output")
    b.add_argument("--incremental", metavar="PREV", help="previous .snapshot (or .mbak)")
    b.add_argument("--owner", action="append", metavar="SID", help="partial backup of these owners")
    b.set_defaults(fn=cmd_backup)
    r = sub.add_parser("restore", help="restore a backup archive")
    r.add_argument("input")
    r.add_argument("--owner", action="append", metavar="SID", help="restore only these owners")
    r.set_defaults(fn=cmd_restore)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.fn(args))
    except ConfigError as e:
        print(f"backup-engine: {e.message}", file=sys.stderr)
        return 2
    except EngineError as e:
        print(f"backup-engine: error {int(e.code)}: {e.message}", file=sys.stderr)
        return 2
    except (OSError, KeyError) as e:
        print(f"backup-engine: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
