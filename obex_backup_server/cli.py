"""``obex-backup-server``: the board's backups over OBEX, for stock OBEX clients.

Serves the backup toolkit's tree (Backup/, Incremental/, Restore/) to OBEX
Folder Browsing clients over TCP and, when ``[obex] tty`` is set, over the USB
CDC OBEX serial port.  ``--check-config`` loads the configuration, prints
the values in effect and exits: 0 if it can be used, 2 with the bad key named.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
from pathlib import Path

import trio

from .config import DEFAULT_PATH, ConfigError, ObexConfig, parse_address
from .server import ObexBackupServer
from .tcp import serve_tcp

log = logging.getLogger("obex_backup_server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obex-backup-server",
        description="Serve device backup and restore to OBEX clients (Folder Browsing).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"TOML configuration (default {DEFAULT_PATH}, every default if it does not exist)",
    )
    parser.add_argument(
        "--check-config", action="store_true", help="check the configuration, print it, and exit"
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help='TCP address instead of [obex] listen ("" for none)'
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging threshold (default info)",
    )
    return parser


def load_config(args: argparse.Namespace) -> ObexConfig:
    if args.config is not None:
        config = ObexConfig.load(args.config)
    elif DEFAULT_PATH.exists():
        config = ObexConfig.load(DEFAULT_PATH)
    else:
        config = ObexConfig()
    if args.listen is not None:
        config.listen = parse_address("--listen", args.listen) if args.listen else None
        if config.listen is None and config.tty is None:
            raise ConfigError("--listen: empty and obex.tty unset: nothing to serve")
    return config


def describe(config: ObexConfig) -> str:
    """The values in effect, as the TOML that would set them."""

    def text(value: object) -> str:
        return json.dumps("" if value is None else str(value))

    lines = [
        "[obex]",
        f"listen = {text(config.listen)}",
        f"tty = {text(config.tty)}",
        f"busy_wait = {config.busy_wait!r}",
        f"link_timeout = {config.link_timeout!r}",
        f"max_packet_length = {config.max_packet_length}",
        f"manufacturer = {text(config.manufacturer)}",
        f"model = {text(config.model)}",
        "[engine]",
        f"socket = {text(config.socket)}",
        f"idle_timeout = {config.idle_timeout!r}",
        f"spool_dir = {text(config.spool_dir)}",
        f"space_path = {text(config.space_path)}",
        f"# archives served encrypted to {len(config.recipients)} age recipient(s); "
        f"{len(config.identities)} identity(ies) to restore encrypted archives",
    ]
    return "\n".join(lines)


async def serve(config: ObexConfig) -> int:
    """Run the server on every transport the configuration names until a signal; the exit code.

    A transport that cannot start (the port is taken, the tty missing) stops
    everything with exit code 1 and an error naming its key.
    """
    server = ObexBackupServer(config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        await nursery.start(server.run)
        key = "obex.listen"
        try:
            if config.listen is not None:
                await nursery.start(serve_tcp, config.listen, server.serve_stream)
            if config.tty is not None:
                key = "obex.tty"
                await _serve_usb(nursery, config.tty, server)
        except OSError as exc:
            log.error("%s: cannot serve: %s", key, exc)
            nursery.cancel_scope.cancel()
            return 1
    return 0


async def _serve_usb(nursery: trio.Nursery, tty: str, server: ObexBackupServer) -> None:
    # Imported only when asked for: TCP alone needs no USB part.
    try:
        usb = importlib.import_module("obex_backup_server.usb")
    except ImportError as exc:
        raise OSError(f"USB is not available in this installation: {exc}") from exc
    await nursery.start(usb.serve_tty, tty, server.serve_stream)
    log.info("serving USB on %s", tty)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    """SIGTERM or SIGINT: end every connection as a lost link (engine back to Normal), then exit."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for number in signals:
            log.info("stopping on %s", signal.Signals(number).name)
            scope.cancel()
            return


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"obex-backup-server: configuration: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(describe(config))
        return 0
    return trio.run(serve, config)


if __name__ == "__main__":
    sys.exit(main())
