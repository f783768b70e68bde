"""``mtp-responder``: run the responder on a FunctionFS mount or in loopback.

A configuration is checked in full before anything is served: the file,
every key, and the providers it names (plugins load, storage directories
exist, options have the right types).  ``--check-config`` runs exactly that
check.  SIGHUP re-reads the configuration; one that does not pass the check
is reported and ignored, so a typo never takes a working device down.
SIGTERM and SIGINT end the session (providers release any backup mode) and
exit with status 0.

On a gadget the providers load first and the FunctionFS descriptors are
written right after: the host cannot enumerate before the descriptors, and a
host whose first command waits seconds for its answer (providers still
loading on a slow board) resets the device. What serving needs is imported
lazily, so the whole start stays short.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import LOG_LEVELS, Config, ConfigError, load_config

if TYPE_CHECKING:
    from .app import Responder
    from .transport.base import Transport
    from .transport.ffs_function import MTPFunction
    from .transport.functionfs import FunctionFSTransport

log = logging.getLogger("mtp_responder")


class _VersionAction(argparse.Action):
    """``--version``, reading the version only when asked (it costs an import)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from . import __version__

        print(f"{parser.prog} {__version__}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtp-responder", description="MTP responder for a Linux USB gadget."
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--functionfs", type=Path, metavar="MOUNT", help="FunctionFS mount point of the function"
    )
    where.add_argument(
        "--loopback",
        action="store_true",
        help="serve an in-process initiator that lists the device, then exit (a self-check)",
    )
    where.add_argument("--check-config", action="store_true", help="validate the config and exit")
    parser.add_argument("--log-file", type=Path, help="log here instead of stderr")
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        help="override the configured log level",
    )
    parser.add_argument("--version", action=_VersionAction)
    return parser


def _setup_logging(config: Config, args: argparse.Namespace) -> None:
    level = (args.log_level or config.log_level).upper()
    handler: logging.Handler
    try:
        handler = logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler()
    except OSError as exc:
        raise ConfigError(f"--log-file: {args.log_file}: {exc.strerror or exc}") from exc
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _checked(path: Path | None) -> tuple[Config, Responder]:
    """The configuration and a responder built from it: the whole check of a start."""
    config = load_config(path)
    return config, _responder(config)


def _responder(config: Config) -> Responder:
    """Providers, object model and operations; a :class:`ConfigError` names what is wrong."""
    from .app import Responder

    return Responder(config)


async def _serve_reloading(
    args: argparse.Namespace, responder: Responder, transport: Transport
) -> None:
    """Run a responder; on SIGHUP build a new one from the re-read config."""
    import trio

    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        while True:
            async with trio.open_nursery() as nursery:
                await nursery.start(responder.run, transport)
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        try:
                            config, new = _checked(args.config)
                        except ConfigError as exc:
                            log.error("SIGHUP: keeping the running configuration: %s", exc)
                            continue
                        log.info("SIGHUP: configuration reloaded")
                        logging.getLogger().setLevel((args.log_level or config.log_level).upper())
                    else:
                        log.info("%s: shutting down", signal.Signals(signum).name)
                        await responder.shutdown()
                        nursery.cancel_scope.cancel()
                        return
                    await responder.shutdown()
                    nursery.cancel_scope.cancel()
                    responder = new
                    break


def _open_functionfs(args: argparse.Namespace, config: Config) -> FunctionFSTransport:
    """Write the descriptors, then load the transport that serves them.

    The descriptors go first: the host cannot enumerate before, and nothing
    more than :mod:`.ffs_function` (python-functionfs, the descriptor tables)
    is needed to write them.
    """
    from .transport.ffs_function import open_function

    function: MTPFunction = open_function(args.functionfs)
    log.info("descriptors written to %s; the UDC may be bound", args.functionfs)
    try:
        from .transport.functionfs import FunctionFSTransport

        return FunctionFSTransport(
            args.functionfs,
            buffer_size=config.transport.buffer_size,
            out_blocks=config.transport.blocks_in_flight,
            in_blocks=config.transport.blocks_in_flight,
            function=function,
        )
    except BaseException:
        function.__exit__(None, None, None)
        raise


async def _run_functionfs(
    args: argparse.Namespace, responder: Responder, transport: FunctionFSTransport
) -> int:
    """Serve the gadget with a responder whose providers are already loaded.

    The providers load before the descriptors are written: the host cannot
    enumerate before, so its first command never waits seconds for an answer
    (libmtp then resets the device and tries again).
    """
    import trio

    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve)
        await _serve_reloading(args, responder, transport)
        nursery.cancel_scope.cancel()
    return 0


async def _run_loopback(responder: Responder) -> int:
    import trio

    from .core.codes import ResponseCode
    from .testing.initiator import Initiator
    from .transport.loopback import loopback_pair

    transport, host = loopback_pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.run, transport)
        mtp = Initiator(host)
        info = await mtp.device_info()
        print(f"{info.manufacturer} {info.model} (serial {info.serial_number})")
        if not (await mtp.open_session()).ok:
            return 1
        for sid in await mtp.storage_ids():
            storage = await mtp.storage_info(sid)
            handles = await mtp.object_handles(sid)
            print(
                f"storage {sid:#010x} {storage.storage_description!r}: "
                f"{storage.free_space_in_bytes} bytes free, {len(handles)} objects at its root"
            )
        status = (await mtp.close_session()).code
        nursery.cancel_scope.cancel()
    return 0 if status == ResponseCode.OK else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config, responder = _checked(args.config)
        if not args.check_config:
            _setup_logging(config, args)
    except ConfigError as exc:
        print(f"mtp-responder: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config or 'defaults'}: OK")
        return 0
    try:
        if args.functionfs is None:
            import trio

            return int(trio.run(_run_loopback, responder))
        try:
            transport = _open_functionfs(args, config)
        except OSError as exc:
            log.error("%s: cannot write the descriptors: %s", args.functionfs, exc)
            print(f"mtp-responder: {args.functionfs}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        import trio

        return int(trio.run(_run_functionfs, args, responder, transport))
    except (LookupError, ValueError) as exc:
        log.error("%s", exc)
        print(f"mtp-responder: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
