"""The first link: a host that configured the device before the server ran.

On a gadget the descriptors are written first and the providers load after,
so the kernel may report the link up (and the host send its first command)
before the server starts. The queued link-up event must not wipe the
command that is already being answered.
"""

from __future__ import annotations

from pathlib import Path

import trio

from mtp_responder.app import Responder
from mtp_responder.config import parse_config
from mtp_responder.core.codes import OperationCode
from mtp_responder.testing.initiator import Initiator
from mtp_responder.transport.loopback import loopback_pair

from .conftest import make_config


async def test_a_command_sent_before_the_server_started_is_answered_with_its_data(
    tmp_path: Path,
) -> None:
    # Which task runs first is the scheduler's choice: try it several times.
    for attempt in range(8):
        (tmp_path / str(attempt)).mkdir()
        responder = Responder(parse_config(make_config(tmp_path / str(attempt))))
        transport, host = loopback_pair(max_packet_size=512)
        host.plug()  # link-up queued before anyone serves, as FunctionFS's ENABLE is
        mtp = Initiator(host)
        tid = await mtp.command(OperationCode.GET_DEVICE_INFO)
        async with trio.open_nursery() as nursery:
            await nursery.start(responder.run, transport)
            with trio.fail_after(10):
                data, response = await mtp.read_data_or_response(tid)
            assert response.ok and response.transaction_id == tid
            assert data, "GetDeviceInfo's data phase is missing"
            assert (await mtp.open_session()).ok
            nursery.cancel_scope.cancel()
