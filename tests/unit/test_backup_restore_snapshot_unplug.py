"""A snapshot sent into Incremental/ and cut off while its increment is prepared.

SendObject of a snapshot is answered once the engine has prepared the
increment against it.  A cable pulled during that preparation must leave
either no snapshot or a whole, usable one: before, the snapshot stayed listed
while its spooled bytes were deleted, and every later listing of
Incremental/ failed (No such file) until the responder restarted.
"""

from __future__ import annotations

import pytest

from mtp_responder.core.codes import OperationCode
from mtp_responder.core.container import data_header
from mtp_responder.core.datasets import ObjectInfoData, build_object_info
from tests.unit.test_backup_restore_provider import (  # noqa: F401  (fixtures)
    Rig,
    children,
    engine,
    folder,
    rig,
    take_backup,
)

from .conftest import wait_until


def engine_state(r: Rig) -> dict[str, str]:
    state = r.engine.config.state_file
    assert state is not None
    return dict(line.split("=", 1) for line in state.read_text().splitlines() if "=" in line)


@pytest.mark.parametrize("when", ["right-after-the-data", "while-preparing"])
async def test_unplugged_while_the_increment_is_prepared_incremental_still_lists(
    rig: Rig,  # noqa: F811
    when: str,
) -> None:
    # Enough files that listing them keeps the engine busy for a moment.
    for i in range(3000):
        (rig.owner_dir / "many" / f"d{i // 100}").mkdir(parents=True, exist_ok=True)
        (rig.owner_dir / "many" / f"d{i // 100}" / f"f{i}").write_bytes(b"x")
    storage, _, _, snapshot = await take_backup(rig)
    await rig.mtp.close_session()
    await wait_until(lambda: rig.mode() == "NORMAL", 10)
    assert (await rig.mtp.open_session()).ok
    mtp = rig.mtp
    parent = await folder(mtp, storage, "Incremental")
    info = ObjectInfoData(storage, 0x3000, 0, len(snapshot), parent, 0, "prev.snapshot")
    r = await mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, storage, parent, data=build_object_info(info)
    )
    assert r.response.ok
    tid = await mtp.command(OperationCode.SEND_OBJECT)
    await rig.device.host.write_transfer(
        data_header(OperationCode.SEND_OBJECT, tid, len(snapshot)) + snapshot
    )
    if when == "while-preparing":
        await wait_until(lambda: engine_state(rig).get("inc") == "INCREMENT", 20, interval=0.001)
    rig.device.host.unplug()
    await wait_until(lambda: rig.mode() == "NORMAL", 20)

    rig.device.host.plug()
    assert (await mtp.open_session()).ok
    listing = await children(mtp, storage, parent)  # answers at all (it failed before)
    if "prev.snapshot" in listing:
        # Kept whole: the increment against it is prepared and listed beside it.
        assert any(n.endswith(".mbak") for n in listing), listing
    else:
        assert listing == {}, listing
