"""Fixtures: a responder with a real files storage on the loopback link."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from mtp_responder.app import Responder
from mtp_responder.config import parse_config
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
