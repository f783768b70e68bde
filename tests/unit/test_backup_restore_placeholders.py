"""Empty creates in Incremental/: how FUSE clients write a snapshot there.

jmtpfs and go-mtpfs create a file empty (SendObjectInfo of size 0, a SendObject
of 0 bytes), read it back, then send its content as a new object of the same
name, sometimes after deleting the empty one.  The empty object must be a
placeholder: no increment is computed from nothing.
"""

from __future__ import annotations

from mtp_responder.core.codes import OperationCode, ResponseCode

from . import test_backup_restore_provider as provider_tests
from .conftest import wait_until
from .test_backup_restore_provider import (
    Rig,
    backup_storage,
    children,
    folder,
    send_into,
    take_backup,
)

# The same rig as the provider's own tests: a real engine and a responder.
engine = provider_tests.engine
rig = provider_tests.rig


async def incremental_listing(rig: Rig, storage: int) -> dict[str, int]:
    return await children(rig.mtp, storage, await folder(rig.mtp, storage, "Incremental"))


async def a_snapshot_in_a_fresh_session(rig: Rig) -> tuple[int, bytes]:
    """A base backup's snapshot, and the device back in Normal mode with a new session."""
    storage, _, _, snapshot = await take_backup(rig)
    assert (await rig.mtp.close_session()).ok
    await wait_until(lambda: rig.mode() == "NORMAL", 10)
    assert (await rig.mtp.open_session()).ok
    return storage, snapshot


async def test_an_empty_create_in_incremental_is_a_placeholder_not_an_increment(
    rig: Rig,
) -> None:
    storage, _ = await a_snapshot_in_a_fresh_session(rig)
    assert await send_into(rig, storage, "Incremental", "prev.snapshot", b"") == ResponseCode.OK
    listing = await incremental_listing(rig, storage)
    assert list(listing) == ["prev.snapshot"], "no increment may appear for an empty snapshot"
    handle = listing["prev.snapshot"]
    assert (await rig.mtp.object_info(handle)).compressed_size == 0
    # A FUSE client reads the file back before it writes the content.
    assert await rig.mtp.get_object(handle) == b""
    assert rig.mode() == "NORMAL", "nothing was prepared"


async def test_the_content_sent_after_an_empty_create_makes_the_increment_appear(
    rig: Rig,
) -> None:
    storage, snapshot = await a_snapshot_in_a_fresh_session(rig)
    assert await send_into(rig, storage, "Incremental", "prev.snapshot", b"") == ResponseCode.OK
    code = await send_into(rig, storage, "Incremental", "prev.snapshot", snapshot)
    assert code == ResponseCode.OK
    listing = await incremental_listing(rig, storage)
    assert [n for n in listing if n.endswith(".mbak")], listing
    info = await rig.mtp.object_info(listing["prev.snapshot"])
    assert info.compressed_size == len(snapshot)
    assert rig.mode() != "NORMAL"


async def test_an_empty_create_deleted_then_sent_with_content_makes_the_increment_appear(
    rig: Rig,
) -> None:
    storage, snapshot = await a_snapshot_in_a_fresh_session(rig)
    assert await send_into(rig, storage, "Incremental", "prev.snapshot", b"") == ResponseCode.OK
    handle = (await incremental_listing(rig, storage))["prev.snapshot"]
    assert (await rig.mtp.transaction(OperationCode.DELETE_OBJECT, handle)).response.ok
    assert await incremental_listing(rig, storage) == {}
    code = await send_into(rig, storage, "Incremental", "prev.snapshot", snapshot)
    assert code == ResponseCode.OK
    listing = await incremental_listing(rig, storage)
    assert [n for n in listing if n.endswith(".mbak")], listing


async def test_an_empty_create_may_not_take_an_archive_key(rig: Rig) -> None:
    storage = await backup_storage(rig.mtp)
    code = await send_into(rig, storage, "Incremental", "full", b"")
    assert code == ResponseCode.INVALID_PARAMETER
