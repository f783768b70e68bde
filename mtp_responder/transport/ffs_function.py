"""The MTP function on a FunctionFS mount: descriptors, endpoint files, ep0 callbacks.

Kept apart from the transport so that writing the descriptors needs neither
trio nor the MTP core: nothing enumerates until they are on ep0, so
``mtp-responder`` writes them first and loads the rest of itself while the
host enumerates.  The function does nothing with ep0 events until a
transport has taken it over (:attr:`MTPFunction.transport`): events are only
read when the transport calls ``processEvents``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import functionfs

from . import descriptors

if TYPE_CHECKING:
    from .functionfs import FunctionFSTransport

_log = logging.getLogger(__name__)


def parse_kernel_release(release: str) -> tuple[int, int]:
    """(major, minor) of a ``uname -r`` string such as ``6.1.0-18-amd64``."""
    match = re.match(r"(\d+)\.(\d+)", release)
    if match is None:
        raise ValueError(f"unrecognised kernel release {release!r}")
    return int(match[1]), int(match[2])


def ffs_eventfd_is_unsafe(release: str) -> bool:
    """Whether f_fs may drop its eventfd reference twice at teardown.

    Fixed in 5.16.  python-functionfs guesses this by comparing version
    strings, which gets "5.4" and "5.10" wrong, so we decide ourselves.
    """
    return parse_kernel_release(release) < (5, 16)


class MTPFunction(functionfs.Function):
    """python-functionfs glue: descriptors, endpoint files, ep0 callbacks."""

    transport: FunctionFSTransport | None = None
    """Who handles ep0 events; set by the transport that takes the function over."""

    def __init__(self, path: str, strings: Mapping[int, str], unsafe_eventfd: bool) -> None:
        # Read by Function.__init__; an instance attribute keeps the choice
        # local instead of patching the library's class.
        self.quirks_ffs_unsafe_eventfd = unsafe_eventfd
        descs = descriptors.build_descriptors()
        super().__init__(
            path,
            fs_list=descs.fs_list,
            hs_list=descs.hs_list,
            ss_list=descs.ss_list,
            os_list=descs.os_list,
            lang_dict=descriptors.lang_dict(strings),
            # The library's own AIO is unused (see the transport's docstring),
            # but it insists on allocating OUT blocks: keep them tiny.  Two,
            # because newer releases allocate one less than asked for.
            in_aio_blocks_max=1,
            out_aio_blocks_per_endpoint=2,
            out_aio_blocks_max_packet_count=1,
        )

    def _owner(self) -> FunctionFSTransport:
        transport = self.transport
        if transport is None:  # processEvents is only ever called by a transport
            raise RuntimeError("FunctionFS events before a transport took the function over")
        return transport

    def onBind(self) -> None:
        _log.info("FunctionFS: bound to a UDC")

    def onUnbind(self) -> None:
        self._owner()._link_lost("UNBIND")

    def onEnable(self) -> None:
        # Not calling the library's onEnable: it would submit its own OUT
        # blocks, which we do not use.
        self.disableRemoteWakeup()
        self._owner()._enabled()

    def onDisable(self) -> None:
        self._owner()._link_lost("DISABLE")

    def onSuspend(self) -> None:
        _log.info("FunctionFS: suspended")

    def onResume(self) -> None:
        _log.info("FunctionFS: resumed")

    def onSetup(self, request_type: int, request: int, value: int, index: int, length: int) -> None:
        # Imported here: the MTP core is not needed to write the descriptors.
        from .stillimage import Setup, SetupKind, classify_setup

        transport = self._owner()
        setup = Setup(request_type, request, value, index, length)
        kind = classify_setup(setup)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("SETUP %s -> %s", setup, kind.name)
        if kind is SetupKind.STANDARD:
            super().onSetup(request_type, request, value, index, length)
            return
        if kind is SetupKind.STALL:
            self.ep0.halt(request_type)
            return
        try:
            if kind is SetupKind.CANCEL:
                data = self.ep0.read(length) or b""
                transport._cancel_requested(data)
            elif kind is SetupKind.DEVICE_RESET:
                self.ep0.read(0)  # status stage
                transport._device_reset_requested()
            elif kind is SetupKind.GET_DEVICE_STATUS:
                self.ep0.write(transport._status.answer(length))
        except OSError as exc:
            # The host gave up on the control transfer (EIDRM, ESRCH) or the
            # link went away; nothing left to answer.
            _log.warning("control request %s failed: %s", setup, exc)


def open_function(
    path: str | os.PathLike[str],
    strings: Mapping[int, str] = descriptors.DEFAULT_STRINGS,
    kernel_release: str | None = None,
) -> MTPFunction:
    """Write the descriptors and strings to ``path``/ep0 and open the endpoints.

    Once this returns, ``ep1``... exist and the UDC may be bound.  Close it
    with ``__exit__`` unless a transport takes it over.
    """
    release = kernel_release if kernel_release is not None else os.uname().release
    function = MTPFunction(os.fspath(path), strings, ffs_eventfd_is_unsafe(release))
    function.__enter__()
    return function
