"""``mtp-gadget``: bring the MTP USB gadget up or down from the responder's config.

``up`` and ``down`` cover interactive use and tests.  Under systemd the work is
split so that systemd, not this tool, supervises the responder:
``prepare`` (tree + mount) in a oneshot unit, the responder as a service, and
``bind`` from that service's ExecStartPost once the responder has written its
descriptors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from gadget_config import gadget
from gadget_config.settings import ConfigError, Settings, format_keys, load

DEFAULT_CONFIG = "/etc/mtp-responder/mtp-responder.toml"


def _settings(path: str | None) -> Settings:
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    return load(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtp-gadget", description=__doc__)
    parser.add_argument(
        "--config", "-c", help=f"responder TOML config (default: {DEFAULT_CONFIG} if present)"
    )
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("up", help="build the gadget, start the responder, bind the UDC")
    sub.add_parser("down", help="unbind, stop the responder, unmount, remove the gadget")
    st = sub.add_parser("status", help="show what exists of the gadget")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("prepare", help="build the gadget and mount FunctionFS only")
    bd = sub.add_parser("bind", help="wait for the responder's descriptors, then bind")
    bd.add_argument("--responder-pid", type=int, help="fail early if this process exits")
    sub.add_parser("unbind", help="detach from the UDC (the host sees an unplug)")
    sub.add_parser("show-config", help="print the effective settings")
    args = parser.parse_args(argv)

    try:
        settings = _settings(args.config)
        if args.verb == "show-config":
            print("\n".join(format_keys(settings)))
            return 0
        if args.verb == "status":
            info = gadget.status(settings)
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                print("\n".join(gadget.iter_status_lines(info)))
            return 0
        if os.geteuid() != 0:
            print("mtp-gadget: must run as root (configfs, mount)", file=sys.stderr)
            return 2
        if args.verb == "up":
            udc = gadget.up(settings)
            print(f"mtp-gadget: {settings.gadget.name} is up on {udc}")
        elif args.verb == "down":
            gadget.down(settings)
            print(f"mtp-gadget: {settings.gadget.name} is down")
        elif args.verb == "prepare":
            gadget.prepare(settings)
        elif args.verb == "bind":
            gadget.bind_when_ready(settings, args.responder_pid)
        elif args.verb == "unbind":
            gadget.unbind(settings)
    except ConfigError as exc:
        print(f"mtp-gadget: config error: {exc}", file=sys.stderr)
        return 2
    except gadget.GadgetError as exc:
        print(f"mtp-gadget: {args.verb} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
