"""Fixtures: a responder with a real files storage on the loopback link."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from mtp_responder.app import Responder
from mtp_responder.config import parse_config
from mtp_responder.core.codes import OperationCode
from mtp_responder.core.datasets import ObjectInfoData, build_object_info
from mtp_responder.testing.initiator import Initiator
from mtp_responder.transport.loopback import LoopbackHost, loopback_pair


@dataclass
class Device:
    """A running responder and an initiator talking to it."""

    responder: Responder
    host: LoopbackHost
    mtp: Initiator
    root: Path
    storage_id: int


def make_config(tmp_path: Path, **storage: object) -> dict[str, object]:
    root = tmp_path / "storage"
    root.mkdir(exist_ok=True)
    return {
        "state_dir": str(tmp_path / "state"),
        "device": {"manufacturer": "Acme", "product": "Board", "serial": "SN123"},
        "providers": {
            "files": {"storages": [{"path": str(root), "description": "Internal", **storage}]}
        },
    }


async def start_device(
    nursery: trio.Nursery, tmp_path: Path, config: dict[str, object] | None = None
) -> Device:
    cfg = parse_config(config or make_config(tmp_path))
    responder = Responder(cfg)
    transport, host = loopback_pair(max_packet_size=512)
    await nursery.start(responder.run, transport)
    return Device(
        responder,
        host,
        Initiator(host),
        tmp_path / "storage",
        responder.framework.storage_ids[0],
    )


@pytest.fixture
async def device(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Device]:
    yield await start_device(nursery, tmp_path)


@pytest.fixture
async def session(device: Device) -> AsyncIterator[Device]:
    response = await device.mtp.open_session()
    assert response.ok
    yield device


# -- helpers shared by the protocol-core tests --------------------------------


async def still_serving(device: Device, *, in_session: bool = True) -> None:
    """The responder answers the next transaction in step and has nothing else queued.

    GetDeviceInfo needs no session; inside one, the storage is listed as well.
    Whatever a test threw at the responder before, it is back in step.
    """
    tid = device.mtp.next_tid()
    await device.mtp.command(OperationCode.GET_DEVICE_INFO, tid=tid)
    data, response = await device.mtp.read_data_or_response(tid)
    assert response.ok and response.transaction_id == tid
    assert data is not None
    if in_session:
        assert device.storage_id in await device.mtp.storage_ids()
    assert device.host.in_queued == 0


async def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.005
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds.

    For state that announces nothing when it changes (the engine's mode file,
    the class-request Device Busy status): polling with a deadline is the wait
    that neither hangs nor guesses.
    """
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(interval)


async def names_to_handles(mtp: Initiator, parent: int = 0xFFFFFFFF) -> dict[str, int]:
    """The children of ``parent`` (root by default) by file name."""
    return {(await mtp.object_info(h)).filename: h for h in await mtp.object_handles(parent=parent)}


async def handle_of(mtp: Initiator, path: str) -> int:
    """The handle of a slash-separated path below the storage root."""
    parent = 0xFFFFFFFF
    for part in path.split("/"):
        parent = (await names_to_handles(mtp, parent))[part]
    return parent


def object_info(
    name: str,
    size: int = 0,
    *,
    format_code: int = 0x3000,
    storage_id: int = 0,
    parent: int = 0,
    association_type: int = 0,
    date_modified: str = "",
) -> bytes:
    """A SendObjectInfo dataset."""
    return build_object_info(
        ObjectInfoData(
            storage_id=storage_id,
            object_format=format_code,
            protection_status=0,
            compressed_size=size,
            parent_object=parent,
            association_type=association_type,
            filename=name,
            date_modified=date_modified,
        )
    )
